// One load script for both servers: raw Bayeux clients over WebSocket or long-polling.
// URL may be several, comma-separated (the nodes of a cluster): client i uses URL i mod n, the
// publisher the first; latency is also reported for subscribers on another node than it.
// Usage: node load.js URL ws|lp fanout SUBSCRIBERS MESSAGES
//        node load.js URL ws|lp latency SUBSCRIBERS RATE SECONDS
//        node load.js URL ws|lp idle CLIENTS          (prints "ready", holds until stdin closes)
// Prints one JSON line with the results on stdout.
const http = require('http');
const WebSocket = require('faye-websocket');

const [url, mode, test, ...rest] = process.argv.slice(2);
const urls = url.split(',');
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const CHANNEL = '/bench/fan';
let nextId = 0;
const errors = { connect: 0, publish: 0 };

function post(target, messages) {
  const body = JSON.stringify(messages);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        try { resolve(JSON.parse(Buffer.concat(chunks).toString())); } catch (e) { reject(e); }
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

class BayeuxClient {
  constructor(onData, index = 0) {
    this.onData = onData; this.pending = new Map();
    this.node = index % urls.length; this.url = urls[this.node]; this.target = new URL(this.url);
  }

  async handshake() {
    const [reply] = await post(this.target, [{ channel: '/meta/handshake', version: '1.0',
      supportedConnectionTypes: ['websocket', 'long-polling'], id: String(++nextId) }]);
    if (!reply.successful) throw new Error('handshake: ' + reply.error);
    this.id = reply.clientId;
  }

  async open() {
    await this.handshake();
    if (mode === 'ws') {
      this.ws = new WebSocket.Client(this.url.replace(/^http/, 'ws'));
      this.ws.on('message', (event) => this.receive(JSON.parse(event.data)));
      await new Promise((resolve, reject) => { this.ws.on('open', resolve); this.ws.on('error', reject); });
    }
    this.connect();
  }

  send(message) {
    message.id = String(++nextId);
    message.clientId = this.id;
    if (mode === 'ws') {
      const done = new Promise((resolve) => this.pending.set(message.id, resolve));
      this.ws.send(JSON.stringify([message]));
      return done;
    }
    return post(this.target, [message]).then((replies) => { this.receive(replies); return replies[0]; });
  }

  connect() {
    const message = { channel: '/meta/connect', clientId: this.id, connectionType: mode === 'ws' ? 'websocket' : 'long-polling' };
    if (mode === 'ws') { this.ws.send(JSON.stringify([message])); return; }
    post(this.target, [message]).then((replies) => { this.receive(replies); }, () => {
      errors.connect += 1;
      if (!this.closed) setTimeout(() => this.connect(), 100);
    });
  }

  receive(messages) {
    for (const m of messages) {
      if (m.channel === '/meta/connect') {
        if (this.closed) continue;
        if (m.successful) this.connect(); else console.error('connect failed', m.error);
      } else if ('successful' in m) {
        const resolve = this.pending.get(m.id);
        if (resolve) { this.pending.delete(m.id); resolve(m); }
      } else if (m.data !== undefined) {
        this.onData(m);
      }
    }
  }

  subscribe(channel) { return this.send({ channel: '/meta/subscribe', subscription: channel }); }

  publish(channel, data) { return this.send({ channel, data }); }
}

async function openMany(count, onData) {
  const clients = [];
  for (let i = 0; i < count; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + 50); j++) {
      const c = new BayeuxClient((m) => onData(m, c), j);
      batch.push(c.open().then(() => c.subscribe(CHANNEL)).then((ack) => {
        if (!ack.successful) throw new Error('subscribe: ' + ack.error);
        return c;
      }));
    }
    clients.push(...await Promise.all(batch));
  }
  return clients;
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function fanout(subscribers, messages) {
  let received = 0;
  const expected = subscribers * messages;
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  await openMany(subscribers, () => { if (++received === expected) finish(); });
  const publisher = new BayeuxClient(() => {});
  await publisher.open();
  await new Promise((r) => setTimeout(r, 300));
  const started = process.hrtime.bigint();
  const window = 20;
  let sent = 0;
  const pump = async () => {
    while (sent < messages) {
      sent++;
      await publisher.publish(CHANNEL, { n: sent }).catch(() => { errors.publish += 1; });
    }
  };
  await Promise.all(Array.from({ length: window }, pump));
  const timedOut = await Promise.race([finished.then(() => false), new Promise((r) => setTimeout(() => r(true), 60000))]);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { test: 'fanout', mode, subscribers, messages, received, expected, seconds, timedOut,
    deliveries_per_s: received / seconds };
}

async function latency(subscribers, rate, seconds) {
  const samples = [];
  const cross = [];
  await openMany(subscribers, (m, c) => {
    const ms = Number(process.hrtime.bigint() - BigInt(m.data.t)) / 1e6;
    samples.push(ms);
    if (c.node !== 0) cross.push(ms);
  });
  const publisher = new BayeuxClient(() => {});
  await publisher.open();
  await new Promise((r) => setTimeout(r, 300));
  const total = Math.round(rate * seconds);
  for (let i = 0; i < total; i++) {
    publisher.publish(CHANNEL, { t: String(process.hrtime.bigint()) }).catch(() => { errors.publish += 1; });
    await new Promise((r) => setTimeout(r, 1000 / rate));
  }
  await new Promise((r) => setTimeout(r, 1000));
  samples.sort((a, b) => a - b);
  cross.sort((a, b) => a - b);
  return { test: 'latency', mode, subscribers, seconds, published: total, received: samples.length,
    expected: total * subscribers, p50_ms: percentile(samples, 0.5), p99_ms: percentile(samples, 0.99),
    cross_p50_ms: cross.length ? percentile(cross, 0.5) : null,
    cross_p99_ms: cross.length ? percentile(cross, 0.99) : null };
}

async function idle(count) {
  const clients = await openMany(count, () => {});
  console.log('ready ' + clients.length);
  await new Promise((resolve) => { process.stdin.on('end', resolve); process.stdin.on('close', resolve); process.stdin.resume(); });
  return { test: 'idle', mode, clients: clients.length };
}

const tests = { fanout, latency, idle };
tests[test](...rest.map(Number)).then((result) => {
  console.log(JSON.stringify({ ...result, errors }));
  process.exit(0);
}, (err) => { console.error(err); process.exit(1); });
