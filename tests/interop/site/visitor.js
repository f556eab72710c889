// A shop page as a site using trail has it: the real ahoy.js tracks the visit, views and clicks,
// and the real Faye browser client keeps a Bayeux session bound to the visit (its presence).
// __COLLECTOR__ and __SIGNED_IN__ are filled in by the test's page server; a signed-in page asks
// it for a user token for its visit, as a site's app server would sign one.

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
      if (message.channel !== "/meta/handshake") return callback(message);
      const trail = { visit_token: ahoy.getVisitId(), visitor_token: ahoy.getVisitorId() };
      message.ext = { trail };
      if (!"__SIGNED_IN__") return callback(message);
      fetch("/user_token/" + encodeURIComponent(trail.visit_token))
        .then((response) => response.text())
        .then((token) => { trail.user_token = token; callback(message); });
    },
  });
  client.subscribe("/site/news", () => {}).then(() => {
    window.fayeReady = true;
  });
});
window.fayeReady = false;
