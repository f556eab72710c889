// A Faye client that subscribes and waits: prints "ready <clientId>" once subscribed, then
// "got <channel> <json>" per message; exits 0 once each of its listeners got a message.
// Usage: node listen.js URL websocket|long-polling CHANNEL [LISTENERS] [TIMEOUT_S]
const faye = require('faye');
if (process.env.FAYE_LOG) faye.logger = { error: console.error, warn: console.error, info: console.error, debug: console.error };

const [url, mode, channel, listenersArg, watchdogArg] = process.argv.slice(2);
const listeners = Number(listenersArg || 1);
const client = new faye.Client(url, { timeout: 10, retry: 0.5 });
if (mode === 'long-polling') client.disable('websocket');
setTimeout(() => { console.error('FAIL: watchdog'); process.exit(3); }, Number(watchdogArg || 20) * 1000);

const heard = new Array(listeners).fill(0);
const subscriptions = [];
for (let i = 0; i < listeners; i++) {
  subscriptions.push(client.subscribe(channel).withChannel((ch, data) => {
    heard[i] += 1;
    console.log('got ' + ch + ' ' + JSON.stringify(data));
    if (heard.every((n) => n > 0)) process.exit(0);
  }));
}
// every listener acked (the 1.4.3 client sends one /meta/subscribe per listener)
Promise.all(subscriptions.map((s) => new Promise((ok, fail) => s.then(ok, fail)))).then(
  () => console.log('ready ' + client._dispatcher.clientId),
  (err) => { console.error('FAIL: subscribe ' + JSON.stringify(err)); process.exit(1); });
client.on('transport:down', () => console.log('down'));
client.on('transport:up', () => console.log('up'));
