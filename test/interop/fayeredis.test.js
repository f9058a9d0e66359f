#!/usr/bin/env node
// test/interop/fayeredis.test.js - bayeux's faye-redis mode next to Node
// Faye: two `bin/bayeux serve --engine 'redis://...&mode=faye'` processes
// and one Node faye 1.4.3 + faye-redis 0.2.0 server (faye-ref-server.js)
// on a private redis-server (started here on a free loopback port, killed
// on every exit path). npm faye clients (long-polling and WebSocket) on
// each publish across all three, wildcards; raw Bayeux clients roam (a
// handshake on one server, connects on another) and disconnect on another
// server than their own; the keys both kinds of server write are read
// back and compared; clients that stop connecting expire, whoever sweeps;
// 30 back-to-back long-poll deliveries to a bayeux client lose nothing.
//
//   node test/interop/fayeredis.test.js
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
const redisLib = require(path.join(H.NODE_MODULES, 'redis'));

const SERVER_TIMEOUT = 2;        // the same on every server: liveness maths
const NS = 'frtest';
const TEST_MS = 30000;
const FILE_MS = 115000;          // tools/check.sh bounds a file to 120 s
const NODE_CMD = `node ${path.join('test', 'interop', 'faye-ref-server.js')}`;

const servers = [];
const clients = [];
const tests = [];
const test = (name, fn, ms = TEST_MS) => tests.push({ name, fn, ms });
let A = null, B = null, N = null, rc = null;

// ------------------------------------------------------------- redis-server

