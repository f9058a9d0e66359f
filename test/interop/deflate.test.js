#!/usr/bin/env node
// test/interop/deflate.test.js - permessage-deflate (RFC 7692) with real
// clients against `bin/bayeux serve`: npm `ws` with perMessageDeflate, and
// Faye's Node client with the `permessage-deflate` extension. Each checks
// that the extension was negotiated, that the server's deliveries arrived
// compressed (RSV1 on the wire) and that the client's compressed messages
// were understood. A second server started with --no-deflate answers no
// extension.
//
//   node test/interop/deflate.test.js
//
// Prints "ok - name" / "not ok - name" per test and ends with
// "N passed, N failed"; the whole file is bounded to 40 s.
'use strict';
const path = require('path');
const H = require('./harness');
const { withTimeout, assert, assertEqual } = H;

const WebSocket = require(path.join(H.NODE_MODULES, 'ws'));
const faye = require(path.join(H.NODE_MODULES, 'faye'));
const deflate = require(path.join(H.NODE_MODULES, 'permessage-deflate'));

const TEST_MS = 10000;
let server = null, plain = null;
const clients = [], sockets = [];
const tests = [];
const test = (name, fn) => { tests.push({ name, fn, ms: TEST_MS }); };

// Follows the server's (unmasked) frames in the raw bytes of `sock`:
// counts data frames with and without RSV1.
function sniff(sock) {
  const seen = { compressed: 0, plain: 0 };
  let buf = Buffer.alloc(0), skip = 0;
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (skip) {
        const k = Math.min(skip, buf.length);
        buf = buf.subarray(k);
        skip -= k;
        if (skip) return;
      }
      if (buf.length < 2) return;
      let len = buf[1] & 0x7f, hl = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); hl = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); hl = 10; }
      const op = buf[0] & 0x0f;
      if (op === 1 || op === 2) seen[(buf[0] & 0x40) ? 'compressed' : 'plain']++;
      buf = buf.subarray(hl);
      skip = len;
    }
  });
  return seen;
}

// A raw Bayeux client over an npm `ws` socket.
function wsClient(url, options) {
  const ws = new WebSocket(url.replace(/^http/, 'ws') + '/faye', options);
  sockets.push(ws);
  const c = { ws, got: [], wait: H.waiter(TEST_MS - 1000), id: null, n: 0, seen: null, answer: null };
  ws.on('upgrade', (res) => { c.answer = res.headers['sec-websocket-extensions'] || ''; });
  ws.on('message', (data) => {
    for (const m of JSON.parse(data.toString())) c.got.push(m);
    c.wait.notify();
  });
  c.open = () => withTimeout(new Promise((resolve, reject) => {
    ws.once('open', () => { c.seen = sniff(ws._socket); resolve(); });
    ws.once('error', reject);
  }), 5000, 'socket opens');
  c.send = (msgs) => { for (const m of msgs) m.id = String(++c.n); ws.send(JSON.stringify(msgs)); return msgs; };
  c.reply = (id) => c.wait.until(() => c.got.some((m) => m.id === id), `reply ${id}`);
  c.handshake = async () => {
    const [m] = c.send([{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['websocket'] }]);
    await c.reply(m.id);
    c.id = c.got.find((r) => r.id === m.id).clientId;
    assert(c.id, 'handshake gave a clientId');
  };
  c.subscribe = async (channel) => {
    const [m] = c.send([{ channel: '/meta/subscribe', clientId: c.id, subscription: channel }]);
    await c.reply(m.id);
    c.send([{ channel: '/meta/connect', clientId: c.id, connectionType: 'websocket' }]);
  };
  return c;
}

const TEXT = 'permessage-deflate makes repetitive JSON smaller. '.repeat(40);

