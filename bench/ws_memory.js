// bench/ws_memory.js - memory per idle WebSocket session, bayeux beside
// Node faye in one run.
//
// For each server: read its resident set size (VmRSS in /proc/<pid>/status)
// once it listens and has served a few warm-up sessions, then open SESSIONS
// WebSocket sessions as Faye's client does (handshake, /meta/connect with
// connectionType "websocket", subscribe to a channel of its own, with one
// connect held), let them sit idle for IDLE_MS and read VmRSS again. Prints
// (after - before) / SESSIONS: the user-space bytes one idle session costs
// (the kernel's socket buffers are not in RSS). Client sockets are spread
// over 127.0.0.x source addresses; each side needs SESSIONS file
// descriptors (ulimit -n).
//
//   node bench/ws_memory.js             (bench/run.sh runs it)
//   SESSIONS=5000 IDLE_MS=2000 node bench/ws_memory.js
'use strict';
const B = require('./lib');

const SESSIONS = +process.env.SESSIONS || 5000;
const IDLE_MS = +process.env.IDLE_MS || 2000;
const WARMUP = 20;

async function open(url, i) {
  return new B.WsClient(url, i).subscribe(`/idle/${i}`);
}

async function run(name) {
  const srv = await B.startServer(name);
  // a few sessions first, so that one-time allocations (buffers, code
  // warm-up) are in the "before" figure, not spread over the sessions
  const warm = await B.openMany(WARMUP, 10, (i) => open(srv.url, i));
  warm.forEach((c) => c.close());
  await B.sleep(IDLE_MS);
  const before = B.rssBytes(srv.pid);
  const t0 = Date.now();
  const clients = await B.openMany(SESSIONS, 100, (i) => open(srv.url, WARMUP + i));
  const setup = (Date.now() - t0) / 1000;
  await B.sleep(IDLE_MS);
  const after = B.rssBytes(srv.pid);
  const per = (after - before) / SESSIONS;
  const mb = (x) => (x / 1048576).toFixed(1);
  console.log(`${name.padEnd(8)} ${SESSIONS} idle WebSocket sessions (set up in ${setup.toFixed(1)} s): ` +
    `RSS ${mb(before)} MB -> ${mb(after)} MB = ${B.fmt(per)} bytes per session`);
  clients.forEach((c) => c.close());
  await B.stop(srv);
  return per;
}

B.main(async () => {
  console.log(`memory per idle WebSocket session: ${SESSIONS} sessions`);
  const ours = await run('bayeux');
  if (process.env.ONLY === 'bayeux') return;
  const faye = await run('faye');
  B.report({ measure: `memory per idle WS session (${SESSIONS} sessions)`, unit: 'bytes',
    a: ['bayeux', ours], b: ['faye', faye], ratio: B.ratioText(ours, faye, 'lower') });
});
