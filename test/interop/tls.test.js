#!/usr/bin/env node
// test/interop/tls.test.js - `bayeux serve --tls-cert F --tls-key F` with
// real clients: npm faye's Node client over https (long-polling) and wss,
// trusting a test CA made with the openssl tool (tls_certs.js); an
// EventSource stream over TLS; curl --cacert; plain HTTP sent to the TLS
// port; and SIGHUP loading a new certificate for new connections while
// open ones go on (a broken file keeps the old one).
//
//   node test/interop/tls.test.js
//
// Prints "ok - name" / "not ok - name" per test and ends with "N passed,
// N failed"; exits 1 on any failure. The whole file is bounded to 100 s.
// Last, `--workers 2` (with a private redis-server) shows the parent
// passing SIGHUP on: both workers reload.
'use strict';
const fs = require('fs');
const http = require('http');
const https = require('https');
const tls = require('tls');
const path = require('path');
const net = require('net');
const { execFile, spawn } = require('child_process');
const H = require('./harness');
const { withTimeout, assert, assertEqual, poll } = H;
const { makeCA } = require('./tls_certs');

const faye = require(path.join(H.NODE_MODULES, 'faye'));
const TEST_MS = 15000;

const ca = makeCA();
const one = ca.issue('one');
const two = ca.issue('two');
const served = { cert: path.join(ca.dir, 'served.crt'), key: path.join(ca.dir, 'served.key') };
fs.copyFileSync(one.cert, served.cert);
fs.copyFileSync(one.key, served.key);

let server = null;
const clients = [];
const tests = [];
const others = [];               // more servers, stopped at the end if still up
const test = (name, fn, ms = TEST_MS) => tests.push({ name, fn, ms });

function newClient(which) {
  const c = new faye.Client(server.url, { timeout: 10, retry: 1, tls: { ca: ca.caPem } });
  if (which === 'long-polling') c.disable('websocket');
  c.connectionTypes = new Set();
  c.wait = H.waiter(TEST_MS - 1000);
  c.addExtension({
    incoming(m, cb) { cb(m); c.wait.notify(); },
    outgoing(m, cb) {
      if (m.channel === '/meta/connect') c.connectionTypes.add(m.connectionType);
      cb(m);
    },
  });
  clients.push(c);
  return c;
}

function socketOf(c) {
  const sockets = c._dispatcher.transports.websocket;
  if (!sockets) return null;
  for (const t of sockets.values()) if (t._socket) return t._socket;
  return null;
}

// One HTTPS request; resolves with { status, headers, body }.
function request(method, urlPath, body, opts = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port: server.port, path: urlPath, method, agent: false,
      ca: ca.caPem, headers: body ? { 'Content-Type': 'application/json' } : {}, ...opts,
    }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

// A TLS connection trusting the test CA; resolves with the socket once the
// handshake has checked the certificate.
function tlsConnect() {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: server.port, ca: ca.caPem }, () => resolve(s));
    s.on('error', reject);
  });
}

async function servedFingerprint() {
  const s = await tlsConnect();
  const fp = s.getPeerCertificate().fingerprint256;
  s.destroy();
  return fp;
}

test('faye long-polling over https, the test CA trusted', async () => {
  const a = newClient('long-polling'), b = newClient('long-polling');
  const got = [];
  await withTimeout(a.subscribe('/tls/lp', (d) => { got.push(d.n); a.wait.notify(); }), 5000, 'subscribe');
  await withTimeout(b.publish('/tls/lp', { n: 1 }), 5000, 'publish');
  await a.wait.until(() => got.includes(1), 'delivery');
  assertEqual([...a.connectionTypes], ['long-polling'], 'connection types');
});

test('faye websocket over wss', async () => {
  const a = newClient(), b = newClient('long-polling');
  const got = [];
  await withTimeout(a.subscribe('/tls/ws', (d) => { got.push(d.n); a.wait.notify(); }), 5000, 'subscribe');
  await poll(() => socketOf(a) && [...a.connectionTypes].pop() === 'websocket', 'the subscriber moves to its socket', 8000);
  await withTimeout(b.publish('/tls/ws', { n: 2 }), 5000, 'publish');
  await a.wait.until(() => got.includes(2), 'delivery over wss');
  // and a large message, over many TLS records, both ways
  const big = 'x'.repeat(300000);
  await withTimeout(a.publish('/tls/ws', { n: 3, big }), 5000, 'publish big over wss');
  await a.wait.until(() => got.includes(3), 'big delivery');
});

test('a client without the test CA refuses the certificate', async () => {
  let err = null;
  try {
    await request('GET', '/bayeux/client.js', null, { ca: undefined });
  } catch (e) { err = e; }
  assert(err && /certificate/i.test(err.code + err.message), `expected a certificate error, got ${err && err.message}`);
});

test('EventSource over TLS', async () => {
  const post = async (msgs) => JSON.parse((await request('POST', '/bayeux', JSON.stringify(msgs))).body);
  const [hs] = await post([{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['eventsource'] }]);
  assert(hs.successful, 'handshake');
  const cid = hs.clientId;
  const [sub] = await post([{ channel: '/meta/subscribe', clientId: cid, subscription: '/tls/es' }]);
  assert(sub.successful, 'subscribe');
  let text = '';
  let res = null;
  const req = https.request({
    host: '127.0.0.1', port: server.port, path: `/bayeux/${cid}`, agent: false, ca: ca.caPem,
    headers: { Accept: 'text/event-stream' },
  }, (r) => { res = r; r.setEncoding('utf8'); r.on('data', (d) => { text += d; }); });
  req.on('error', () => {});
  req.end();
  await poll(() => res && text.includes('retry:'), 'the stream opens', 5000);
  assertEqual(res.headers['content-type'], 'text/event-stream', 'content type');
  const [pub] = await post([{ channel: '/tls/es', clientId: cid, data: { n: 4 }, id: 'p4' }]);
  assert(pub.successful, 'publish');
  await poll(() => /data: .*"n":4/.test(text), 'the event', 5000);
  req.destroy();
});

