// A shop page as a site using trail has it: the real ahoy.js tracks the visit, views and clicks,
// and the real Faye browser client keeps a Bayeux session bound to the visit (its presence).
// __COLLECTOR__ and __USER_TOKEN__ are filled in by the test's page server.

const COLLECTOR = "__COLLECTOR__";
const extra = window.VISITOR_EXTRA || {};
ahoy.configure({ urlPrefix: COLLECTOR });
ahoy.trackView(extra.view || {});
ahoy.trackClicks("button, a");
if (extra.event) ahoy.track(extra.event.name, extra.event.properties);

// The Bayeux session starts once ahoy.js has its visit (it makes the visit when the document is
// ready, and its listener was added first), so the handshake can say which visit it belongs to.
document.addEventListener("DOMContentLoaded", () => {
  const client = new Faye.Client(COLLECTOR + "/faye", { timeout: 10, retry: 1 });
  client.addExtension({
    outgoing(message, callback) {
      if (message.channel === "/meta/handshake") {
        const trail = { visit_token: ahoy.getVisitId(), visitor_token: ahoy.getVisitorId() };
        if ("__USER_TOKEN__") trail.user_token = "__USER_TOKEN__";
        message.ext = { trail };
      }
      callback(message);
    },
  });
  client.subscribe("/site/news", () => {}).then(() => {
    window.fayeReady = true;
  });
});
window.fayeReady = false;
