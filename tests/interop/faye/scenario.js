// The basic round trip with the real Faye client: wildcard subscribe, publish, 403 and 405 errbacks.
// Usage: node scenario.js URL websocket|long-polling ; exit 0 when every expectation held.
const faye = require('faye');

const [url, mode] = process.argv.slice(2);
const client = new faye.Client(url, { timeout: 10, retry: 1 });
if (mode === 'long-polling') client.disable('websocket');

const received = [];
const fail = (why) => { console.error('FAIL: ' + why); process.exit(1); };
setTimeout(() => fail('watchdog'), 15000);

const expectError = (promise, code) => new Promise((resolve) => {
  promise.then(() => fail('expected error ' + code), (err) => {
    if (err.code !== code) fail('expected ' + code + ', got ' + JSON.stringify(err));
    resolve();
  });
});

const sub = client.subscribe('/chat/*').withChannel((channel, data) => received.push({ channel, data }));
sub.then(async () => {
  await client.publish('/chat/room1', { text: 'hello', n: 1 });
  await expectError(client.publish('/meta/bogus', { x: 1 }), 403);
  await expectError(client.publish('/bad channel', { x: 1 }), 405);
  await expectError(client.publish('/trail/presence', { x: 1 }), 403);
  await expectError(client.subscribe('/meta/**'), 403);
  setTimeout(async () => {
    if (received.length !== 1) fail('received ' + JSON.stringify(received));
    const got = received[0];
    if (got.channel !== '/chat/room1' || got.data.text !== 'hello' || got.data.n !== 1) fail(JSON.stringify(got));
    console.log(JSON.stringify({ clientId: client._dispatcher.clientId, transport: client._dispatcher._transport.connectionType }));
    await client.disconnect();
    process.exit(0);
  }, 500);
}, (err) => fail('subscribe: ' + JSON.stringify(err)));