test('curl --cacert fetches client.js over https', async () => {
  const out = await new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '--fail', '--cacert', ca.ca, `https://localhost:${server.port}/bayeux/client.js`],
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message} ${stderr}`)) : resolve(stdout)));
  });
  assert(out.includes('bayeux.js'), 'the client script');
});

test('plain HTTP sent to the TLS port gets a 400 and the server stays up', async () => {
  const res = await new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: server.port, path: '/bayeux/client.js', agent: false }, (r) => {
      let body = '';
      r.on('data', (d) => { body += d; });
      r.on('end', () => resolve({ status: r.statusCode, body }));
    }).on('error', reject);
  });
  assertEqual(res.status, 400, 'status');
  assert(/HTTPS/.test(res.body), 'says why');
  assertEqual((await request('GET', '/bayeux/client.js')).status, 200, 'https still served');
});

test('SIGHUP: new connections get the new certificate, open ones go on, a bad file keeps it', async () => {
  assertEqual(await servedFingerprint(), one.fingerprint, 'the first certificate');
  const open = await tlsConnect();
  fs.copyFileSync(two.cert, served.cert);
  fs.copyFileSync(two.key, served.key);
  server.proc.kill('SIGHUP');
  // the signal arrives in its own time: ask until the new one is served
  let fp = null;
  for (let i = 0; i < 100 && fp !== two.fingerprint; i++) {
    if (i) await H.delay(50);
    fp = await servedFingerprint();
  }
  assertEqual(fp, two.fingerprint, 'served after SIGHUP');
  // the connection made before still works, with its certificate
  assertEqual(open.getPeerCertificate().fingerprint256, one.fingerprint, 'the open one');
  let answer = '';
  open.on('data', (d) => { answer += d; });
  open.write('GET /bayeux/client.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  await poll(() => answer.includes('bayeux.js'), 'an answer on the open connection', 5000);
  open.destroy();
  // a broken file: logged, the certificate stays
  fs.writeFileSync(served.cert, '-----BEGIN CERTIFICATE-----\nbroken\n');
  server.proc.kill('SIGHUP');
  await poll(() => /reload failed/.test(server.log), 'the error logged', 5000);
  assertEqual(await servedFingerprint(), two.fingerprint, 'still the second certificate');
  assertEqual((await request('GET', '/bayeux/client.js')).status, 200, 'still serving');
});

// A private redis-server for --workers (which needs a shared engine).
async function startRedis(dir) {
  const port = await new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' });
  redisProcs.push(proc);
  for (let i = 0; i < 200; i++) {
    const up = await new Promise((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
      c.on('error', () => resolve(false));
    });
    if (up) return port;
    await H.delay(25);
  }
  throw new Error('redis-server did not start');
}
const redisProcs = [];
process.on('exit', () => { for (const p of redisProcs) if (p.exitCode === null) p.kill('SIGKILL'); });

test('--workers 2: SIGHUP to the parent reloads the certificate in every worker', async () => {
  const wserved = { cert: path.join(ca.dir, 'w.crt'), key: path.join(ca.dir, 'w.key') };
  fs.copyFileSync(one.cert, wserved.cert);
  fs.copyFileSync(one.key, wserved.key);
  const rport = await startRedis(ca.dir);
  const start = H.startServer({ mount: '/bayeux', timeout: 10,
    extra: `--workers 2 --engine 'redis://127.0.0.1:${rport}/0?namespace=tlsw' --tls-cert ${wserved.cert} --tls-key ${wserved.key}` });
  others.push(start.srv);
  const W = await start;
  const count = (re) => (W.log.match(re) || []).length;
  await poll(() => count(/bayeux: listening on https:/g) === 2, 'two workers listening', 20000);
  const fingerprint = () => new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: W.port, ca: ca.caPem }, () => {
      const fp = s.getPeerCertificate().fingerprint256;
      s.destroy();
      resolve(fp);
    });
    s.on('error', reject);
  });
  assertEqual(await fingerprint(), one.fingerprint, 'the first certificate');
  fs.copyFileSync(two.cert, wserved.cert);
  fs.copyFileSync(two.key, wserved.key);
  W.proc.kill('SIGHUP');
  await poll(() => count(/tls: reloaded /g) === 2, 'both workers reloaded', 10000);
  // the kernel spreads connections over both workers: every one gets it
  for (let i = 0; i < 20; i++) assertEqual(await fingerprint(), two.fingerprint, `connection ${i}`);
  const exit = await H.stopServer(W, 10000);
  assertEqual(exit, { code: 0, signal: null }, 'the parent exits 0 on SIGTERM');
}, 40000);

H.runFile({
  tests,
  fileMs: 100000,
  start: async () => {
    server = await H.startServer({ mount: '/bayeux', timeout: 10,
      extra: `--tls-cert ${served.cert} --tls-key ${served.key}` });
    assert(server.url.startsWith('https://'), `listening line says https: ${server.url}`);
    return server;
  },
  servers: () => [server, ...others.filter((o) => !o.exit)].filter(Boolean),
  finish: async () => {
    await Promise.all(clients.map((c) => withTimeout(c.disconnect(), 2000, 'disconnect').catch(() => {})));
    ca.remove();
  },
});
