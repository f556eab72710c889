// The cluster baseline: Faye 1.4.3's Node server with the faye-redis 0.2.0 engine, one node of
// several sharing one Redis. Its packages come from FAYE_REDIS_MODULES (bench/bayeux_cluster.py
// installs them there; they are not part of trail).
// Usage: node faye_redis_server.js PORT TIMEOUT_S REDIS_PORT
const path = require('path');
const modules = process.env.FAYE_REDIS_MODULES;
const faye = require(path.join(modules, 'faye'));
const engine = require(path.join(modules, 'faye-redis'));
const http = require('http');

const [port, timeout, redisPort] = process.argv.slice(2).map(Number);
const bayeux = new faye.NodeAdapter({
  mount: '/faye', timeout, engine: { type: engine, host: '127.0.0.1', port: redisPort },
});
const server = http.createServer((req, res) => { res.writeHead(404); res.end(); });
bayeux.attach(server);
server.listen(port, '127.0.0.1', () => console.error('faye-redis listening on ' + port));
process.on('SIGTERM', () => process.exit(0));
