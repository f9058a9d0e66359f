#!/usr/bin/env node
// test/interop/ack.test.js - acknowledged delivery (docs/delivery.md) with
// the real CometD JavaScript client and its own AckExtension (npm `cometd`,
// unchanged), through a TCP relay on 127.0.0.1 that cuts connections in the
// middle of responses carrying messages: the relay passes half of such a
// response, then closes both sides, so what the server wrote is lost on the
// way. Many sequence-numbered publishes (by a second client, not relayed)
// must all arrive, in order, none twice: over long-polling and WebSocket,
// on the memory engine and on the Redis engine (a private redis-server; the
// subscriber on one process, the publisher on the other; then a relay that
// moves the subscriber to the other process at every cut, so an
// unacknowledged batch follows a client taken over without sticky
// sessions). The same run against Faye's Node server prints what it loses
// (not asserted: Faye has no acknowledgements).
//
//   node test/interop/ack.test.js
//   BAYEUX_CMD="node test/interop/faye-ref-server.js" node test/interop/ack.test.js
//
// Prints "ok - name" / "not ok - name" per test and ends with "N passed, N
// failed"; exits 1 on any failure.
'use strict';
const path = require('path');
const net = require('net');
const fs = require('fs');
const os = require('os');
const { spawn } = require('child_process');
const { pathToFileURL } = require('url');

const H = require('./harness');
const { startRelay: startCutRelay } = require('./cut_relay');
const { delay, withTimeout, assert, assertEqual } = H;

const MOUNT = '/cometd';
const SERVER_TIMEOUT = 2;
const N = 120;                   // publishes per run
const MAX_CUTS = 8;              // responses cut per run
const TEST_MS = 45000;
const FILE_MS = 110000;          // tools/check.sh bounds a file to 120 s
const FAYE = /faye-ref-server/.test(H.CMD);
const FAYE_CMD = 'node test/interop/faye-ref-server.js';

let CometD = null, AckExtension = null;
const servers = [];
const clients = [];
const relays = [];
const tests = [];
const test = (name, fn, ms = TEST_MS) => tests.push({ name, fn, ms });
let main_ = null;

// ------------------------------------------------------------- redis-server

const redis = { proc: null, port: 0, dir: null };

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function redisPing() {
  return new Promise((resolve) => {
    const sock = net.connect(redis.port, '127.0.0.1');
    sock.on('error', () => resolve(false));
    sock.on('connect', () => sock.write('*1\r\n$4\r\nPING\r\n'));
    sock.on('data', (d) => { sock.destroy(); resolve(d.toString().startsWith('+PONG')); });
  });
}

