// The dashboard page: a snapshot of who is online, then live frames from /dashboard/api/live
// (server-sent events, batched by the collector four times a second and drawn at most once per
// animation frame), the trail drawer, and the history view.

import { getJSON } from "./api.js";
import { $, setText } from "./dom.js";
import { LiveModel } from "./model.js";
import { OnlinePanel } from "./online.js";
import { ActivityPanel } from "./activity.js";
import { TrailPanel } from "./trail.js";
import { HistoryView } from "./history.js";

const options = new URLSearchParams(location.search);
const LIVE = options.get("live") !== "0"; // ?live=0: no live updates (a baseline for measuring)

const model = new LiveModel();
const trail = new TrailPanel(model);
const pick = (row, since) => trail.open(row, since);
new OnlinePanel(model, { onPick: (row) => pick(row) });
new ActivityPanel(model, { onPick: (event) => pick(model.personOf(event) || event) });
const history = new HistoryView({ onPick: pick });
const status = $("status");

function setStatus(state, text) {
  status.dataset.state = state;
  setText(status, text);
}

function ready() {
  if (!performance.getEntriesByName("trail:online-ready").length) {
    requestAnimationFrame(() => performance.mark("trail:online-ready"));
  }
}

// A snapshot fetched on its own: the first one (preloaded by the page while the scripts load),
// after a gap in the frames, and with live updates off.
async function refresh(first = false) {
  try {
    const snapshot = first
      ? await (await fetch("/dashboard/api/online", { credentials: "include" })).json()
      : await getJSON("/dashboard/api/online");
    if (!snapshot.columns) throw new Error(snapshot.error || "no snapshot");
    model.loadSnapshot(snapshot);
    ready();
  } catch (error) {
    if (first) return refresh(); // getJSON explains (and signs out on a 401)
    setStatus("error", error.message);
  }
}

// Live frames after what the page holds (the stream starts with a snapshot when the collector no
// longer keeps the frames since then; the browser resumes by itself with Last-Event-ID).
function connect() {
  const after = model.loaded ? `?after=${encodeURIComponent(`${model.epoch}:${model.n}`)}` : "";
  const source = new EventSource(`/dashboard/api/live${after}`);
  source.onopen = () => setStatus("live", "live");
  source.addEventListener("snapshot", (message) => {
    model.loadSnapshot(JSON.parse(message.data));
    ready();
  });
  source.onmessage = (message) => {
    if (model.loaded && !model.applyFrame(JSON.parse(message.data))) refresh();
  };
  source.addEventListener("signed-out", () => location.reload());
  source.onerror = async () => {
    setStatus("down", "reconnecting…");
    if (source.readyState === EventSource.CLOSED) {
      // refused (signed out?) rather than dropped: getJSON reloads to the sign-in form on a 401
      try {
        await getJSON("/dashboard/api/online");
      } catch {
        /* the collector is down: try again */
      }
      setTimeout(connect, 2000);
    }
  };
}

function showView() {
  const [view, query] = location.hash.replace(/^#/, "").split("?");
  const name = view === "history" ? "history" : "live";
  for (const tab of document.querySelectorAll("[data-view]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.view === name));
  }
  $("view-live").hidden = name !== "live";
  $("view-history").hidden = name !== "history";
  if (name === "history") history.fromHash(new URLSearchParams(query || ""));
}

for (const tab of document.querySelectorAll("[data-view]")) {
  tab.addEventListener("click", () => {
    location.hash = tab.dataset.view;
  });
}
window.addEventListener("hashchange", showView);
showView();

if (LIVE) {
  refresh(true).then(connect);
} else {
  setStatus("paused", "live updates off");
  refresh(true);
}
