// Persons online over time as an SVG chart: the most online in each bucket as a step area, the
// average as a line, and the exact peak of the range marked. Pure drawing: no data fetching.

const NS = "http://www.w3.org/2000/svg";
const PAD = { left: 44, right: 16, top: 26, bottom: 28 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  if (text !== undefined) el.textContent = String(text);
  return el;
}

function niceMax(value) {
  if (value <= 4) return Math.max(1, value);
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return value;
}

function ticks(start, end, hours) {
  const every = hours * 3600 * 1000;
  const out = [];
  const first = new Date(start);
  first.setMinutes(0, 0, 0);
  if (hours >= 24) first.setHours(0);
  for (let t = first.getTime(); t <= end; t += every) if (t >= start) out.push(t);
  return out;
}

// data: {from, to, every_seconds, peak_online, peak_at, buckets: [[start, max, min, avg], ...]}
// options: {width, height, formatTick, formatPeak, onPick(instantISO), marked (ISO or null)}
export function drawChart(container, data, options) {
  const width = Math.max(320, options.width);
  const height = options.height || 220;
  const start = Date.parse(data.from);
  const end = Date.parse(data.to);
  const top = niceMax(Math.max(1, data.peak_online));
  const x = (t) => PAD.left + ((t - start) / (end - start)) * (width - PAD.left - PAD.right);
  const y = (v) => height - PAD.bottom - (v / top) * (height - PAD.top - PAD.bottom);
  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": `Persons online, peak ${data.peak_online}`,
  });

  for (const value of [0, top / 2, top]) {
    root.append(svg("line", { x1: PAD.left, x2: width - PAD.right, y1: y(value), y2: y(value), class: "grid" }));
    root.append(svg("text", { x: PAD.left - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" }, Math.round(value)));
  }
  const spanHours = (end - start) / 3600000;
  const tickHours = spanHours <= 26 ? 3 : 24;
  for (const t of ticks(start, end, tickHours)) {
    root.append(svg("line", { x1: x(t), x2: x(t), y1: height - PAD.bottom, y2: height - PAD.bottom + 4, class: "tick" }));
    root.append(svg("text", { x: x(t), y: height - 8, class: "axis", "text-anchor": "middle" }, options.formatTick(t, tickHours)));
  }

  if (data.buckets.length) {
    const step = data.every_seconds * 1000;
    let area = `M${x(start)},${y(0)}`;
    let avg = "";
    for (const [bucketStart, most, , average] of data.buckets) {
      const t0 = Date.parse(bucketStart);
      const t1 = Math.min(end, t0 + step);
      area += ` L${x(t0)},${y(most)} L${x(t1)},${y(most)}`;
      avg += `${avg ? " L" : "M"}${x((t0 + t1) / 2)},${y(average)}`;
    }
    area += ` L${x(end)},${y(0)} Z`;
    root.append(svg("path", { d: area, class: "area" }));
    root.append(svg("path", { d: avg, class: "avg" }));
  }

  if (options.marked) {
    const t = Date.parse(options.marked);
    if (t >= start && t <= end) {
      root.append(svg("line", { x1: x(t), x2: x(t), y1: PAD.top - 6, y2: height - PAD.bottom, class: "marked" }));
    }
  }

  if (data.peak_at && data.peak_online > 0) {
    const t = Date.parse(data.peak_at);
    const peak = svg("g", { class: "peak", tabindex: "0", role: "button", "data-at": data.peak_at });
    peak.append(svg("circle", { cx: x(t), cy: y(data.peak_online), r: 5 }));
    const label = svg("text", {
      x: x(t), y: y(data.peak_online) - 10,
      "text-anchor": x(t) > width * 0.7 ? "end" : x(t) < width * 0.3 ? "start" : "middle",
    }, options.formatPeak(data.peak_online, data.peak_at));
    peak.append(label);
    const pickPeak = (event) => {
      event.stopPropagation();
      options.onPick(data.peak_at);
    };
    peak.addEventListener("click", pickPeak);
    peak.addEventListener("keydown", (event) => {
      if (event.key === "Enter") pickPeak(event);
    });
    root.append(peak);
  }

  const hover = svg("line", { class: "hover", y1: PAD.top, y2: height - PAD.bottom, visibility: "hidden" });
  const tip = svg("text", { class: "tip", y: PAD.top - 10, visibility: "hidden" });
  root.append(hover, tip);
  const instantAt = (event) => {
    const box = root.getBoundingClientRect();
    const px = ((event.clientX - box.left) / box.width) * width;
    if (px < PAD.left || px > width - PAD.right) return null;
    return start + ((px - PAD.left) / (width - PAD.left - PAD.right)) * (end - start);
  };
  root.addEventListener("mousemove", (event) => {
    const t = instantAt(event);
    if (t === null) {
      hover.setAttribute("visibility", "hidden");
      tip.setAttribute("visibility", "hidden");
      return;
    }
    const index = Math.min(data.buckets.length - 1, Math.floor((t - start) / (data.every_seconds * 1000)));
    const bucket = data.buckets[index];
    hover.setAttribute("x1", x(t));
    hover.setAttribute("x2", x(t));
    hover.setAttribute("visibility", "visible");
    tip.setAttribute("x", Math.min(width - PAD.right - 150, Math.max(PAD.left, x(t) - 75)));
    tip.textContent = bucket ? options.formatTip(bucket) : "";
    tip.setAttribute("visibility", "visible");
  });
  root.addEventListener("mouseleave", () => {
    hover.setAttribute("visibility", "hidden");
    tip.setAttribute("visibility", "hidden");
  });
  root.addEventListener("click", (event) => {
    const t = instantAt(event);
    if (t !== null) options.onPick(new Date(t).toISOString());
  });
  container.replaceChildren(root);
}
