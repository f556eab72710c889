// "Activity": events as they arrive, newest first; pausable; filtered by event name and person.

import { $, h, perFrame, setText, setTitle } from "./dom.js";
import { clock, number, personLabel, summary } from "./format.js";
import { VirtualList } from "./vlist.js";

export class ActivityPanel {
  constructor(model, { onPick }) {
    this.model = model;
    this.paused = false;
    this.shown = [];
    this.waiting = 0; // events that arrived while paused
    this.names = new Set();
    this.pauseButton = $("activity-pause");
    this.nameInput = $("activity-name");
    this.personInput = $("activity-person");
    this.nameList = $("event-names");
    this.note = $("activity-note");
    this.rate = $("activity-rate");
    this.list = new VirtualList($("activity-list"), {
      rowHeight: 30,
      make: () => this.makeRow(),
      fill: (el, event) => this.fillRow(el, event),
      onPick: (event) => onPick(event),
    });
    this.schedule = perFrame(() => this.render());
    model.onChange((what) => {
      if (what.reset || what.events.length) {
        if (this.paused && !what.reset) this.waiting += what.events.length;
        this.learnNames(what.events);
        this.schedule();
      }
    });
    this.pauseButton.addEventListener("click", () => this.setPaused(!this.paused));
    this.nameInput.addEventListener("input", () => this.render(true));
    this.personInput.addEventListener("input", () => this.render(true));
    setInterval(() => setText(this.rate, `${number(Math.round(model.eventRate()))}/s`), 1000);
  }

  setPaused(paused) {
    this.paused = paused;
    this.waiting = 0;
    this.pauseButton.setAttribute("aria-pressed", String(paused));
    setText(this.pauseButton, paused ? "Resume" : "Pause");
    this.render(true);
  }

  learnNames(events) {
    let added = false;
    for (const event of events) {
      if (event.name && !this.names.has(event.name) && this.names.size < 500) {
        this.names.add(event.name);
        added = true;
      }
    }
    if (added) {
      this.nameList.replaceChildren(...[...this.names].sort().map((name) => h("option", { value: name })));
    }
  }

  makeRow() {
    const el = h("div", { class: "event-row", role: "listitem", tabindex: "0" });
    for (const name of ["time", "person", "name", "what"]) el.append(h("span", { class: `e-${name}` }));
    return el;
  }

  fillRow(el, event) {
    const cells = el.children;
    const person = this.model.personOf(event);
    el.dataset.name = event.name || "";
    setText(cells[0], clock(event.time));
    setText(cells[1], person ? personLabel(person) : personLabel(event));
    setText(cells[2], event.name || "");
    const line = summary(event);
    setText(cells[3], line);
    setTitle(cells[3], line);
  }

  render(force = false) {
    if (this.paused && !force) {
      setText(this.note, this.waiting ? `Paused · ${number(this.waiting)} new` : "Paused");
      return;
    }
    const name = this.nameInput.value.trim().toLowerCase();
    const who = this.personInput.value.trim().toLowerCase();
    const events = this.model.events;
    const shown = [];
    for (let i = events.length - 1; i >= 0; i--) {
      const event = events[i];
      if (name && !(event.name || "").toLowerCase().includes(name)) continue;
      if (who && !this.isPerson(event, who)) continue;
      shown.push(event);
    }
    this.shown = shown;
    setText(this.note, this.paused ? "Paused" : "");
    this.list.setItems(shown);
    this.list.draw();
  }

  isPerson(event, who) {
    for (const value of [event.user_id, event.visitor_token, event.person]) {
      if (value && String(value).toLowerCase().includes(who)) return true;
    }
    return false;
  }
}
