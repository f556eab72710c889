// A list that draws only the rows in view: a few dozen row elements, reused as it scrolls, for
// lists of any length. Rows have one fixed height.

import { h, perFrame } from "./dom.js";

export class VirtualList {
  // container: a scrolling element; make(): a new row element; fill(el, item, index): draw item.
  constructor(container, { rowHeight, make, fill, onPick, overscan = 8 }) {
    this.container = container;
    this.rowHeight = rowHeight;
    this.make = make;
    this.fill = fill;
    this.overscan = overscan;
    this.items = [];
    this.pool = [];
    this.body = h("div", { class: "vlist-body" });
    container.replaceChildren(this.body);
    this.schedule = perFrame(() => this.draw());
    container.addEventListener("scroll", this.schedule, { passive: true });
    new ResizeObserver(this.schedule).observe(container);
    if (onPick) {
      const pick = (event) => {
        const row = event.target.closest(".vrow");
        if (!row || row.hidden) return;
        const item = this.items[Number(row.dataset.index)];
        if (item !== undefined) onPick(item);
      };
      container.addEventListener("click", pick);
      container.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          pick(event);
        }
      });
    }
  }

  setItems(items) {
    this.items = items;
    this.body.style.height = `${items.length * this.rowHeight}px`;
    this.schedule();
  }

  // Draw now (the first paint of data should not wait for the next frame).
  draw() {
    const { rowHeight, items } = this;
    const top = this.container.scrollTop;
    const height = this.container.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / rowHeight) - this.overscan);
    const last = Math.min(items.length, Math.ceil((top + height) / rowHeight) + this.overscan);
    const needed = Math.max(0, last - first);
    while (this.pool.length < needed) {
      const el = this.make();
      el.classList.add("vrow");
      el.style.height = `${rowHeight}px`;
      this.body.append(el);
      this.pool.push(el);
    }
    for (let i = 0; i < this.pool.length; i++) {
      const el = this.pool[i];
      const index = first + i;
      if (i >= needed) {
        if (!el.hidden) el.hidden = true;
        continue;
      }
      if (el.hidden) el.hidden = false;
      el.dataset.index = index;
      el.style.transform = `translateY(${index * rowHeight}px)`;
      this.fill(el, items[index], index);
    }
  }
}
