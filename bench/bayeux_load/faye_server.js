// The baseline: Faye 1.4.3's own Node server (NodeAdapter, memory engine) at /faye.
// Usage: node faye_server.js PORT TIMEOUT_S
const http = require('http');
const faye = require('faye');

const [port, timeout] = process.argv.slice(2).map(Number);
const bayeux = new faye.NodeAdapter({ mount: '/faye', timeout });
const server = http.createServer((req, res) => { res.writeHead(404); res.end(); });
bayeux.attach(server);
server.listen(port, '127.0.0.1', () => console.error('faye listening on ' + port));
process.on('SIGTERM', () => process.exit(0));
