// DOM helpers. Every string from the data becomes a text node or a plain attribute value:
// nothing here parses HTML, so a page title like "<img onerror=...>" shows as those characters.

export const $ = (id) => document.getElementById(id);

// h("td", {class: "x", title: "y"}, "text", childNode, ...)
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [name, value] of Object.entries(props)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") el.className = value;
      else if (name === "dataset") Object.assign(el.dataset, value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// Set an element's text only when it changed (cheap when a row is redrawn with the same values).
export function setText(el, value) {
  const text = value === null || value === undefined ? "" : String(value);
  if (el.textContent !== text) el.textContent = text;
}

export function setTitle(el, value) {
  const text = value === null || value === undefined ? "" : String(value);
  if (el.title !== text) el.title = text;
}

// Run fn at most once per animation frame, however often it is asked for.
export function perFrame(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fn();
    });
  };
}
