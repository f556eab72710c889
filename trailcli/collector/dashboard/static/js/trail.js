// A person's trail: the rows of `trail replay` for today, then new rows as they happen.

import { getJSON } from "./api.js";
import { $, h, setText } from "./dom.js";
import { clock, dayTime, duration, personLabel, propertiesLine, summary } from "./format.js";

const LIVE_MAX = 2000;

function startOfToday() {
  const day = new Date();
  day.setHours(0, 0, 0, 0);
  return day;
}

// The person a trail is asked for: their user id, else their visitor token.
export function whose(row) {
  if (row.user_id) return { kind: "user", value: String(row.user_id) };
  if (row.visitor_token) return { kind: "visitor", value: String(row.visitor_token) };
  if (row.visit_token) return { kind: "visit", value: String(row.visit_token) };
  return null;
}

function belongs(ref, message) {
  const field = { user: "user_id", visitor: "visitor_token", visit: "visit_token" }[ref.kind];
  return message[field] !== null && message[field] !== undefined && String(message[field]) === ref.value;
}

function rowKey(row) {
  return `${row.kind}|${row.name || ""}|${row.visit_token || ""}|${Date.parse(row.time)}`;
}

function detailLine(row) {
  const detail = row.detail || {};
  if (row.kind === "visit") {
    return [detail.landing_page, detail.device_type, detail.browser, detail.country]
      .filter(Boolean).join(" · ");
  }
  if (row.kind === "event") return row.page || detail.page || propertiesLine(detail, 200);
  if (row.kind === "online" || row.kind === "offline") {
    return [detail.page, detail.reason, detail.client_id && `client ${String(detail.client_id).slice(0, 8)}`]
      .filter(Boolean).join(" · ");
  }
  return propertiesLine(detail, 200);
}

export class TrailPanel {
  constructor(model) {
    this.model = model;
    this.drawer = $("trail");
    this.title = $("trail-title");
    this.meta = $("trail-meta");
    this.rowsEl = $("trail-rows");
    this.ref = null;
    this.keys = new Set();
    this.lastTime = null;
    this.request = 0;
    $("trail-close").addEventListener("click", () => this.close());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.drawer.hidden) this.close();
    });
    model.onChange((what) => this.onLive(what));
  }

  close() {
    this.drawer.hidden = true;
    this.ref = null;
  }

  // row: a person (online row, event, or history row); since: where the trail starts (default:
  // today, or when they came online if that was before).
  async open(row, since = null) {
    const ref = whose(row);
    if (!ref) return;
    const request = ++this.request;
    this.ref = ref;
    this.keys = new Set();
    this.lastTime = null;
    this.drawer.hidden = false;
    this.drawer.dataset.person = ref.value;
    setText(this.title, `Trail of ${ref.kind} ${personLabel(row)}`);
    setText(this.meta, "Loading…");
    this.rowsEl.replaceChildren();
    if (!since) {
      since = startOfToday();
      const online = this.model.persons.get(row.person || ref.value);
      if (online && online.online_since && Date.parse(online.online_since) < since.getTime()) {
        since.setTime(Date.parse(online.online_since));
      }
    }
    let body;
    try {
      body = await getJSON("/dashboard/api/trail", { [ref.kind]: ref.value, from: since.toISOString() });
    } catch (error) {
      if (request === this.request) setText(this.meta, `${error.message} ${error.hint || ""}`);
      return;
    }
    if (request !== this.request) return;
    setText(this.meta, `Since ${dayTime(since)} · ${body.rows.length} rows from the log, then live`);
    for (const stored of body.rows) this.add(stored);
    // what arrived live before the log had it (the log lags the collector by a few seconds)
    for (const event of this.model.events) if (belongs(ref, event)) this.add(this.fromEvent(event));
    this.rowsEl.lastElementChild?.scrollIntoView({ block: "end" });
  }

  onLive(what) {
    if (!this.ref || this.drawer.hidden) return;
    let added = false;
    for (const change of what.changes || []) {
      if (belongs(this.ref, change)) added = this.add(this.fromChange(change)) || added;
    }
    for (const event of what.events || []) {
      if (belongs(this.ref, event)) added = this.add(this.fromEvent(event)) || added;
    }
    if (added) this.rowsEl.lastElementChild?.scrollIntoView({ block: "nearest" });
  }

  fromEvent(event) {
    return {
      time: event.time, kind: "event", visit_token: event.visit_token, name: event.name,
      page: event.page, detail: event.properties || {}, live: true,
      summary: summary(event, 200),
    };
  }

  fromChange(change) {
    return {
      time: change.time, kind: change.type === "join" ? "online" : "offline",
      visit_token: change.visit_token, name: change.type, live: true,
      detail: { page: change.page, clients: change.clients },
    };
  }

  // Add a row unless it is there already; returns whether it was added.
  add(row) {
    const key = rowKey(row);
    if (this.keys.has(key)) return false;
    this.keys.add(key);
    const time = Date.parse(row.time);
    const gap = this.lastTime === null ? null : time - this.lastTime;
    const newSession = row.new_session ?? (gap === null || gap >= 30 * 60 * 1000);
    if (newSession && this.rowsEl.children.length) {
      this.rowsEl.append(h("li", { class: "session-break" }, gap === null ? "" : `${duration(gap)} later`));
    }
    this.lastTime = Math.max(this.lastTime ?? time, time);
    const item = h(
      "li",
      { class: `trail-row k-${row.kind}${row.live ? " live" : ""}`, dataset: { kind: row.kind } },
      h("time", { datetime: row.time, title: dayTime(row.time) }, clock(row.time)),
      h("span", { class: "kind" }, row.kind),
      h("span", { class: "name" }, row.name || ""),
      h("span", { class: "detail" }, row.summary || detailLine(row)),
    );
    this.rowsEl.append(item);
    while (this.rowsEl.children.length > LIVE_MAX) this.rowsEl.firstElementChild.remove();
    return true;
  }
}