test('npm ws with perMessageDeflate: negotiated, deliveries arrive compressed, compressed publishes understood', async () => {
  // threshold 0: the client compresses every message it sends
  const sub = wsClient(server.url, { perMessageDeflate: { threshold: 0 } });
  const pub = wsClient(server.url, { perMessageDeflate: { threshold: 0 } });
  await Promise.all([sub.open(), pub.open()]);
  assertEqual(sub.ws.extensions, 'permessage-deflate', 'extensions in use');
  assert(/server_no_context_takeover/.test(sub.answer), `answer: ${sub.answer}`);
  await sub.handshake();
  await sub.subscribe('/z/ws');
  await pub.handshake();
  for (let i = 1; i <= 3; i++) {
    const [m] = pub.send([{ channel: '/z/ws', clientId: pub.id, data: { i, text: TEXT } }]);
    await pub.reply(m.id);
  }
  await sub.wait.until(() => sub.got.filter((m) => m.channel === '/z/ws' && m.data).length === 3,
    'three deliveries');
  const data = sub.got.filter((m) => m.channel === '/z/ws' && m.data).map((m) => m.data);
  assertEqual(data.map((d) => d.i), [1, 2, 3], 'delivered in order');
  assert(data.every((d) => d.text === TEXT), 'delivered intact');
  assert(sub.seen.compressed >= 3, `compressed frames from the server: ${JSON.stringify(sub.seen)}`);
});

test("Faye's Node client with permessage-deflate: negotiated, deliveries compressed and intact", async () => {
  const mk = () => {
    const c = new faye.Client(server.url + '/faye', { timeout: 7, retry: 1 });
    c.addWebsocketExtension(deflate);
    clients.push(c);
    return c;
  };
  const sub = mk(), pub = mk();
  const got = [];
  const wait = H.waiter(TEST_MS - 1000);
  await withTimeout(sub.subscribe('/z/faye', (d) => { got.push(d); wait.notify(); }), 5000, 'subscribe');
  // the subscriber moves to its socket: wait for it, then watch its frames
  const socketOf = (c) => {
    const s = c._dispatcher.transports.websocket;
    if (s) for (const t of s.values()) if (t._socket) return t._socket;
    return null;
  };
  await H.poll(() => socketOf(sub), 'subscriber socket', 5000);
  const sock = socketOf(sub);
  assert(/permessage-deflate/.test(sock.headers['sec-websocket-extensions'] || ''),
    `response extensions: ${sock.headers['sec-websocket-extensions']}`);
  const rsv1 = [];
  const exts = sock._driver._extensions;
  const incoming = exts.processIncomingMessage.bind(exts);
  exts.processIncomingMessage = (message, cb, ctx) => { rsv1.push(message.rsv1); return incoming(message, cb, ctx); };
  for (let i = 1; i <= 3; i++)
    await withTimeout(pub.publish('/z/faye', { i, text: TEXT }), 5000, `publish ${i}`);
  await wait.until(() => got.length === 3, 'three deliveries');
  assertEqual(got.map((d) => d.i), [1, 2, 3], 'delivered in order');
  assert(got.every((d) => d.text === TEXT), 'delivered intact');
  assert(rsv1.filter(Boolean).length >= 3, `compressed messages received: ${JSON.stringify(rsv1)}`);
});

test('a server started with --no-deflate answers no extension', async () => {
  const c = wsClient(plain.url, { perMessageDeflate: { threshold: 0 } });
  await c.open();
  assertEqual(c.ws.extensions, '', 'extensions');
  assertEqual(c.answer, '', 'answer');
  await c.handshake();
});

H.runFile({
  tests,
  fileMs: 40000,
  servers: () => [server, plain].filter(Boolean),
  async start() {
    const p = H.startServer({ mount: '/faye', timeout: 2 });
    server = p.srv;
    const q = H.startServer({ mount: '/faye', timeout: 2, extra: '--no-deflate' });
    plain = q.srv;
    await q;
    return p;
  },
  finish: () => {
    for (const ws of sockets) ws.terminate();
    return Promise.allSettled(clients.map((c) => c.disconnect()));
  },
});
