#!/usr/bin/env node
// bench/faye_ext_server.js - Node faye 1.4.3 on /faye with one trivial
// incoming extension that every message passes through: the peer of
// bench/ext_app.lua in the extension scenario of bench/run.js (`--no-ext`
// leaves it out).
//
//   node bench/faye_ext_server.js [--no-ext] [--port P]
//
// Prints "bayeux: listening on http://127.0.0.1:PORT/faye" once listening.
'use strict';
const http = require('http');
const path = require('path');
const faye = require(path.join(__dirname, '..', 'test', 'node', 'node_modules', 'faye'));

const argv = process.argv.slice(2);
const withExt = !argv.includes('--no-ext');
const pi = argv.indexOf('--port');
const port = pi >= 0 ? +argv[pi + 1] : 0;

const adapter = new faye.NodeAdapter({ mount: '/faye', timeout: 45 });
if (withExt) adapter.addExtension({ incoming(message, callback) { callback(message); } });
const server = http.createServer((req, res) => { res.writeHead(404); res.end(); });
adapter.attach(server);
server.listen(port, '127.0.0.1', () => {
  console.log(`bayeux: listening on http://127.0.0.1:${server.address().port}/faye`);
});
process.on('SIGTERM', () => process.exit(0));
