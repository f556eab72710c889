// "Online now": the count and the list of persons, newest first by default, filtered as typed.

import { $, h, perFrame, setText, setTitle } from "./dom.js";
import { clock, device, deviceDetail, duration, number, personLabel } from "./format.js";
import { VirtualList } from "./vlist.js";

const COLUMNS = ["person", "since", "page", "views", "device", "country", "source", "tabs", "node"];
const SORTS = {
  newest: (a, b) => cmp(b.online_since, a.online_since) || cmp(a.person, b.person),
  oldest: (a, b) => cmp(a.online_since, b.online_since) || cmp(a.person, b.person),
  pages: (a, b) => (b.views ?? -1) - (a.views ?? -1) || cmp(a.person, b.person),
  person: (a, b) => cmp(personLabel(a), personLabel(b)),
};

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function matches(row, needle) {
  if (!needle) return true;
  for (const value of [
    personLabel(row), row.user_id, row.visitor_token, row.last_page, row.country, row.source,
    row.device_type, row.browser, row.node_id,
  ]) {
    if (value && String(value).toLowerCase().includes(needle)) return true;
  }
  return false;
}

export class OnlinePanel {
  constructor(model, { onPick }) {
    this.model = model;
    this.count = $("online-count");
    this.filter = $("online-filter");
    this.sort = $("online-sort");
    this.empty = $("online-empty");
    this.seen = { version: -1, members: -1 };
    this.order = [];
    this.list = new VirtualList($("online-list"), {
      rowHeight: 34,
      make: () => this.makeRow(),
      fill: (el, row) => this.fillRow(el, row),
      onPick,
    });
    this.schedule = perFrame(() => this.render());
    model.onChange((what) => {
      if (what.persons) this.schedule();
    });
    this.filter.addEventListener("input", () => this.render(true));
    this.sort.addEventListener("change", () => this.render(true));
    setInterval(() => this.list.draw(), 1000); // "online for" (on hover) keeps counting
  }

  makeRow() {
    const el = h("div", { class: "online-row", role: "listitem", tabindex: "0" });
    for (const name of COLUMNS) el.append(h("span", { class: `c-${name}` }));
    return el;
  }

  fillRow(el, row) {
    const cells = el.children;
    el.dataset.person = row.person;
    setText(cells[0], personLabel(row));
    setTitle(cells[0], row.user_id ? `user ${row.user_id}, visitor ${row.visitor_token || "?"}` : `visitor ${row.visitor_token || "?"}`);
    setText(cells[1], row.online_since ? clock(row.online_since) : "");
    setTitle(cells[1], row.online_since ? `online for ${duration(Date.now() - Date.parse(row.online_since))}` : "");
    setText(cells[2], row.last_page || "");
    setTitle(cells[2], row.last_page || "");
    setText(cells[3], row.views === null || row.views === undefined ? "…" : number(row.views));
    setText(cells[4], device(row));
    setTitle(cells[4], deviceDetail(row));
    setText(cells[5], row.country || "");
    setTitle(cells[5], row.country || "");
    setText(cells[6], row.source || "");
    setTitle(cells[6], row.source || "");
    setText(cells[7], row.clients ?? "");
    setText(cells[8], row.node_id || "");
    setTitle(cells[8], row.node_id || "");
  }

  // Sort and filter again only when that can change the order: someone joined or left, or the
  // order or filter depends on values that changed. Otherwise only the rows in view are redrawn.
  render(force = false) {
    const model = this.model;
    const needle = this.filter.value.trim().toLowerCase();
    const changed = model.version !== this.seen.version;
    const reorder = force || model.members !== this.seen.members ||
      (changed && (needle || this.sort.value === "pages"));
    this.seen = { version: model.version, members: model.members };
    if (reorder) {
      const rows = [];
      for (const row of model.persons.values()) if (matches(row, needle)) rows.push(row);
      rows.sort(SORTS[this.sort.value] || SORTS.newest);
      this.order = rows;
      const total = model.persons.size;
      setText(this.count, needle ? `${number(rows.length)} of ${number(total)}` : number(total));
      this.empty.hidden = !model.loaded || rows.length > 0;
      setText(this.empty, total ? "Nobody matches the filter." : "Nobody is online.");
    }
    this.list.setItems(this.order);
    this.list.draw();
  }
}