const redis = { proc: null, port: 0, dir: fs.mkdtempSync(path.join(os.tmpdir(), 'bx-fredis-')) };

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// One command on the test's own connection (redis@3, as faye-redis uses).
function R(name, ...args) {
  return new Promise((resolve, reject) => {
    rc.send_command(name, args, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

async function startRedis() {
  redis.port = await freePort();
  redis.proc = spawn('redis-server', ['--port', String(redis.port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--dir', redis.dir, '--loglevel', 'warning'],
  { stdio: 'ignore' });
  rc = redisLib.createClient(redis.port, '127.0.0.1', { retry_strategy: () => 50 });
  rc.on('error', () => {});
  for (let i = 0; i < 200; i++) {
    try { if (await withTimeout(R('PING'), 500, 'PING') === 'PONG') return; } catch (e) { /* not yet */ }
    await delay(25);
  }
  throw new Error('redis-server did not answer');
}

// every way out of this process takes redis-server along
process.on('exit', () => {
  if (redis.proc && redis.proc.exitCode === null) redis.proc.kill('SIGKILL');
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

// Raw Bayeux over HTTP POST: one request, its reply array.
async function post(srv, msgs) {
  const res = await fetch(srv.url, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(msgs),
  });
  assertEqual(res.status, 200, `HTTP status from ${srv.name}`);
  return res.json();
}

async function handshake(srv) {
  const [r] = await post(srv, [{ channel: '/meta/handshake', version: '1.0',
    supportedConnectionTypes: ['long-polling'] }]);
  assert(r.successful, `handshake on ${srv.name}: ${JSON.stringify(r)}`);
  return r.clientId;
}

async function meta(srv, id, channel, extra = {}) {
  const replies = await post(srv, [{ channel, clientId: id, ...extra }]);
  return {
    reply: replies.find((m) => m.channel === channel),
    messages: replies.filter((m) => !m.channel.startsWith('/meta/')),
  };
}

async function subscribe(srv, id, sub) {
  const { reply } = await meta(srv, id, '/meta/subscribe', { subscription: sub });
  assert(reply && reply.successful, `subscribe ${sub} on ${srv.name}: ${JSON.stringify(reply)}`);
}

// One long-poll connect; resolves with { reply, messages }.
function connect(srv, id) {
  return meta(srv, id, '/meta/connect', { connectionType: 'long-polling' });
}

// Connects on `srv` until `n` messages came (bounded by the test's time).
async function drain(srv, id, n) {
  const got = [];
  while (got.length < n) {
    const { reply, messages } = await connect(srv, id);
    assert(reply && reply.successful, `connect on ${srv.name}: ${JSON.stringify(reply)}`);
    got.push(...messages);
  }
  return got;
}

// What Redis holds of a client, for a failure's message.
async function redisState(id) {
  const score = await R('ZSCORE', `${NS}/clients`, id);
  return `client ${id}: score ${score === null ? 'none' : `${Date.now() - score} ms old`}, ` +
    `queue ${await R('LLEN', `${NS}/clients/${id}/messages`)}, ` +
    `channels ${JSON.stringify(await R('SMEMBERS', `${NS}/clients/${id}/channels`))}`;
}

// ------------------------------------------------------------------- tests

for (const transport of ['long-polling', 'websocket']) {
  test(`one Redis, three servers: every client hears every server, wildcards (${transport})`, async () => {
    const all = [A, B, N];
    const cs = all.map((srv) => newClient(srv, transport));
    const pubs = all.map((srv) => newClient(srv, transport));
    const mix = [], deep = [];
    for (const c of cs) {
      mix.push(await collect(c, '/mix/*'));
      deep.push(await collect(c, '/all/**'));
    }
    // every client settled on its transport first (a faye client starts on
    // long-polling and moves to its WebSocket when it is up; Node faye can
    // drop what it delivers during that move)
    for (let j = 0; j < cs.length; j++) {
      if (transport === 'websocket') {
        await H.poll(() => cs[j]._dispatcher.connectionType === 'websocket',
          `the client on ${all[j].name} on its WebSocket`, 10000);
      }
      const warm = await collect(cs[j], `/warm/${j}`);
      for (let k = 0; k < 50 && warm.length === 0; k++) {
        await pubs[j].publish(`/warm/${j}`, k);
        await warm.wait.until(() => warm.length > 0, 'warm', 200).catch(() => {});
      }
      assert(warm.length > 0, `a warm-up message reaches the client on ${all[j].name}`);
    }
    // one publish at a time, delivered everywhere before the next, each by
    // another client than the subscriber of its server: messages in quick
    // succession, or published by the long-polling subscriber itself, may
    // be dropped by Node faye + faye-redis on its own (seen: a client's
    // own publish on Node lost, its queue empty, no bayeux involved), which
    // is not what this test is about
    for (let i = 0; i < cs.length; i++) {
      await pubs[i].publish(`/mix/not/${all[i].name}`, { deeper: true });   // /mix/* does not match
      for (const [what, got, ch, data] of [['mix', mix, `/mix/${all[i].name}`, { from: all[i].name }],
        ['deep', deep, `/all/deep/${all[i].name}`, { deep: all[i].name }]]) {
        await pubs[i].publish(ch, data);
        for (let j = 0; j < cs.length; j++) {
          try {
            await got[j].wait.until(() => got[j].length >= i + 1,
              `${what} message ${i + 1} from ${all[i].name} at ${all[j].name} (have ${got[j].length})`);
          } catch (e) {
            throw new Error(`${e.message}; ${await redisState(cs[j]._dispatcher.clientId)}`);
          }
        }
      }
    }
    for (let i = 0; i < cs.length; i++) {
      for (const [what, got] of [['mix', mix[i]], ['deep', deep[i]]]) {
        const from = got.map((m) => m.from || m.deep);
        assertEqual(from, ['A', 'B', 'N'], `${what} messages at ${all[i].name}`);
      }
    }
    await delay(200);             // a duplicate or a stray /mix/not/... would have come
    for (let i = 0; i < cs.length; i++) assertEqual(mix[i].length, 3, `mix at ${all[i].name}`);
  });
}

test('a client roams: handshake on Node, connect on bayeux, and the other way', async () => {
  const pub = newClient(B, 'websocket');
  await pub.connect();
  for (const [home, away] of [[N, A], [A, N], [B, A]]) {
    const id = await handshake(home);
    await subscribe(away, id, '/roam/*');
    const first = connect(away, id);
    await delay(100);            // the connect is held, or answers at once (first connect)
    await pub.publish('/roam/x', { home: home.name, away: away.name });
    const got = [...(await first).messages];
    if (got.length === 0) got.push(...await drain(away, id, 1));
    assertEqual(got.map((m) => m.data), [{ home: home.name, away: away.name }],
      `handshake on ${home.name}, delivery on ${away.name}`);
    // and back home: the same client connects where it handshook
    await pub.publish('/roam/y', { back: home.name });
    const back = await drain(home, id, 1);
    assertEqual(back.map((m) => m.data), [{ back: home.name }], `delivery back on ${home.name}`);
  }
});

test('a disconnect on one server is seen by the others', async () => {
  for (const [home, other] of [[A, N], [N, B], [A, B]]) {
    const id = await handshake(home);
    await subscribe(home, id, '/gone/x');
    assert(await R('ZSCORE', `${NS}/clients`, id), 'the client is in the clients ZSET');
    const { reply } = await meta(other, id, '/meta/disconnect');
    assert(reply && reply.successful, `disconnect on ${other.name}: ${JSON.stringify(reply)}`);
    const after = await connect(home, id);
    assert(after.reply && after.reply.successful === false,
      `a connect on ${home.name} after a disconnect on ${other.name} fails: ${JSON.stringify(after.reply)}`);
    // Node's faye-redis answers the disconnect, sets the score to 0, and
    // removes the client in a later MULTI (a connect meanwhile already
    // fails): wait for that MULTI (bounded); bayeux's is one script
    let score = await R('ZSCORE', `${NS}/clients`, id);
    for (let i = 0; score !== null && other === N && i < 200; i++) {
      await delay(25);
      score = await R('ZSCORE', `${NS}/clients`, id);
    }
    assertEqual(score, null, 'gone from the clients ZSET');
    assertEqual(await R('SISMEMBER', `${NS}/channels/gone/x`, id), 0, 'gone from the channel set');
    assertEqual(await R('EXISTS', `${NS}/clients/${id}/channels`), 0, 'its channels set is gone');
  }
});

// The keys of a client made on bayeux (P, on A) and of one made on Node (Q,
// on N), doing the same things: the same names and types; messages queued
// by either kind of server are JSON either kind reads.
test('the key layout: bayeux writes what faye-redis writes', async () => {
  const P = await handshake(A), Q = await handshake(N);
  await subscribe(A, P, '/layout/x');
  await subscribe(A, P, '/layout/*');
  await subscribe(N, Q, '/layout/x');
  await subscribe(N, Q, '/layout/*');
  const pa = newClient(A, 'long-polling'), pn = newClient(N, 'long-polling');
  await pa.publish('/layout/x', { by: 'bayeux' });
  await pn.publish('/layout/x', { by: 'node' });
  const keys = (await R('KEYS', `${NS}/*`)).filter((k) => k.includes(P) || k.includes(Q) || k.startsWith(`${NS}/channels/layout`));
  const shape = async (id) => {
    const out = {};
    for (const k of keys.filter((x) => x.includes(id))) out[k.replace(id, '<id>')] = await R('TYPE', k);
    return out;
  };
  const want = {
    [`${NS}/clients/<id>/channels`]: 'set',
    [`${NS}/clients/<id>/messages`]: 'list',
  };
  assertEqual(await shape(P), want, 'keys of the client made on bayeux');
  assertEqual(await shape(Q), want, 'keys of the client made on Node');
  assertEqual(await R('TYPE', `${NS}/clients`), 'zset', 'the clients key');
  for (const id of [P, Q]) {
    const score = +(await R('ZSCORE', `${NS}/clients`, id));
    assert(Math.abs(score - Date.now()) < 60000, `score ${score}: milliseconds since the epoch`);
    assertEqual((await R('SMEMBERS', `${NS}/clients/${id}/channels`)).sort(), ['/layout/*', '/layout/x']);
    for (const ch of ['/layout/x', '/layout/*']) {
      assertEqual(await R('SISMEMBER', `${NS}/channels${ch}`, id), 1, `${id} in ${NS}/channels${ch}`);
    }
  }
  // one message from each kind of server, in publish order; the same fields
  for (const id of [P, Q]) {
    const q = (await R('LRANGE', `${NS}/clients/${id}/messages`, 0, -1)).map((s) => JSON.parse(s));
    assertEqual(q.map((m) => m.data), [{ by: 'bayeux' }, { by: 'node' }], 'the queued messages');
    assertEqual(Object.keys(q[0]).sort(), Object.keys(q[1]).sort(), 'fields of a message stored by each');
    assertEqual(q[0].channel, '/layout/x');
  }
  // each reads what the other wrote: P's queue on Node, Q's on bayeux
  for (const [id, srv] of [[P, N], [Q, B]]) {
    const got = await drain(srv, id, 2);
    assertEqual(got.map((m) => m.data), [{ by: 'bayeux' }, { by: 'node' }], `delivered on ${srv.name}`);
    assert(got.every((m) => m.clientId === undefined), 'no publisher clientId in a delivery');
    assertEqual(await R('EXISTS', `${NS}/clients/${id}/messages`), 0, 'the queue is taken');
  }
});

test('clients that stop connecting expire, whoever sweeps (2 x timeout, the GC lock)', async () => {
  const ids = [await handshake(A), await handshake(N)];
  for (const id of ids) await subscribe(B, id, '/expire/x');
  const deadline = Date.now() + 20000;
  let left = ids;
  while (left.length && Date.now() < deadline) {
    await delay(250);
    const still = [];
    for (const id of left) if (await R('ZSCORE', `${NS}/clients`, id) !== null) still.push(id);
    left = still;
  }
  assertEqual(left, [], 'every silent client was destroyed');
  for (const id of ids) {
    assertEqual(await R('SISMEMBER', `${NS}/channels/expire/x`, id), 0, 'its subscription is gone');
    const { reply } = await connect(A, id);
    assert(reply && reply.successful === false, 'a connect of an expired client fails');
  }
  assertEqual(await R('EXISTS', `${NS}/locks/gc`), 0, 'the GC lock is released between sweeps');
});

test('30 back-to-back long-poll deliveries to a bayeux client lose nothing', async () => {
  const sub = newClient(A, 'long-polling');
  const got = await collect(sub, '/burst');
  const pubs = [newClient(N, 'websocket'), newClient(B, 'websocket')];
  await Promise.all(pubs.map((p) => p.connect()));
  for (let i = 0; i < 30; i++) await pubs[i % 2].publish('/burst', { i });
  await got.wait.until(() => got.length >= 30, `30 messages (have ${got.length})`);
  await delay(300);
  const ns = got.map((m) => m.i);
  assertEqual([...ns].sort((x, y) => x - y), [...Array(30).keys()], 'every message, once');
  // in order per publishing server (faye-redis answers a publish before it
  // queues the message: across servers, a later publish may be queued first)
  for (const parity of [0, 1]) {
    const mine = ns.filter((i) => i % 2 === parity);
    assertEqual(mine, [...mine].sort((x, y) => x - y), `order of ${parity ? 'B' : 'N'}'s messages`);
  }
});

// faye-redis writes a message into a held long-poll whose client went away
// (reference §6.4): it is lost. bayeux keeps it in the client's Redis
// queue (or puts it back there), for its next connect on any server.
test('a long-poll aborted by its client: the next connect, here or elsewhere, gets the message', async () => {
  const pub = newClient(B, 'websocket');
  await pub.connect();
  const held = async (srv, id) => {
    const ctl = new AbortController();
    const req = fetch(srv.url, { method: 'POST', signal: ctl.signal,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify([{ channel: '/meta/connect', clientId: id, connectionType: 'long-polling' }]) })
      .catch(() => null);
    await delay(200);            // held by now (a first connect may have answered)
    ctl.abort();
    await req;
    await delay(500);            // the server has seen the socket close
  };
  for (const [home, next] of [[A, A], [A, N], [N, A]]) {
    const id = await handshake(home);
    await subscribe(home, id, '/aborted');
    await held(home, id);
    await pub.publish('/aborted', { home: home.name });
    const { reply, messages } = await connect(next, id);
    assert(reply && reply.successful, `connect on ${next.name}`);
    const got = messages.map((m) => m.data);
    if (home === N) {
      // Node's own loss, for the record: not asserted
      console.log(`# Node faye-redis: a message published into an aborted long-poll was ${got.length ? 'kept' : 'lost'}`);
      continue;
    }
    assertEqual(got, [{ home: home.name }], `aborted on ${home.name}, next connect on ${next.name}`);
  }
});

// -------------------------------------------------------------------- main

H.runFile({
  tests,
  fileMs: FILE_MS,
  servers: () => servers,
  start: async () => {
    await startRedis();
    const url = `redis://127.0.0.1:${redis.port}/0?namespace=${NS}&mode=faye`;
    const extra = `--engine '${url}'`;
    const a = H.startServer({ mount: '/bayeux', timeout: SERVER_TIMEOUT, extra });
    servers.push(a.srv);
    const b = H.startServer({ mount: '/bayeux', timeout: SERVER_TIMEOUT, extra });
    servers.push(b.srv);
    const n = H.startServer({ mount: '/faye', timeout: SERVER_TIMEOUT, extra: `${extra} --gc 1`, cmd: NODE_CMD });
    servers.push(n.srv);
    [A, B, N] = await Promise.all([a, b, n]);
    A.name = 'A';
    B.name = 'B';
    N.name = 'N';
    console.log(`# second bayeux ${B.url}; Node faye + faye-redis ${N.url}; redis-server on port ${redis.port}`);
    return A;
  },
  finish: async () => {
    await Promise.all(clients.map((c) => Promise.resolve(c.disconnect()).catch(() => {})));
    rc.quit();
  },
});
