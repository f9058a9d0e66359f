#!/usr/bin/env node
// test/interop/presence_redis.test.js - identities and presence across
// processes: two bayeux app processes (bayeux.ext.jwt, bayeux.ext.acl,
// server:track_presence) sharing a private redis-server (started here on a
// free loopback port), npm faye clients, some of them behind a round-robin
// HTTP proxy (no affinity: every request goes to the next process, so a
// client's handshake, subscribes, publishes and connects alternate and its
// session moves between the processes). The token goes in the handshake
// only:
//   - bob's subscribes and publish, made wherever, are checked and stamped
//     as bob's (a spoofed name is replaced);
//   - presence on both processes agrees (users and clients);
//   - join and leave come once per user, with alice's two clients on
//     different paths (the proxy; the second process over WebSocket).
//
//   node test/interop/presence_redis.test.js
//
// Prints "ok - name" / "not ok - name" per test and ends with "N passed, N
// failed"; exits 1 on any failure.
'use strict';
const path = require('path');
const net = require('net');
const fs = require('fs');
const os = require('os');
const http = require('http');
const { spawn } = require('child_process');

const H = require('./harness');
const { delay, assert, assertEqual, poll } = H;
const faye = require(path.join(H.NODE_MODULES, 'faye'));

const SERVER_TIMEOUT = 3;
const FILE_MS = 110000;          // tools/check.sh bounds a file to 120 s
const SECRET = '0123456789abcdef0123456789abcdef-interop-presence';

const servers = [];
const clients = [];
const tests = [];
const test = (name, fn, ms = 40000) => tests.push({ name, fn, ms });
let A = null, B = null, proxy = null;

const APP = `
local bayeux = require "bayeux"
local jwt = require "bayeux.ext.jwt"
local acl = require "bayeux.ext.acl"
local server = bayeux.server { mount = "/faye", timeout = ${SERVER_TIMEOUT}, engine = os.getenv("BX_REDIS") }
server:add_extension(acl {
  subscribe = { allow = { "/room/{rooms}", "/presence/**" } },
  publish = { allow = { "/room/{rooms}" } },
})
server:add_extension(jwt { secret = "${SECRET}" })
server:track_presence("/room/*")
local events = {}
server:client():subscribe("/presence/**", function(data) events[#events + 1] = data end)
server:route("POST", "/mint", function(req, res)
  local c = assert(req:json())
  c.exp = os.time() + 600
  res:json { token = jwt.sign(c, { secret = "${SECRET}" }) }
end)
server:route("GET", "/presence", function(req, res)
  server:presence("/room/a", function(p)
    p.clients = bayeux.object(p.clients)
    p.users = bayeux.array(p.users)
    res:json(p)
  end)
end)
server:route("GET", "/events", function(req, res) res:json(bayeux.array(events)) end)
server:listen(0, "127.0.0.1")
`;

// ------------------------------------------------------------- redis-server

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bx-presence-'));
const redis = { proc: null, port: 0 };

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function redisUp() {
  return new Promise((resolve) => {
    const sock = net.connect(redis.port, '127.0.0.1');
    sock.on('error', () => resolve(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => { sock.destroy(); resolve(String(d).startsWith('+PONG')); });
  });
}

async function startRedis() {
  redis.port = await freePort();
  redis.proc = spawn('redis-server', ['--port', String(redis.port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--dir', tmp, '--loglevel', 'warning'], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    if (await redisUp()) return;
    await delay(25);
  }
  throw new Error('redis-server did not answer');
}

process.on('exit', () => {
  if (redis.proc && redis.proc.exitCode === null) redis.proc.kill('SIGKILL');
  try { fs.rmSync(tmp, { recursive: true, force: true }); } catch (e) { /* gone */ }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(1));

// ----------------------------------------------------------------- helpers

function request(srv, method, pathname, body) {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? '' : JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port: srv.port, method, path: pathname, agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } }, (res) => {
      let out = '';
      res.on('data', (d) => { out += d; });
      res.on('end', () => { try { resolve(JSON.parse(out)); } catch (e) { reject(new Error(out)); } });
    });
    req.on('error', reject);
    req.end(text);
  });
}

