#!/usr/bin/env node
// bench/faye_cluster.js - Node Faye on faye-redis in N processes sharing one
// port (node's cluster module): the Faye side of bench/run.js's two-process
// scenario, beside `bayeux serve --workers N --engine redis://...`.
//
//   node bench/faye_cluster.js --port 0 --mount /faye --timeout 45 --workers 2 --redis 6379
//
// Needs faye-redis (0.2.0, with redis@3) in test/node/node_modules; says so
// and exits 2 without it. Prints "listening on http://HOST:PORT/MOUNT" (each
// worker) once listening; SIGTERM stops every worker.
'use strict';
const cluster = require('cluster');
const http = require('http');
const path = require('path');

const NM = path.join(__dirname, '..', 'test', 'node', 'node_modules');
const opts = { host: '127.0.0.1', port: 0, mount: '/faye', timeout: 45, workers: 2, redis: 6379 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const k = argv[i].replace(/^--/, '');
  if (!(k in opts) || argv[i + 1] === undefined) {
    console.error(`faye_cluster: bad argument ${argv[i]}`);
    process.exit(2);
  }
  opts[k] = argv[i + 1];
}

if (cluster.isPrimary || cluster.isMaster) {
  try {
    require.resolve(path.join(NM, 'faye-redis'));
  } catch (e) {
    console.error('faye_cluster: faye-redis is not installed in test/node (tools/npm-deps.sh)');
    process.exit(2);
  }
  let stopping = false;
  for (let i = 0; i < +opts.workers; i++) cluster.fork();
  cluster.on('exit', () => {
    if (!stopping) cluster.fork();
    else if (Object.keys(cluster.workers).length === 0) process.exit(0);
  });
  for (const sig of ['SIGTERM', 'SIGINT']) {
    process.on(sig, () => {
      stopping = true;
      for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
      if (Object.keys(cluster.workers).length === 0) process.exit(0);
    });
  }
} else {
  const faye = require(path.join(NM, 'faye'));
  const engine = { type: require(path.join(NM, 'faye-redis')), host: '127.0.0.1',
    port: +opts.redis, namespace: 'fayebench' };
  const adapter = new faye.NodeAdapter({ mount: opts.mount, timeout: +opts.timeout, engine });
  const server = http.createServer((req, res) => { res.writeHead(404); res.end(); });
  adapter.attach(server);
  server.listen(+opts.port, opts.host, () => {
    const { port } = server.address();
    console.log(`faye_cluster: listening on http://${opts.host}:${port}${opts.mount}`);
  });
  process.on('SIGTERM', () => process.exit(0));
}
