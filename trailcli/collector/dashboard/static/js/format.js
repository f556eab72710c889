// How values read on the page: times in the browser's time zone, short ids, summaries.

const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const dayTimeFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "short", day: "numeric", month: "short",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const numberFormat = new Intl.NumberFormat();

export const toDate = (value) => (value instanceof Date ? value : new Date(value));

export function clock(value) {
  return value ? timeFormat.format(toDate(value)) : "";
}

export function dayTime(value) {
  return value ? dayTimeFormat.format(toDate(value)) : "";
}

export function number(n) {
  return n === null || n === undefined ? "" : numberFormat.format(n);
}

// "8 s", "12 min", "3 h 05 min", "2 d 4 h"
export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${String(m % 60).padStart(2, "0")} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export function shortId(token) {
  return token ? String(token).slice(0, 8) : "";
}

// A person as the lists show them: the user id, else the first characters of the visitor token.
export function personLabel(row) {
  if (row.user_id) return String(row.user_id);
  if (row.visitor_token) return shortId(row.visitor_token);
  return "(unknown)";
}

export function personKey(row) {
  return row.user_id || row.visitor_token || null;
}

function scalar(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "object") return Array.isArray(value) ? `[${value.length}]` : "{…}";
  return String(value);
}

// One line about an event: its page for a view, else its properties as key=value pairs.
export function summary(event, max = 140) {
  if (event.page) return event.page;
  if (event.properties_bytes) return `(properties of ${number(event.properties_bytes)} bytes)`;
  return propertiesLine(event.properties, max);
}

export function propertiesLine(properties, max = 140) {
  if (properties === null || properties === undefined) return "";
  if (typeof properties !== "object") return scalar(properties).slice(0, max);
  const parts = [];
  let length = 0;
  for (const [key, value] of Object.entries(properties)) {
    const part = `${key}=${scalar(value)}`;
    parts.push(part);
    length += part.length + 2;
    if (length > max) break;
  }
  const line = parts.join(", ");
  return line.length > max ? line.slice(0, max - 1) + "…" : line;
}

export function device(row) {
  return row.device_type || "";
}

export function deviceDetail(row) {
  return [row.browser, row.os].filter(Boolean).join(" on ");
}
