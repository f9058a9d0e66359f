#!/usr/bin/env node
// test/interop/redis.test.js - two `bin/bayeux serve --engine redis://...`
// processes sharing a private redis-server (started here on a free loopback
// port, killed on every exit path), with npm faye clients on each:
// publishes cross processes over long-polling and WebSocket, wildcards;
// 2 x 300 concurrent publishes arrive once each, in order per publisher;
// the Redis commands a publish costs at 200 subscribers (INFO
// commandstats); Redis killed (SIGKILL) and restarted during traffic: both
// servers survive and answer meanwhile, and deliveries resume by
// themselves (what was lost during the outage is reported); no sticky
// sessions: long-polling clients whose every request goes to the next
// process (a round-robin HTTP proxy here) get 2 x 300 publishes once each,
// in order; handshake on one process and connect on the other, a
// disconnect on one answering a connect held on the other, expiry on both.
//
//   node test/interop/redis.test.js
//
// Prints "ok - name" / "not ok - name" per test and ends with "N passed, N
// failed"; exits 1 on any failure.
'use strict';
const path = require('path');
const net = require('net');
const fs = require('fs');
const os = require('os');
const { spawn } = require('child_process');

const H = require('./harness');
const { delay, withTimeout, assert, assertEqual } = H;
const faye = require(path.join(H.NODE_MODULES, 'faye'));

const SERVER_TIMEOUT = 2;
const TEST_MS = 30000;
const FILE_MS = 110000;          // tools/check.sh bounds a file to 120 s

const servers = [];
const clients = [];
const tests = [];
const test = (name, fn, ms = TEST_MS) => tests.push({ name, fn, ms });
let A = null, B = null;

// ------------------------------------------------------------- redis-server

const redis = { proc: null, port: 0, dir: fs.mkdtempSync(path.join(os.tmpdir(), 'bx-redis-')) };

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// One command over a fresh connection; resolves with the reply's text
// (status, integer, error or bulk string).
function redisCmd(...args) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(redis.port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    sock.on('error', reject);
    sock.on('connect', () => {
      sock.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join(''));
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return;
      const head = buf.slice(0, eol).toString();
      if (head[0] === '$') {
        const n = +head.slice(1);
        if (n < 0) { sock.destroy(); resolve(null); return; }
        if (buf.length < eol + 2 + n + 2) return;
        sock.destroy();
        resolve(buf.slice(eol + 2, eol + 2 + n).toString());
      } else {
        sock.destroy();
        if (head[0] === '-') reject(new Error(head.slice(1)));
        else resolve(head.slice(1));
      }
    });
  });
}

