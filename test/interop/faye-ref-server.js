#!/usr/bin/env node
// test/interop/faye-ref-server.js - the reference: Node faye 1.4.3 behind the
// same command line and listening line as `bin/bayeux serve`, so any test or
// benchmark that starts a server through BAYEUX_CMD can run against it:
//
//   BAYEUX_CMD="node test/interop/faye-ref-server.js" node test/interop/faye_longpoll.test.js
//   node test/interop/faye-ref-server.js serve --host 127.0.0.1 --port 8000 --mount /faye --timeout 45
//
// --engine 'redis://host:port/db?namespace=NS&mode=faye' runs it on
// faye-redis 0.2.0 (as bayeux's faye mode names it); --gc N sets
// faye-redis's sweep interval in seconds (default 60). --deflate adds the
// permessage-deflate npm extension to its WebSockets (the bench compares
// it with bayeux's).
//
// Prints "bayeux: listening on http://<host>:<port><mount>" once listening.
// SIGTERM/SIGINT close it and exit 0. Other paths answer 404.
'use strict';
const path = require('path');
const http = require('http');
const faye = require(path.join(__dirname, '..', 'node', 'node_modules', 'faye'));

const opts = { host: '127.0.0.1', port: 8000, mount: '/faye', timeout: 45, engine: null, gc: null };
const argv = process.argv.slice(2);
if (argv[0] === 'serve') argv.shift();
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--deflate') { opts.deflate = true; continue; }
  const m = /^--(host|port|mount|timeout|engine|gc)(?:=(.*))?$/.exec(argv[i]);
  if (!m) {
    console.error(`faye-ref-server: unknown argument ${argv[i]}`);
    process.exit(2);
  }
  opts[m[1]] = m[2] !== undefined ? m[2] : argv[++i];
}

// faye 1.4.3 can throw ERR_HTTP_HEADERS_SENT when a JSONP client goes away
// during a held connect (toolchain.md §3.6): log it, keep serving.
process.on('uncaughtException', (err) => {
  console.error('faye-ref-server: uncaught exception:', err && err.stack || err);
});

// a faye-redis engine from bayeux's URL form
function redisEngine(url, gc) {
  const u = new URL(url);
  if (u.protocol !== 'redis:' || u.searchParams.get('mode') !== 'faye') {
    console.error(`faye-ref-server: --engine takes redis://host:port/db?namespace=NS&mode=faye, not ${url}`);
    process.exit(2);
  }
  const engine = {
    type: require(path.join(__dirname, '..', 'node', 'node_modules', 'faye-redis')),
    host: u.hostname || '127.0.0.1',
    port: +(u.port || 6379),
    database: +(u.pathname.slice(1) || 0),
    namespace: u.searchParams.get('namespace') || '',
  };
  if (u.password) engine.password = decodeURIComponent(u.password);
  if (gc) engine.gc = +gc;
  return engine;
}

const adapterOpts = { mount: opts.mount, timeout: +opts.timeout };
if (opts.engine) adapterOpts.engine = redisEngine(opts.engine, opts.gc);
const bayeux = new faye.NodeAdapter(adapterOpts);
if (opts.deflate)
  bayeux.addWebsocketExtension(require(path.join(__dirname, '..', 'node', 'node_modules', 'permessage-deflate')));
const server = http.createServer((req, res) => {
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found\n');
});
bayeux.attach(server);

server.listen(+opts.port, opts.host, () => {
  const { port } = server.address();
  console.log(`bayeux: listening on http://${opts.host}:${port}${opts.mount}`);
});

function stop() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