async function startRedis() {
  redis.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bx-ack-redis-'));
  redis.port = await freePort();
  redis.proc = spawn('redis-server', ['--port', String(redis.port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--dir', redis.dir, '--loglevel', 'warning'],
  { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    if (await redisPing()) return;
    await delay(25);
  }
  throw new Error('redis-server did not answer');
}

process.on('exit', () => {
  if (redis.proc && redis.proc.exitCode === null) redis.proc.kill('SIGKILL');
  if (redis.dir) try { fs.rmSync(redis.dir, { recursive: true, force: true }); } catch (e) { /* gone */ }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(1));

function startServer(opts = {}) {
  const p = H.startServer({ mount: MOUNT, timeout: SERVER_TIMEOUT, ...opts });
  servers.push(p.srv);
  return p;
}

// ----------------------------------------------------------- cutting relay
// (cut_relay.js): half of a response carrying /seq/ deliveries, then both
// sides closed; with several ports, the next connections go to the next.

async function startRelay(ports, every) {
  const relay = await startCutRelay(ports, { every, maxCuts: MAX_CUTS, mount: MOUNT });
  relays.push(relay);
  return relay;
}

// ------------------------------------------------------------------ client

let clientSeq = 0;
function newClient(url, transport, ack) {
  const c = new CometD(`ack${++clientSeq}`);
  c.configure({ url, logLevel: 'warn', backoffIncrement: 100, maxBackoff: 500, maxNetworkDelay: 4000 });
  if (transport !== 'websocket') c.unregisterTransport('websocket');
  c.unregisterTransport('callback-polling');
  if (ack) c.registerExtension('ack', new AckExtension());
  clients.push(c);
  return c;
}

function handshaken(c) {
  return withTimeout(new Promise((resolve) => c.handshake(resolve)), 8000, 'handshake reply')
    .then((r) => { assert(r.successful, `handshake ${JSON.stringify(r)}`); return r; });
}

function subscribed(c, channel, fn) {
  return withTimeout(new Promise((resolve) => c.subscribe(channel, fn, resolve)), 8000, `subscribe ${channel}`)
    .then((r) => { assert(r.successful, `subscribe ${JSON.stringify(r)}`); return r; });
}

function published(c, channel, data) {
  return withTimeout(new Promise((resolve) => c.publish(channel, data, resolve)), 8000, `publish ${channel}`)
    .then((r) => { assert(r.successful, `publish ${JSON.stringify(r)}`); return r; });
}

function disconnect(c) {
  return withTimeout(new Promise((resolve) => c.disconnect(resolve)), 3000, 'disconnect');
}

// One run: a subscriber with AckExtension through a cutting relay to
// `ports`, a publisher straight to `pubUrl`; N publishes in small groups.
// Resolves with what arrived and how many responses were cut.
let runSeq = 0;
async function run({ ports, pubUrl, transport, every }) {
  const relay = await startRelay(ports, every);
  const channel = `/seq/${++runSeq}`;
  const sub = newClient(relay.url, transport, true);
  const pub = newClient(pubUrl, 'long-polling', false);
  const got = [];
  const hs = await handshaken(sub);
  await handshaken(pub);
  await subscribed(sub, channel, (m) => got.push(m.data.n));
  for (let i = 1; i <= N; i++) {
    await published(pub, channel, { n: i, pad: 'x'.repeat(64) });
    if (i % 6 === 0) await delay(15);
  }
  // everything published is answered: wait until the last arrives (or
  // nothing more comes for a while)
  let last = -1, quiet = 0;
  while (!got.includes(N) && quiet < 40) {
    await delay(100);
    quiet = got.length === last ? quiet + 1 : 0;
    last = got.length;
  }
  await delay(300);              // a doubled delivery would come now
  const transportUsed = sub.getTransport() && sub.getTransport().type;
  await Promise.race([Promise.allSettled([disconnect(sub), disconnect(pub)]), delay(3000)]);
  relay.close();
  if (process.env.BX_DEBUG) console.log(`# debug: cuts ${relay.cuts} seen ${relay.seen} got ${got.length}`);
  return { got, cuts: relay.cuts, ack: hs.ext && hs.ext.ack, transportUsed };
}

// What a run lost, doubled and reordered.
function tally(got) {
  const seen = new Map();
  for (const n of got) seen.set(n, (seen.get(n) || 0) + 1);
  const lost = [];
  for (let i = 1; i <= N; i++) if (!seen.has(i)) lost.push(i);
  const doubled = [...seen].filter(([, k]) => k > 1).map(([n]) => n);
  const unordered = got.some((n, i) => i > 0 && n < got[i - 1]);
  return { lost, doubled, unordered };
}

function checkRun(r, transport, what) {
  const t = tally(r.got);
  if (FAYE) {
    console.log(`# Faye ${what} [${transport}]: ${r.cuts} responses cut; lost ${t.lost.length} of ${N}` +
      ` (${t.lost.slice(0, 20).join(',')}${t.lost.length > 20 ? ',...' : ''}), doubled ${t.doubled.length}` +
      `${t.unordered ? ', out of order' : ''}`);
    return;
  }
  assertEqual(r.ack, true, 'handshake reply ext.ack');
  assert(r.cuts >= 3, `responses cut: ${r.cuts}`);
  assertEqual(r.transportUsed, transport, 'transport');
  assertEqual({ lost: t.lost, doubled: t.doubled, unordered: t.unordered },
    { lost: [], doubled: [], unordered: false }, `what arrived (${r.got.length})`);
  console.log(`# ${what} [${transport}]: ${r.cuts} responses cut, ${N} of ${N} arrived in order, none twice`);
}

// ------------------------------------------------------------------- tests

for (const T of ['long-polling', 'websocket']) {
  test(`every message arrives once, in order, through cut responses: memory engine [${T}]`, async () => {
    const r = await run({ ports: [main_.port], pubUrl: main_.url, transport: T });
    checkRun(r, T, FAYE ? 'memory' : 'memory engine');
  });
}

if (!FAYE) {
  for (const T of ['long-polling', 'websocket']) {
    test(`Faye's Node server through the same cuts: what it loses is printed [${T}]`, async () => {
      if (!test.faye) test.faye = await startServer({ cmd: FAYE_CMD });
      const r = await run({ ports: [test.faye.port], pubUrl: test.faye.url, transport: T });
      const t = tally(r.got);
      console.log(`# Faye [${T}]: ${r.cuts} responses cut; lost ${t.lost.length} of ${N}, doubled ${t.doubled.length}` +
        `${t.unordered ? ', out of order' : ''} (its handshake reply ext.ack: ${r.ack})`);
    });
  }

  const redisUp = async () => {
    if (test.A) return;
    await startRedis();
    const extra = `--engine 'redis://127.0.0.1:${redis.port}/0?namespace=ack'`;
    [test.A, test.B] = await Promise.all([startServer({ extra }), startServer({ extra })]);
    console.log(`# redis-server on port ${redis.port}; servers ${test.A.url} and ${test.B.url}`);
  };
  for (const T of ['long-polling', 'websocket']) {
    test(`Redis engine, subscriber and publisher on two processes [${T}]`, async () => {
      await redisUp();
      const r = await run({ ports: [test.A.port], pubUrl: test.B.url, transport: T });
      checkRun(r, T, 'redis engine');
    });
  }
  for (const T of ['long-polling', 'websocket']) {
    test(`Redis engine, the subscriber moves to the other process at every cut (no sticky sessions) [${T}]`, async () => {
      await redisUp();
      const r = await run({ ports: [test.A.port, test.B.port], pubUrl: test.B.url, transport: T });
      checkRun(r, T, 'redis engine, handoff');
    });
  }
}

// ------------------------------------------------------------------ runner

async function loadCometD() {
  const adapter = await import(pathToFileURL(path.join(H.NODE_MODULES, 'cometd-nodejs-client', 'cometd-nodejs-client.js')).href);
  adapter.adapt();
  global.window.console = {
    log: () => {}, debug: () => {}, info: () => {},
    warn: (...a) => console.log('# cometd warn:', ...a),
    error: (...a) => console.log('# cometd error:', ...a),
  };
  const lib = await import(pathToFileURL(path.join(H.NODE_MODULES, 'cometd', 'cometd.js')).href);
  ({ CometD, AckExtension } = lib);
}

process.on('unhandledRejection', (e) => {
  console.log(`# unhandled rejection: ${e && e.stack || e}`);
});

H.runFile({
  tests,
  fileMs: FILE_MS,
  servers: () => servers,
  async start() {
    await loadCometD();
    main_ = await startServer();
    return main_;
  },
  async finish() {
    await Promise.race([
      Promise.allSettled(clients.filter((c) => !c.isDisconnected()).map((c) => disconnect(c))),
      delay(2000),
    ]);
    for (const r of relays) r.close();
  },
});