// A faye client of user `sub` at `url`; its token goes in the handshake
// only. In an array: a faye client is a thenable (an async function
// returning it would wait for it).
async function userClient(url, sub, longPolling) {
  const { token } = await request(A, 'POST', '/mint', { sub, rooms: ['a'] });
  const c = new faye.Client(url, { timeout: SERVER_TIMEOUT + 5, retry: 1 });
  if (longPolling) c.disable('websocket');
  c.addExtension({ outgoing(m, cb) {
    if (m.channel === '/meta/handshake') m.ext = Object.assign(m.ext || {}, { token });
    cb(m);
  } });
  clients.push(c);
  return [c];
}

const events = (srv, event, user) => request(srv, 'GET', '/events')
  .then((list) => list.filter((e) => e.event === event && e.user === user && e.channel === '/room/a').length);

// -------------------------------------------------------------------- tests

let alice1, alice2, bob;

test('identity through a round-robin proxy: subscribes and publishes checked and stamped as the token\'s user', async () => {
  [bob] = await userClient(proxy.url, 'bob', true);
  const got = [];
  await bob.subscribe('/room/a', (m) => got.push(m));
  // not in bob's rooms: refused wherever it lands
  const refused = await bob.subscribe('/room/b', () => {}).then(() => 'subscribed', (e) => String(e.message));
  assert(/Forbidden channel/.test(refused), `bob's subscribe to /room/b refused (got ${refused})`);
  for (let i = 0; i < 4; i++) await bob.publish('/room/a', { n: i, from: 'mallory' });
  await poll(() => got.length >= 4, 'bob got his 4 messages', 20000);
  for (const m of got) assertEqual(m.from, 'bob', `the sender of ${JSON.stringify(m)}`);
  assert(proxy.counts[0] > 2 && proxy.counts[1] > 2, `both processes served bob (${proxy.counts})`);
});

test('presence agrees on both processes; join and leave once per user', async () => {
  [alice1] = await userClient(proxy.url, 'alice', true);
  [alice2] = await userClient(B.url, 'alice', false);
  await alice1.subscribe('/room/a', () => {});
  await alice2.subscribe('/room/a', () => {});
  for (const srv of [A, B]) {
    let p;
    for (let i = 0; i < 200 && !(p && p.connections === 3); i++) {
      p = await request(srv, 'GET', '/presence');
      if (p.connections !== 3) await delay(50);
    }
    assertEqual(p.users, ['alice', 'bob'], `users on ${srv.url}`);
    assertEqual([p.count, p.connections], [2, 3], `counts on ${srv.url}`);
  }
  await alice1.disconnect();
  await delay(500);
  assertEqual(await events(A, 'leave', 'alice'), 0, 'no leave while alice has a client left');
  await alice2.disconnect();
  for (let i = 0; i < 200 && (await events(A, 'leave', 'alice')) < 1; i++) await delay(50);
  await delay(500);            // a second event would be in by now
  for (const srv of [A, B]) {
    assertEqual(await events(srv, 'join', 'alice'), 1, `alice's joins seen on ${srv.url}`);
    assertEqual(await events(srv, 'join', 'bob'), 1, `bob's joins seen on ${srv.url}`);
    assertEqual(await events(srv, 'leave', 'alice'), 1, `alice's leaves seen on ${srv.url}`);
    const p = await request(srv, 'GET', '/presence');
    assertEqual(p.users, ['bob'], `users on ${srv.url} at the end`);
  }
});

// -------------------------------------------------------------------- main

H.runFile({
  tests,
  fileMs: FILE_MS,
  servers: () => servers,
  start: async () => {
    await startRedis();
    const app = path.join(tmp, 'app.lua');
    fs.writeFileSync(app, APP);
    const url = `redis://127.0.0.1:${redis.port}/0?namespace=interop`;
    const cmd = `env BX_REDIS='${url}' ${H.CMD} ${app}`;
    const a = H.startServer({ mount: '/faye', timeout: SERVER_TIMEOUT, cmd });
    servers.push(a.srv);
    const b = H.startServer({ mount: '/faye', timeout: SERVER_TIMEOUT, cmd });
    servers.push(b.srv);
    [A, B] = await Promise.all([a, b]);
    proxy = await H.roundRobin([A, B], '/faye');
    console.log(`# second server ${B.url}; proxy ${proxy.url}; redis-server on port ${redis.port}`);
    return A;
  },
  finish: async () => {
    await Promise.all(clients.map((c) => Promise.resolve(c.disconnect()).catch(() => {})));
    if (proxy) proxy.server.close();
  },
});