async function startRedis() {
  if (!redis.port) redis.port = await freePort();
  redis.proc = spawn('redis-server', ['--port', String(redis.port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--dir', redis.dir, '--loglevel', 'warning'],
  { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    try { if (await redisCmd('PING') === 'PONG') return; } catch (e) { /* not yet */ }
    await delay(25);
  }
  throw new Error('redis-server did not answer');
}

function killRedis() {
  if (redis.proc && redis.proc.exitCode === null && !redis.proc.killed) redis.proc.kill('SIGKILL');
}

// every way out of this process takes redis-server along
process.on('exit', () => {
  killRedis();
  try { fs.rmSync(redis.dir, { recursive: true, force: true }); } catch (e) { /* gone */ }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(1));

// ----------------------------------------------------------------- clients

function newClient(srv, transport) {
  const c = new faye.Client(srv.url, { timeout: SERVER_TIMEOUT + 5, retry: 1 });
  if (transport === 'long-polling') c.disable('websocket');
  clients.push(c);
  return c;
}

// Subscribes `c` to `ch`, recording every message in the returned array.
async function collect(c, ch) {
  const got = [];
  got.wait = H.waiter(TEST_MS - 2000);
  await c.subscribe(ch, (m) => { got.push(m); got.wait.notify(); });
  return got;
}

// ------------------------------------------------------------------- tests

for (const transport of ['long-polling', 'websocket']) {
  test(`publishes cross processes both ways, wildcards (${transport})`, async () => {
    const a = newClient(A, transport), b = newClient(B, transport);
    const onA = await collect(a, '/chat/*');
    const onB = await collect(b, '/deep/**');
    await b.publish('/chat/one', { from: 'b' });
    await onA.wait.until(() => onA.length === 1, 'a receives b\'s publish');
    assertEqual(onA[0], { from: 'b' });
    await a.publish('/deep/x/y', { from: 'a' });
    await onB.wait.until(() => onB.length === 1, 'b receives a\'s publish');
    assertEqual(onB[0], { from: 'a' });
    await a.publish('/chat/one/two', { deeper: true });    // /chat/* does not match
    await b.publish('/chat/two', { n: 2 });
    await onA.wait.until(() => onA.length === 2, 'a receives the second');
    assertEqual(onA[1], { n: 2 });
  });
}

test('2 x 300 concurrent publishes arrive once each, in order per publisher', async () => {
  const subA = newClient(A, 'websocket'), subB = newClient(B, 'long-polling');
  const onA = await collect(subA, '/load');
  const onB = await collect(subB, '/load');
  // over one socket each: a long-polling client may carry a burst in
  // several HTTP requests at once, which no server can keep in order
  const pubA = newClient(A, 'websocket'), pubB = newClient(B, 'websocket');
  await Promise.all([pubA.connect(), pubB.connect()]);
  await Promise.all([pubA.publish('/warm', 0), pubB.publish('/warm', 0)]);
  const all = [];
  for (let i = 0; i < 300; i++) {
    all.push(pubA.publish('/load', { p: 'A', n: i }));
    all.push(pubB.publish('/load', { p: 'B', n: i }));
  }
  await Promise.all(all);
  for (const [name, got] of [['A', onA], ['B', onB]]) {
    await got.wait.until(() => got.length >= 600, `600 messages on ${name} (have ${got.length})`);
    await delay(300);              // a duplicate would have come by now
    assertEqual(got.length, 600, `messages on ${name}`);
    for (const p of ['A', 'B']) {
      const ns = got.filter((m) => m.p === p).map((m) => m.n);
      assertEqual(ns, [...Array(300).keys()], `order of ${p}'s messages on ${name}`);
    }
  }
});

test('Redis commands per publish at 200 subscribers (INFO commandstats)', async () => {
  const subs = [];
  for (let i = 0; i < 200; i++) {
    const c = newClient(i % 2 ? A : B, 'websocket');
    subs.push(await collect(c, i % 3 ? '/count/*' : '/count/x'));
  }
  const pub = newClient(A, 'long-polling');
  await pub.publish('/warm', 0);
  await redisCmd('CONFIG', 'RESETSTAT');
  for (let i = 0; i < 20; i++) await pub.publish('/count/x', { i });
  try {
    for (const got of subs) await got.wait.until(() => got.length >= 20, 'every subscriber has 20');
  } catch (e) {
    const counts = {};
    for (const got of subs) counts[got.length] = (counts[got.length] || 0) + 1;
    throw new Error(`${e.message}; subscribers by messages received: ${JSON.stringify(counts)}`);
  }
  await delay(300);
  for (const got of subs) assertEqual(got.length, 20, 'messages of a subscriber');
  const info = await redisCmd('INFO', 'commandstats');
  let total = 0;
  for (const m of info.matchAll(/cmdstat_(\w+(?:\|\w+)?):calls=(\d+)/g)) {
    if (!/^(info|config)/.test(m[1])) total += +m[2];
  }
  console.log(`# Redis commands for 20 publishes to 200 subscribers on 2 processes: ${total} ` +
              `(${(total / 20).toFixed(2)} per publish)`);
  assert(total >= 20 && total <= 4 * 20, `${total} commands for 20 publishes`);
}, 60000);

test('Redis killed and restarted during traffic: both survive, answer, recover', async () => {
  const sub = newClient(B, 'long-polling');
  const got = await collect(sub, '/outage');
  const pub = newClient(A, 'websocket');
  let sent = 0, refused = 0, n = 0, stop = false;
  const accepted = new Set();
  const pump = (async () => {
    while (!stop) {
      const i = n++;
      try {
        await withTimeout(pub.publish('/outage', { i }), 5000, 'publish answered');
        accepted.add(i);
        sent++;
      } catch (e) {
        if (/answered/.test(e.message)) throw e;     // no answer at all: a hang
        refused++;
      }
      await delay(10);
    }
  })();
  await got.wait.until(() => got.length >= 10, 'traffic flows');
  killRedis();
  await delay(1500);
  // both servers answer meanwhile: a handshake and a publish each
  const refusedBefore = refused;
  for (const srv of [A, B]) {
    const c = newClient(srv, 'long-polling');
    await withTimeout(c.connect(), 5000, 'handshake while Redis is down');
    let err = null;
    try { await withTimeout(c.publish('/outage/x', 1), 5000, 'publish answered'); } catch (e) { err = e; }
    assert(err && !/answered/.test(err.message), 'a publish while Redis is down is refused with an error');
  }
  assert(refused > refusedBefore || refused > 0, 'the pump saw publishes refused during the outage');
  await startRedis();
  const mark = n;
  await got.wait.until(() => got.some((m) => m.i >= mark), 'deliveries resume after Redis is back', 15000);
  stop = true;
  await pump;
  await delay(300);
  const received = new Set(got.map((m) => m.i));
  const lost = [...accepted].filter((i) => !received.has(i));
  console.log(`# outage: ${sent} publishes accepted, ${refused} refused with an error, ` +
              `${lost.length} accepted but not delivered (${lost.length ? `${lost[0]}..${lost[lost.length - 1]}` : 'none'})`);
  assert(!A.exit && !B.exit, 'both servers are still running');
  const dup = got.length - received.size;
  assertEqual(dup, 0, 'no message delivered twice');
}, 60000);

// ------------------------------------------------- no sticky sessions

// One Bayeux POST; resolves with the reply's messages.
function bayeuxPost(url, msgs) {
  const http = require('http');
  const body = JSON.stringify(msgs);
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => { try { resolve(JSON.parse(text)); } catch (e) { reject(e); } });
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function rawHandshake(srv) {
  const [r] = await bayeuxPost(srv.url, [{ channel: '/meta/handshake', version: '1.0',
    supportedConnectionTypes: ['long-polling'] }]);
  assert(r.successful, 'handshake');
  return r.clientId;
}

function rawConnect(srv, clientId, timeoutMs) {
  return bayeuxPost(srv.url, [{ channel: '/meta/connect', clientId,
    connectionType: 'long-polling', advice: { timeout: timeoutMs } }]);
}

test('no sticky sessions: long-polling clients alternating between processes get 2 x 300 publishes once each, in order', async () => {
  const proxy = await H.roundRobin([A, B], '/bayeux');
  try {
    const subs = [];
    for (let i = 0; i < 2; i++) {
      const c = new faye.Client(proxy.url, { timeout: SERVER_TIMEOUT + 5, retry: 1 });
      c.disable('websocket');
      clients.push(c);
      subs.push(await collect(c, '/nosticky'));
    }
    const pubA = newClient(A, 'websocket'), pubB = newClient(B, 'websocket');
    await Promise.all([pubA.connect(), pubB.connect()]);
    await Promise.all([pubA.publish('/warm', 0), pubB.publish('/warm', 0)]);
    const all = [];
    for (let i = 0; i < 300; i++) {
      all.push(pubA.publish('/nosticky', { p: 'A', n: i }));
      all.push(pubB.publish('/nosticky', { p: 'B', n: i }));
      // in waves, so that the subscribers' connects (each answered by the
      // messages it finds) hop between the processes during the traffic
      if (i % 10 === 9) await delay(30);
    }
    await Promise.all(all);
    for (const [k, got] of subs.entries()) {
      await got.wait.until(() => got.length >= 600, `600 messages on subscriber ${k} (have ${got.length})`);
      await delay(500);            // a duplicate would have come by now
      assertEqual(got.length, 600, `messages on subscriber ${k}`);
      for (const p of ['A', 'B']) {
        const ns = got.filter((m) => m.p === p).map((m) => m.n);
        assertEqual(ns, [...Array(300).keys()], `order of ${p}'s messages on subscriber ${k}`);
      }
    }
    console.log(`# requests through the proxy: ${proxy.counts[0]} to A, ${proxy.counts[1]} to B`);
    assert(proxy.counts[0] > 20 && proxy.counts[1] > 20, 'both processes served the clients, many times');
  } finally {
    proxy.server.close();
  }
}, 60000);

test('no sticky sessions: handshake on A, connect on B; a disconnect on B answers a connect held on A', async () => {
  const id = await rawHandshake(A);
  const [c1] = await rawConnect(B, id, 0);
  assert(c1.successful, `a connect on B for a client of A: ${JSON.stringify(c1)}`);
  // held for 20 s unless something answers it sooner
  const held = rawConnect(A, id, 20000);
  await delay(300);
  const [d] = await bayeuxPost(B.url, [{ channel: '/meta/disconnect', clientId: id }]);
  assert(d.successful, `disconnect on B: ${JSON.stringify(d)}`);
  await withTimeout(held, 10000, 'the connect held on A answered after the disconnect on B');
  for (const srv of [A, B]) {
    const [c] = await rawConnect(srv, id, 0);
    assert(!c.successful && /^401:/.test(c.error), `a connect after the disconnect: ${JSON.stringify(c)}`);
  }
});

test('no sticky sessions: a client expires on every process after 2 x timeout', async () => {
  const id = await rawHandshake(A);
  const [c1] = await rawConnect(B, id, 0);
  assert(c1.successful, `a connect on B for a client of A: ${JSON.stringify(c1)}`);
  const sub = (srv) => bayeuxPost(srv.url, [{ channel: '/meta/subscribe', clientId: id,
    subscription: '/expiry' }]);
  const [s1] = await sub(A);
  assert(s1.successful, `a subscribe on A for the client B holds: ${JSON.stringify(s1)}`);
  // a subscribe is no connect: it keeps no client alive; 2 x 2 s, with a
  // generous bound
  for (const srv of [A, B]) {
    let last = null;
    for (let i = 0; i < 100; i++) {
      [last] = await sub(srv);
      if (!last.successful) break;
      await delay(200);
    }
    assert(!last.successful && /^401:/.test(last.error),
      `the client expired on ${srv === A ? 'A' : 'B'}: ${JSON.stringify(last)}`);
  }
}, 40000);

// ------------------------------------------------------------ --workers

// The process (a worker's node id) that made each of `n` clients, each
// handshaken over a fresh connection: the kernel spreads the connections.
async function holders(srv, n) {
  const ids = [];
  for (let i = 0; i < n; i++) ids.push(await rawHandshake(srv));
  const nodes = [];
  for (const id of ids) nodes.push(await redisCmd('GET', `interop/c/${id}/h`));
  return nodes;
}

const alive = (pid) => { try { process.kill(pid, 0); return true; } catch (e) { return false; } };

test('--workers 2: two processes share the port and the traffic; a killed worker comes back; SIGTERM stops all', async () => {
  const extra = `--workers 2 --engine 'redis://127.0.0.1:${redis.port}/0?namespace=interop'`;
  const start = H.startServer({ mount: '/bayeux', timeout: SERVER_TIMEOUT, extra });
  servers.push(start.srv);
  const W = await start;
  const pids = () => [...W.log.matchAll(/worker (\d+) started \(pid (\d+)\)/g)].map((m) => +m[2]);
  const listening = () => (W.log.match(/bayeux: listening on /g) || []).length;
  await H.poll(() => pids().length === 2 && listening() === 2, 'two workers listening', 20000);
  const [p1, p2] = pids();
  assert(p1 !== p2 && alive(p1) && alive(p2), `two worker processes: ${pids()}`);
  const first = await holders(W, 40);
  assert(first.every((x) => x), 'every client registered');
  const nodes1 = new Set(first);
  assertEqual(nodes1.size, 2, `processes that made the 40 clients (${[...nodes1]})`);
  // a client made by one worker connects through whichever the kernel picks
  const id = await rawHandshake(W);
  for (let i = 0; i < 4; i++) {
    const [c] = await rawConnect(W, id, 0);
    assert(c.successful, `connect ${i}: ${JSON.stringify(c)}`);
  }

  process.kill(p1, 'SIGKILL');
  await H.poll(() => pids().length === 3 && listening() === 3, 'the killed worker listening again', 20000);
  assert(/worker 1 \(pid \d+\) exited \(signal 9\); restarting/.test(W.log), 'the death is logged');
  const p3 = pids()[2];
  assert(alive(p3) && !alive(p1), 'a new process in place of the killed one');
  // (a client made before the new worker's Redis connection is up is
  // registered a moment later: not counted)
  let nodes2 = new Set();
  for (let round = 0; round < 20 && [...nodes2].every((x) => nodes1.has(x)); round++) {
    nodes2 = new Set((await holders(W, 20)).filter((x) => x));
  }
  assert([...nodes2].some((x) => !nodes1.has(x)), 'the new worker serves');

  const exit = await H.stopServer(W.proc ? W : null, 10000);
  assertEqual(exit, { code: 0, signal: null }, 'the parent exits 0 on SIGTERM');
  await H.poll(() => !alive(p2) && !alive(p3), 'every worker stopped with the parent', 5000);
}, 60000);

// -------------------------------------------------------------------- main

H.runFile({
  tests,
  fileMs: FILE_MS,
  servers: () => servers,
  start: async () => {
    await startRedis();
    const extra = `--engine 'redis://127.0.0.1:${redis.port}/0?namespace=interop'`;
    const a = H.startServer({ mount: '/bayeux', timeout: SERVER_TIMEOUT, extra });
    servers.push(a.srv);
    const b = H.startServer({ mount: '/bayeux', timeout: SERVER_TIMEOUT, extra });
    servers.push(b.srv);
    [A, B] = await Promise.all([a, b]);
    console.log(`# second server ${B.url}; redis-server on port ${redis.port}`);
    return A;
  },
  finish: async () => {
    await Promise.all(clients.map((c) => Promise.resolve(c.disconnect()).catch(() => {})));
  },
});
