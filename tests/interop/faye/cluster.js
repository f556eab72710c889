// A Faye client for the cluster tests. Prints "ready <clientId>" once subscribed, then
// "got <clientId> <channel> <json>" for every message (the clientId it holds then), until
// killed or the watchdog (exit 3).
// Usage: node cluster.js URL websocket|long-polling CHANNEL[,CHANNEL...] [TIMEOUT_S]
//   With PUBLISH=<channel> and COUNT=<n> it publishes {n: 1..COUNT} there one after the other
//   once subscribed, printing "published <n>" per acknowledged publish.
const faye = require('faye');
if (process.env.FAYE_LOG) faye.logger = { error: console.error, warn: console.error, info: console.error, debug: console.error };

const [url, mode, channelList, watchdogArg] = process.argv.slice(2);
const client = new faye.Client(url, { timeout: 10, retry: 0.5 });
if (mode === 'long-polling') client.disable('websocket');
setTimeout(() => { console.error('FAIL: watchdog'); process.exit(3); }, Number(watchdogArg || 30) * 1000);

const id = () => client._dispatcher.clientId;
const channels = channelList.split(',');
const subscriptions = channels.map((ch) => client.subscribe(ch).withChannel((got, data) => {
  console.log('got ' + id() + ' ' + got + ' ' + JSON.stringify(data));
}));

async function publishAll() {
  const count = Number(process.env.COUNT || 0);
  for (let n = 1; n <= count; n++) {
    await client.publish(process.env.PUBLISH, { n });
    console.log('published ' + n);
  }
}

Promise.all(subscriptions.map((s) => new Promise((ok, fail) => s.then(ok, fail)))).then(
  () => { console.log('ready ' + id()); if (process.env.PUBLISH) publishAll(); },
  (err) => { console.error('FAIL: subscribe ' + JSON.stringify(err)); process.exit(1); });
