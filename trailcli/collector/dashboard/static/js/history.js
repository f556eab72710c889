// "History": who was online at any instant (the answer of `trail online --at`), persons online
// over the last 24 hours or 7 days with the exact peak (`trail online timeline`), and the day's
// top pages and sources. The state lives in the address: #history?end=ISO&range=7d&at=ISO.

import { getJSON } from "./api.js";
import { $, h, setText } from "./dom.js";
import { drawChart } from "./chart.js";
import { clock, dayTime, device, deviceDetail, number, personLabel } from "./format.js";

const MAX_ROWS = 2000; // of who was online at an instant; the count is always the whole
const RANGES = { "24h": { hours: 24, every: "5m" }, "7d": { hours: 168, every: "1h" } };
const tickDay = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric" });
const tickHour = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hour12: false });
const dayName = new Intl.DateTimeFormat(undefined, { weekday: "long", day: "numeric", month: "long" });

function localInputValue(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

function dayBounds(instant) {
  const start = new Date(instant);
  start.setHours(0, 0, 0, 0);
  const end = new Date(start);
  end.setDate(end.getDate() + 1);
  return [start, end];
}

export class HistoryView {
  constructor({ onPick }) {
    this.onPick = onPick;
    this.input = $("history-at");
    this.chartEl = $("chart");
    this.chartNote = $("chart-note");
    this.state = { end: null, range: "24h", at: null };
    this.timeline = null;
    this.loads = 0;
    this.input.addEventListener("change", () => {
      if (!this.input.value) return;
      const chosen = new Date(this.input.value).toISOString();
      this.go({ end: chosen, at: chosen });
    });
    $("history-now").addEventListener("click", () => this.go({ end: null, at: null }));
    for (const button of document.querySelectorAll("[data-range]")) {
      button.addEventListener("click", () => this.go({ range: button.dataset.range }));
    }
    new ResizeObserver(() => this.drawTimeline()).observe(this.chartEl);
  }

  // Read the state from the address (called when #history is shown or changes).
  fromHash(params) {
    this.state = {
      end: params.get("end"),
      range: RANGES[params.get("range")] ? params.get("range") : "24h",
      at: params.get("at"),
    };
    this.load();
  }

  go(change) {
    const next = { ...this.state, ...change };
    const params = new URLSearchParams();
    if (next.end) params.set("end", next.end);
    params.set("range", next.range);
    if (next.at) params.set("at", next.at);
    location.hash = `history?${params}`;
  }

  async load() {
    const load = ++this.loads;
    const end = this.state.end || new Date().toISOString();
    const at = this.state.at || end;
    const range = RANGES[this.state.range];
    this.input.value = localInputValue(new Date(at));
    for (const button of document.querySelectorAll("[data-range]")) {
      button.setAttribute("aria-pressed", String(button.dataset.range === this.state.range));
    }
    const from = new Date(Date.parse(end) - range.hours * 3600 * 1000).toISOString();
    const [dayStart, dayEnd] = dayBounds(Date.parse(at));
    setText($("chart-title"), `Persons online, ${range.hours === 24 ? "24 hours" : "7 days"} to ${dayTime(end)}`);
    setText($("at-title"), `Online at ${dayTime(at)}`);
    setText($("top-day"), dayName.format(dayStart));
    this.loadTimeline(load, { from, to: end, every: range.every });
    this.loadOnlineAt(load, at);
    this.loadTop(load, { from: dayStart.toISOString(), to: dayEnd.toISOString() });
  }

  async loadTimeline(load, params) {
    setText(this.chartNote, "Loading…");
    try {
      const data = await getJSON("/dashboard/api/history/timeline", params);
      if (load !== this.loads) return;
      this.timeline = data;
      setText(this.chartNote, data.peak_at
        ? `Peak ${number(data.peak_online)} online at ${dayTime(data.peak_at)} (select it to see who)`
        : "Nobody was online in this range.");
      this.chartEl.dataset.peak = String(data.peak_online);
      this.chartEl.dataset.peakAt = data.peak_at || "";
      this.drawTimeline();
    } catch (error) {
      if (load !== this.loads) return;
      this.timeline = null;
      this.chartEl.replaceChildren();
      setText(this.chartNote, `${error.message} ${error.hint}`);
    }
  }

  drawTimeline() {
    if (!this.timeline) return;
    drawChart(this.chartEl, this.timeline, {
      width: this.chartEl.clientWidth,
      height: 220,
      marked: this.state.at,
      formatTick: (t, hours) => (hours >= 24 ? tickDay.format(new Date(t)) : tickHour.format(new Date(t))),
      formatPeak: (count, at) => `peak ${number(count)} · ${clock(at)}`,
      formatTip: ([start, most, , average]) => `${clock(start)}  max ${most}  avg ${average.toFixed(1)}`,
      onPick: (instant) => this.go({ at: instant }),
    });
  }

  async loadOnlineAt(load, at) {
    const table = $("at-rows");
    const note = $("at-note");
    setText(note, "Loading…");
    table.replaceChildren();
    let data;
    try {
      data = await getJSON("/dashboard/api/history/online", { at });
    } catch (error) {
      if (load === this.loads) setText(note, `${error.message} ${error.hint}`);
      return;
    }
    if (load !== this.loads) return;
    const shown = data.rows.slice(0, MAX_ROWS);
    setText(note, data.count > shown.length
      ? `The first ${number(shown.length)} of ${number(data.count)} persons (longest online first).`
      : "");
    setText($("at-count"), number(data.count));
    const rows = shown.map((row) => {
      const key = row.user_id || row.visitor_token || "";
      const tr = h(
        "tr",
        { tabindex: "0", dataset: { person: key } },
        h("td", { title: row.visitor_token || "" }, personLabel(row)),
        h("td", { title: dayTime(row.online_since) }, clock(row.online_since)),
        h("td", { class: "page", title: row.last_page || "" }, row.last_page || ""),
        h("td", { class: "num" }, row.clients),
        h("td", { title: deviceDetail(row) }, device(row)),
        h("td", null, row.country || ""),
        h("td", { class: "page" }, (row.channels || []).join(" ")),
      );
      const pick = () => this.onPick(row, dayBounds(Date.parse(row.online_since))[0]);
      tr.addEventListener("click", pick);
      tr.addEventListener("keydown", (event) => {
        if (event.key === "Enter") pick();
      });
      return tr;
    });
    table.replaceChildren(...rows);
  }

  async loadTop(load, params) {
    const pages = $("top-pages");
    const sources = $("top-sources");
    let data;
    try {
      data = await getJSON("/dashboard/api/history/top", params);
    } catch (error) {
      if (load !== this.loads) return;
      pages.replaceChildren(h("tr", null, h("td", { colspan: 3 }, `${error.message} ${error.hint}`)));
      sources.replaceChildren();
      return;
    }
    if (load !== this.loads) return;
    const empty = (n) => h("tr", null, h("td", { colspan: n, class: "muted" }, "Nothing that day."));
    pages.replaceChildren(...(data.pages.length ? data.pages.map((r) => h(
      "tr", null,
      h("td", { class: "page", title: r.page }, r.page),
      h("td", { class: "num" }, number(r.views)),
      h("td", { class: "num" }, number(r.visitors)),
    )) : [empty(3)]));
    sources.replaceChildren(...(data.sources.length ? data.sources.map((r) => h(
      "tr", null,
      h("td", { class: "page", title: r.source }, r.source),
      h("td", { class: "num" }, number(r.visits)),
      h("td", { class: "num" }, `${(100 * (r.share ?? 0)).toFixed(1)} %`),
    )) : [empty(3)]));
  }
}
