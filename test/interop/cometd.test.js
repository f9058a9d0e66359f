#!/usr/bin/env node
// test/interop/cometd.test.js - the real CometD JavaScript client (npm
// `cometd`, run in Node through its official adapter `cometd-nodejs-client`,
// which supplies XMLHttpRequest and a `ws`-based WebSocket) against
// `bin/bayeux serve` started as a child process. Every test runs over
// long-polling, over websocket (where CometD handshakes over the socket
// itself, not over HTTP as Faye's client does) and over callback-polling
// (CometD's JSONP transport; a small stand-in for the browser's <script>
// loading lets it run in Node): handshake and the first /meta/connect with
// advice.timeout 0, subscribe/publish/receive, wildcards, unsubscribe, a
// failing publish, cometd.batch, disconnect, CometD's ack/timesync/timestamp
// extensions, the connection dropping for a while, and a server restart.
//
//   node test/interop/cometd.test.js
//   BAYEUX_CMD="node test/interop/faye-ref-server.js" node test/interop/cometd.test.js
//   BX_ONLY=websocket node test/interop/cometd.test.js     (tests whose name matches)
//
// BAYEUX_CMD is the launcher prefix (default "lua5.4 bin/bayeux"), run from the
// repository root through `sh -c "exec $BAYEUX_CMD serve ..."`. Prints
// "ok - name" / "not ok - name" per test and ends with "N passed, N failed";
// exits 1 on any failure. The whole file is bounded to 90 s. Every test
// passes against Faye's own Node server too (the second command above).
'use strict';
const path = require('path');
const net = require('net');
const http = require('http');
const { pathToFileURL } = require('url');

const H = require('./harness');

const { NODE_MODULES } = H;
const MOUNT = '/cometd';
const SERVER_TIMEOUT = 2;        // seconds a /meta/connect is held
const TEST_MS = 8000;            // per test
const FILE_MS = 90000;           // whole file
const TRANSPORTS = ['long-polling', 'websocket', 'callback-polling'];
const VIA = { 'long-polling': 'http', websocket: 'ws', 'callback-polling': 'jsonp' };

// loaded in main() (ES modules)
let CometD = null, AckExtension = null, TimeSyncExtension = null, TimeStampExtension = null;

const servers = [];              // every server this file started
let main_ = null;                // the server most tests use
const clients = [];
const proxies = [];

// ---------------------------------------------------------------- helpers

// Running against Faye's Node server: where bayeux goes further (CometD's
// ack extension), the tests check Faye's own behaviour instead.
const FAYE = /faye-ref-server/.test(H.CMD);

const { delay, withTimeout, assert, assertEqual } = H;
const poll = (pred, what, ms = TEST_MS - 1000) => H.poll(pred, what, ms);
const waiter = () => H.waiter(TEST_MS - 1000);

// ------------------------------------------------------------ wire capture
// Every HTTP request body / response body, JSONP request / script and
// WebSocket frame the CometD clients exchange, decoded:
// { via: 'http'|'ws'|'jsonp', dir: 'out'|'in',
// messages: [...], socket } in order. Attributed to a client through the
// clientId the messages carry (a handshake request carries none).

const wire = [];
const sockets = [];              // every WebSocket the adapter opened

function record(via, dir, text, socket) {
  let messages;
  try { messages = JSON.parse(text); } catch (e) { messages = [{ unparsable: String(text) }]; }
  if (!Array.isArray(messages)) messages = [messages];
  wire.push({ via, dir, messages, socket });
}

function installWireCapture(window) {
  const BaseXHR = window.XMLHttpRequest;
  window.XMLHttpRequest = class extends BaseXHR {
    send(body) {
      record('http', 'out', body);
      const onload = this.onload;
      this.onload = () => {
        record('http', 'in', this.responseText);
        if (onload) onload.call(this);
      };
      return super.send(body);
    }
  };
  const BaseWS = window.WebSocket;
  window.WebSocket = class extends BaseWS {
    constructor(...args) {
      super(...args);
      sockets.push(this);
      this.closeCode = null;
      this.addEventListener('message', (ev) => record('ws', 'in', String(ev.data), this));
      this.addEventListener('close', (ev) => { this.closeCode = ev.code; });
    }
    send(data) {
      record('ws', 'out', String(data), this);
      return super.send(data);
    }
  };
}

// CometD's callback-polling transport loads <script src="URL?jsonp=NAME&
// message=..."> elements. Node has no DOM, so this stands in for the
// browser's part: GET the URL, then run the returned script with NAME
// bound to the callback CometD registered on window, or report an error
// like a failed script load. The callback is taken when the script is
// added: every CometD instance numbers its callbacks from 0 on the one
// window, so the clients of this file would overwrite each other's.
function installScriptLoader(window) {
  const vm = require('vm');
  const head = {
    appendChild(script) {
      const url = new URL(script.src);
      const name = url.searchParams.get('jsonp');
      const callback = window[name];
      record('jsonp', 'out', url.searchParams.get('message'));
      const fail = () => { if (script.onerror) script.onerror({ type: 'error' }); };
      http.get(url, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { text += d; });
        res.on('error', fail);
        res.on('end', () => {
          const m = /^\/\*\*\/([\w$.]+)\(([\s\S]*)\);$/.exec(text);
          if (res.statusCode !== 200 || !m || m[1] !== name) { fail(); return; }
          record('jsonp', 'in', m[2]);
          try {
            vm.runInNewContext(text, { [name]: callback });
          } catch (e) {
            console.log(`# script error: ${e && e.stack || e}`);
          }
        });
      }).on('error', fail);
    },
    removeChild() {},
  };
  window.document = {
    getElementsByTagName: (tag) => (tag === 'head' ? [head] : []),
    createElement: () => ({}),
  };
}

// Wire entries whose messages mention clientId (or that pred picks).
function wireOf(clientId) {
  return wire.filter((w) => w.messages.some((m) => m && m.clientId === clientId));
}

// --------------------------------------------------------------- the proxy
// A TCP relay the test can cut: every connection through it is destroyed on
// both sides, as when a network path or a server drops it; while `refuse`
// is set, new connections are dropped at once (the server is unreachable).
// Its target can change (a restarted server listens on another port).

function startProxy(targetPort) {
  const pairs = new Set();
  const proxy = { target: targetPort, refuse: false, cut: null, url: null, server: null, accepted: 0 };
  proxy.server = net.createServer((down) => {
    if (proxy.refuse) { down.destroy(); return; }
    proxy.accepted++;
    const up = net.connect(proxy.target, '127.0.0.1');
    const pair = { down, up };
    pairs.add(pair);
    const drop = () => { down.destroy(); up.destroy(); pairs.delete(pair); };
    down.on('error', drop); up.on('error', drop);
    down.on('close', drop); up.on('close', drop);
    down.pipe(up); up.pipe(down);
  });
  proxy.cut = () => {
    const n = pairs.size;
    for (const p of [...pairs]) { p.down.destroy(); p.up.destroy(); pairs.delete(p); }
    return n;
  };
  proxy.close = () => { proxy.cut(); proxy.server.close(); };
  proxies.push(proxy);
  return new Promise((resolve, reject) => {
    proxy.server.on('error', reject);
    proxy.server.listen(0, '127.0.0.1', () => {
      proxy.url = `http://127.0.0.1:${proxy.server.address().port}${MOUNT}`;
      resolve(proxy);
    });
  });
}

// ------------------------------------------------------------------ server

function startServer() {
  const p = H.startServer({ mount: MOUNT, timeout: SERVER_TIMEOUT });
  servers.push(p.srv);
  return p;
}

const stopServer = H.stopServer;

// One raw Bayeux POST (no client library), for checks on server state.
function postBayeux(url, messages) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(messages);
    const req = http.request(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        try { resolve(JSON.parse(text)); } catch (e) { reject(new Error(`bad JSON reply ${text}`)); }
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

// ------------------------------------------------------------------ client

// A CometD client on one transport. Websocket clients keep CometD's default
// registry (websocket, long-polling, callback-polling), so a websocket that
// does not work would silently fall back - the tests check the transport in
// use; long-polling clients lose the websocket transport, callback-polling
// clients long-polling as well.
// Incoming messages (as the server sent them, before CometD routes them to
// listeners) are recorded in c.seen, outgoing ones in c.sent.
let clientSeq = 0;
function newClient(transport, { url = main_.url, extensions = false } = {}) {
  const c = new CometD(`c${++clientSeq}`);
  c.configure({
    url,
    logLevel: 'warn',
    backoffIncrement: 200,
    maxBackoff: 1000,
    maxNetworkDelay: 4000,
  });
  if (transport !== 'websocket') c.unregisterTransport('websocket');
  if (transport === 'callback-polling') c.unregisterTransport('long-polling');
  c.seen = [];
  c.seenAt = [];                 // when each of c.seen arrived
  c.sent = [];
  c.wait = waiter();
  c.registerExtension('spy', {
    incoming(message) {
      c.seen.push(JSON.parse(JSON.stringify(message)));
      c.seenAt.push(Date.now());
      // Let CometD process the message before waiters look at the state.
      setImmediate(() => c.wait.notify());
      return message;
    },
    outgoing(message) {
      c.sent.push({ message: JSON.parse(JSON.stringify(message)), transport: c.getTransport() && c.getTransport().type, at: Date.now() });
      return message;
    },
  });
  // Registered after the spy: CometD runs outgoing extensions in reverse
  // order, so the spy sees what these add.
  if (extensions) {
    c.registerExtension('ack', new AckExtension());
    c.registerExtension('timesync', new TimeSyncExtension());
    c.registerExtension('timestamp', new TimeStampExtension());
  }
  clients.push(c);
  return c;
}

function handshake(c, props) {
  return withTimeout(new Promise((resolve) => {
    if (props) c.handshake(props, resolve); else c.handshake(resolve);
  }), 5000, 'handshake reply');
}

// Handshakes and waits for the first successful /meta/connect reply.
async function connected(c, transport) {
  const reply = await handshake(c);
  assert(reply.successful, `handshake failed: ${JSON.stringify(reply)}`);
  await c.wait.until(() => c.seen.some((m) => m.channel === '/meta/connect' && m.successful === true),
    'first /meta/connect reply');
  if (transport) assertEqual(c.getTransport().type, transport, 'transport in use');
  return reply;
}

function subscribe(c, channel, onMessage, props) {
  let handle;
  const acked = new Promise((resolve) => {
    const cb = (message) => { onMessage(message); c.wait.notify(); };
    handle = props ? c.subscribe(channel, cb, props, resolve) : c.subscribe(channel, cb, resolve);
  });
  return { handle, acked: withTimeout(acked, 5000, `subscribe ${channel} reply`) };
}

async function subscribed(c, channel, onMessage) {
  const s = subscribe(c, channel, onMessage);
  const reply = await s.acked;
  assert(reply.successful, `subscribe ${channel} failed: ${JSON.stringify(reply)}`);
  return s.handle;
}

function publish(c, channel, data) {
  return withTimeout(new Promise((resolve) => c.publish(channel, data, resolve)), 5000, `publish ${channel} reply`);
}

async function published(c, channel, data) {
  const reply = await publish(c, channel, data);
  assert(reply.successful, `publish ${channel} failed: ${JSON.stringify(reply)}`);
  return reply;
}

// Resolves once c's current /meta/connect has been on its way for 300 ms
// without a reply, and for less than 1400 ms, so the server holds it (it
// holds for 2 s). A disconnect sent then cannot overtake it: over HTTP the
// two travel on different connections, and a connect that reaches the
// server after the disconnect is refused (unknown client), upon which
// CometD aborts its own pending requests, the disconnect included.
function connectHeld(c) {
  return poll(() => {
    const last = c.sent.filter((s) => s.message.channel === '/meta/connect').pop();
    if (!last) return false;
    const age = Date.now() - last.at;
    return age >= 300 && age < 1400 && !c.seen.some((m) => m.channel === '/meta/connect' && m.id === last.message.id);
  }, 'a held /meta/connect', 5000);
}

function disconnect(c) {
  return withTimeout(new Promise((resolve) => c.disconnect(resolve)), 5000, 'disconnect reply');
}

// Deliveries (not replies) the server sent c on a channel.
function delivered(c, channel) {
  return c.seen.filter((m) => m.channel === channel && 'data' in m && m.successful === undefined);
}

// The open WebSocket that carries c's messages.
function socketOf(c) {
  const id = c.getClientId();
  for (let i = wire.length - 1; i >= 0; i--) {
    const w = wire[i];
    if (w.via === 'ws' && w.messages.some((m) => m && m.clientId === id)) {
      return w.socket.readyState === 1 ? w.socket : null;
    }
  }
  return null;
}

// ------------------------------------------------------------------- tests

const tests = [];
function test(name, fn, ms = TEST_MS) { tests.push({ name, fn, ms }); }

for (const T of TRANSPORTS) {
  test(`handshake, then a first /meta/connect with advice.timeout 0 [${T}]`, async () => {
    const c = newClient(T);
    const reply = await connected(c, T);
    const first = c.sent.find((s) => s.message.channel === '/meta/connect');
    const firstReply = c.seen.findIndex((m) => m.channel === '/meta/connect' && m.id === first.message.id);
    const held = c.seenAt[firstReply] - first.at;
    assert(held < 1000, `first connect answered after ${held} ms; it asked for timeout 0 (server holds ${SERVER_TIMEOUT} s)`);
    const id = c.getClientId();
    assert(typeof id === 'string' && /^[0-9a-z]+$/.test(id), `clientId ${id}`);
    assertEqual(reply.version, '1.0', 'handshake version');
    assert(reply.supportedConnectionTypes.includes(T), `server types ${reply.supportedConnectionTypes}`);
    await poll(() => c.getStatus() === 'connected', 'status connected');

    // What CometD sent: a handshake with its own supportedConnectionTypes,
    // minimumVersion and advice, then a connect asking not to be held.
    const hs = c.sent.find((s) => s.message.channel === '/meta/handshake');
    assertEqual(hs.message.supportedConnectionTypes[0], T, 'first type offered');
    assert(hs.message.minimumVersion === '1.0' && hs.message.advice, 'CometD handshake fields');
    const connects = c.sent.filter((s) => s.message.channel === '/meta/connect').map((s) => s.message);
    assertEqual(connects[0].connectionType, T, 'connectionType');
    assertEqual(connects[0].advice, { timeout: 0 }, 'first connect advice');
    assert(c.seen.find((m) => m.channel === '/meta/connect').advice.timeout === SERVER_TIMEOUT * 1000,
      'connect reply advises the server timeout');

    // Where it travelled: CometD's websocket transport handshakes over the
    // socket (Faye's client never does); long-polling uses HTTP POSTs,
    // callback-polling JSONP GETs.
    const hsIn = wire.find((w) => w.dir === 'in' && w.messages.some((m) => m.channel === '/meta/handshake' && m.clientId === id));
    assert(hsIn, 'handshake reply captured');
    assertEqual(hsIn.via, VIA[T], 'handshake reply came over');
    assertEqual([...new Set(wireOf(id).map((w) => w.via))], [VIA[T]], 'all traffic over');
  });

  test(`subscribe + publish + receive [${T}]`, async () => {
    const a = newClient(T), b = newClient(T);
    await Promise.all([connected(a, T), connected(b, T)]);
    const got = [];
    const s = subscribe(a, `/basic/${T}`, (m) => got.push(m));
    const sub = await s.acked;
    assert(sub.successful, `subscribe: ${JSON.stringify(sub)}`);
    assertEqual(sub.subscription, `/basic/${T}`, 'subscription echoed');
    const ack = await published(b, `/basic/${T}`, { text: 'hello', n: 1 });
    assertEqual(ack.channel, `/basic/${T}`, 'ack channel');
    await a.wait.until(() => got.length >= 1, 'delivery');
    assertEqual(got.map((m) => [m.channel, m.data]), [[`/basic/${T}`, { text: 'hello', n: 1 }]], 'received');
    assertEqual([a.getTransport().type, b.getTransport().type], [T, T], 'transports');
  });

  test(`wildcard subscriptions /w/* and /w/** [${T}]`, async () => {
    const one = newClient(T), many = newClient(T), pub = newClient(T);
    await Promise.all([connected(one, T), connected(many, T), connected(pub, T)]);
    const gotOne = [], gotMany = [];
    await Promise.all([
      subscribed(one, '/w/*', (m) => gotOne.push(m.data.n)),
      subscribed(many, '/w/**', (m) => gotMany.push(m.data.n)),
    ]);
    await published(pub, '/w/a', { n: 1 });
    await published(pub, '/w/a/b', { n: 2 });
    await published(pub, '/x/a', { n: 3 });
    await published(pub, '/w/c', { n: 4 });
    await one.wait.until(() => gotOne.includes(4), '/w/* receives /w/c');
    await many.wait.until(() => gotMany.includes(4), '/w/** receives /w/c');
    assertEqual(gotOne, [1, 4], '/w/* got');
    assertEqual(gotMany, [1, 2, 4], '/w/** got');
    assertEqual(delivered(one, '/w/a/b'), [], 'server delivered /w/a/b to /w/*');
    assertEqual(delivered(many, '/x/a').concat(delivered(one, '/x/a')), [], 'server delivered /x/a');
  });

  test(`unsubscribe stops delivery [${T}]`, async () => {
    const a = newClient(T), pub = newClient(T);
    await Promise.all([connected(a, T), connected(pub, T)]);
    const got = [];
    const h = await subscribed(a, '/unsub/x', (m) => got.push(m.data.n));
    await subscribed(a, '/unsub/sentinel', () => {});
    await published(pub, '/unsub/x', { n: 1 });
    await a.wait.until(() => got.includes(1), 'first delivery');

    const reply = await withTimeout(new Promise((resolve) => a.unsubscribe(h, resolve)), 5000, 'unsubscribe reply');
    assert(reply.successful, `unsubscribe: ${JSON.stringify(reply)}`);
    assertEqual(reply.subscription, '/unsub/x', 'unsubscribe echoes the channel');
    await published(pub, '/unsub/x', { n: 2 });
    await published(pub, '/unsub/sentinel', { n: 3 });
    await a.wait.until(() => delivered(a, '/unsub/sentinel').length >= 1, 'sentinel delivery');
    assertEqual(delivered(a, '/unsub/x').map((m) => m.data.n), [1], 'server delivered on /unsub/x');
    assertEqual(got, [1], 'listener got');
  });

  test(`publishing to an invalid channel fails with 405 [${T}]`, async () => {
    const c = newClient(T);
    await connected(c, T);
    const unsuccessful = [];
    c.addListener('/meta/unsuccessful', (m) => unsuccessful.push(m));
    const reply = await publish(c, '/bad/*', { n: 1 });
    assertEqual(reply.successful, false, 'successful');
    assertEqual(reply.error, '405:/bad/*:Invalid channel', 'error');
    const reply2 = await publish(c, '/bad/*/x', { n: 2 });
    assertEqual(reply2.error, '405:/bad/*/x:Invalid channel', 'error for garbage');
    assertEqual(unsuccessful.length, 2, '/meta/unsuccessful notifications');
    // A bad subscription fails the same way and the session lives on.
    const sub = await subscribe(c, '/bad/*/x', () => {}).acked;
    assertEqual([sub.successful, sub.error], [false, '405:/bad/*/x:Invalid channel'], 'subscribe reply');
    await published(c, '/bad/ok', { n: 3 });
    assert(!c.isDisconnected(), 'still connected');
  });

  test(`a batch travels in one request and is processed in order [${T}]`, async () => {
    const s = newClient(T), p = newClient(T);
    await Promise.all([connected(s, T), connected(p, T)]);
    const got = [];
    await subscribed(s, '/batch/*', (m) => got.push(m.data.n));
    const self = [];
    const replies = [];
    const done = new Promise((resolve) => {
      const add = (r) => { replies.push(r); if (replies.length === 4) resolve(); };
      p.batch(() => {
        // The subscribe must be in force when the publishes after it in the
        // same batch are processed, so p gets its own messages.
        p.subscribe('/batch/b', (m) => { self.push(m.data.n); p.wait.notify(); }, add);
        p.publish('/batch/a', { n: 1 }, add);
        p.publish('/batch/b', { n: 2 }, add);
        p.publish('/batch/c', { n: 3 }, add);
      });
    });
    await withTimeout(done, 5000, 'batch replies');
    assert(replies.every((r) => r.successful), `replies ${JSON.stringify(replies)}`);
    await s.wait.until(() => got.length >= 3, 'deliveries');
    assertEqual(got, [1, 2, 3], 'subscriber got, in order');
    await p.wait.until(() => self.length >= 1, 'own publish after in-batch subscribe');
    assertEqual(self, [2], 'publisher got');

    const id = p.getClientId();
    const target = (m) => (m.channel === '/meta/subscribe' ? m.subscription : m.channel);
    const out = wire.filter((w) => w.dir === 'out' && w.messages.some((m) => m.clientId === id && /^\/batch\//.test(target(m))));
    assertEqual(out.length, 1, 'requests/frames carrying the batch');
    assertEqual(out[0].messages.map((m) => m.channel), ['/meta/subscribe', '/batch/a', '/batch/b', '/batch/c'], 'batch content');
    assertEqual(out[0].via, VIA[T], 'batch went over');
  });

  test(`disconnect ends the session [${T}]`, async () => {
    const c = newClient(T);
    await connected(c, T);
    await subscribed(c, '/bye/x', () => {});
    const id = c.getClientId();
    const sock = T === 'websocket' ? socketOf(c) : null;
    if (T === 'websocket') assert(sock, 'open socket');
    await connectHeld(c);
    const reply = await disconnect(c);
    assert(reply.successful, `disconnect: ${JSON.stringify(reply)}`);
    assertEqual(c.getStatus(), 'disconnected', 'status');
    if (sock) {
      await withTimeout(new Promise((resolve) => {
        if (sock.readyState === 3) resolve(); else sock.addEventListener('close', resolve);
      }), 3000, 'socket closed');
      assertEqual(sock.closeCode, 1000, 'close code');
    }
    // The server forgot the client: a connect with its id is refused and
    // told to handshake again.
    const [r] = await postBayeux(main_.url, [{ channel: '/meta/connect', clientId: id, connectionType: 'long-polling', id: 'x' }]);
    assertEqual([r.successful, r.advice && r.advice.reconnect], [false, 'handshake'], `connect after disconnect ${JSON.stringify(r)}`);
    assert(/^40[12]:/.test(r.error), `error ${r.error}`);
  });

  test(`CometD's ack, timesync and timestamp extensions: acknowledged batches, the client works [${T}]`, async () => {
    // AckExtension asks with ext.ack=true on the handshake and acknowledges
    // batches only if the server says ext.ack=true back: bayeux does
    // (docs/delivery.md), Faye does not answer ext at all. With it on, every
    // delivery rides a /meta/connect answer whose ext.ack is the batch id,
    // and the next /meta/connect sends that id back. TimeSyncExtension sends
    // ext.timesync on meta messages and syncs only on a server answer, which
    // neither server gives. TimeStampExtension adds a timestamp field to
    // every message: deliveries keep it, like any field of the published
    // message.
    const a = newClient(T, { extensions: true }), pub = newClient(T, { extensions: true });
    await Promise.all([connected(a, T), connected(pub, T)]);
    const hs = a.sent.find((s) => s.message.channel === '/meta/handshake').message;
    assertEqual(Object.keys(hs.ext).sort(), ['ack', 'timesync'], 'handshake ext');
    assertEqual(hs.ext.ack, true, 'ext.ack');
    assert(typeof hs.timestamp === 'string', 'handshake timestamp');
    const hsReply = a.seen.find((m) => m.channel === '/meta/handshake');
    const id = a.getClientId();
    if (FAYE) assertEqual(hsReply.ext, undefined, 'handshake reply ext');
    else assertEqual(hsReply.ext, { ack: true }, 'handshake reply ext');
    const got = [];
    await subscribed(a, `/acked/${T}`, (m) => got.push(m));
    await published(pub, `/acked/${T}`, { n: 1 });
    await published(pub, `/acked/${T}`, { n: 2 });
    await a.wait.until(() => got.length >= 2, 'deliveries');
    assertEqual(got.map((m) => m.data.n), [1, 2], 'received');
    const sentPub = pub.sent.filter((s) => s.message.channel === `/acked/${T}`).map((s) => s.message.timestamp);
    assertEqual(got.map((m) => m.timestamp), sentPub, 'delivered timestamps');
    assertEqual(a.getExtension('timesync').getTimeOffset(), 0, 'time offset');
    const connects = () => a.sent.filter((s) => s.message.channel === '/meta/connect').map((s) => s.message.ext.ack);
    if (FAYE) {
      assert(connects().every((ack) => ack === undefined), 'no ack batch numbers sent');
      return;
    }
    // every response carrying a delivery carries the connect answer and
    // its batch id, over every transport (a socket included)
    const carrying = wire.filter((w) => w.dir === 'in' && w.messages.some((m) => m && m.channel === `/acked/${T}` && m.data));
    assert(carrying.length >= 1, 'responses with deliveries');
    const batches = [];
    for (const w of carrying) {
      const cr = w.messages.find((m) => m && m.channel === '/meta/connect');
      assert(cr && cr.successful && Number.isInteger(cr.ext && cr.ext.ack), `delivery outside a connect answer: ${JSON.stringify(w.messages)}`);
      batches.push(cr.ext.ack);
    }
    assert(batches.every((b, i) => b >= 1 && (i === 0 || b > batches[i - 1])), `batch ids ${batches}`);
    // the next connect acknowledges the last batch
    const last = batches[batches.length - 1];
    await a.wait.until(() => connects().includes(last), `a connect acknowledging batch ${last}`);
    assert(connects().every((ack) => Number.isInteger(ack)), `connects carry batch ids: ${connects()}`);
    assertEqual(a.getClientId(), id, 'same client');
  });

  test(`the connection drops for a while: the client comes back to the same session, nothing lost [${T}]`, async () => {
    const proxy = await startProxy(main_.port);
    const a = newClient(T, { url: proxy.url }), pub = newClient(T);
    await Promise.all([connected(a, T), connected(pub, T)]);
    const id = a.getClientId();
    const got = [];
    await subscribed(a, `/away/${T}`, (m) => got.push(m.data.n));
    await published(pub, `/away/${T}`, { n: 1 });
    await a.wait.until(() => got.includes(1), 'first delivery');

    // Every connection of the client is dropped, the held /meta/connect
    // (or the socket) included, and for 800 ms it cannot reach the server:
    // what is published meanwhile waits in its session.
    const connectsBefore = a.sent.filter((s) => s.message.channel === '/meta/connect').length;
    proxy.refuse = true;
    assert(proxy.cut() >= 1, 'connections cut');
    await published(pub, `/away/${T}`, { n: 2 });
    await published(pub, `/away/${T}`, { n: 3 });
    await delay(800);
    assertEqual(got, [1], 'received while away');
    proxy.refuse = false;
    await a.wait.until(() => got.includes(3), 'deliveries after reconnecting', 5000);
    assertEqual(got, [1, 2, 3], 'received');
    assertEqual(a.getClientId(), id, 'same clientId (no new handshake)');
    const connects = a.sent.filter((s) => s.message.channel === '/meta/connect');
    assert(connects.length > connectsBefore + 1, 'the client retried /meta/connect');
    assertEqual(a.getTransport().type, T, 'transport');
    assertEqual(delivered(a, `/away/${T}`).map((m) => m.data.n), [1, 2, 3], 'server delivered');
    proxy.close();
    a.disconnect();
  });

  if (T === 'websocket') {
    test('the server closes the socket: the client opens a new one and gets what was published meanwhile [websocket]', async () => {
      const a = newClient(T), pub = newClient(T);
      await Promise.all([connected(a, T), connected(pub, T)]);
      const id = a.getClientId();
      const got = [];
      await subscribed(a, '/closed/x', (m) => got.push(m.data.n));
      await published(pub, '/closed/x', { n: 1 });
      await a.wait.until(() => got.includes(1), 'first delivery');

      // An unmasked client frame is a protocol error: the server answers
      // with a close frame and drops the socket; the session stays.
      const sock = socketOf(a);
      assert(sock, 'open socket');
      const closed = new Promise((resolve) => sock.addEventListener('close', resolve));
      sock._socket.write(Buffer.from([0x81, 0x01, 0x41]));
      await withTimeout(closed, 3000, 'server closes the socket');
      // RFC 6455 protocol error; Faye's websocket-driver says 1003 instead
      assert(sock.closeCode === 1002 || sock.closeCode === 1003, `close code ${sock.closeCode}`);

      await published(pub, '/closed/x', { n: 2 });
      await published(pub, '/closed/x', { n: 3 });
      await a.wait.until(() => got.includes(3), 'deliveries after reconnecting', 6000);
      assertEqual(got, [1, 2, 3], 'received');
      assertEqual(a.getClientId(), id, 'same clientId');
      assert(socketOf(a) && socketOf(a) !== sock, 'a new socket');
      assertEqual(a.getTransport().type, T, 'transport');
    });
  }

  test(`the server restarts: the client handshakes again and resubscribes [${T}]`, async () => {
    const first = await startServer();
    const proxy = await startProxy(first.port);
    const c = newClient(T, { url: proxy.url });
    const got = [];
    const handshakes = [];
    // The CometD way to keep subscriptions across re-handshakes: subscribe
    // from the /meta/handshake listener (CometD clears them on handshake).
    c.addListener('/meta/handshake', (m) => {
      handshakes.push(m);
      if (m.successful) c.subscribe('/restart/x', (d) => { got.push(d.data.n); c.wait.notify(); });
    });
    await connected(c, T);
    const oldId = c.getClientId();
    await c.wait.until(() => c.seen.some((m) => m.channel === '/meta/subscribe' && m.successful), 'subscribed');
    await published(c, '/restart/x', { n: 1 });
    await c.wait.until(() => got.includes(1), 'first delivery');

    const exit = await stopServer(first);
    assertEqual(exit, { code: 0, signal: null }, 'first server exit');
    const second = await startServer();
    proxy.target = second.port;
    proxy.cut();
    await poll(() => handshakes.filter((m) => m.successful).length >= 2 &&
      c.seen.filter((m) => m.channel === '/meta/subscribe' && m.successful).length >= 2 &&
      c.getStatus() === 'connected', 'new handshake and subscription', 10000);
    const newId = c.getClientId();
    assert(newId && newId !== oldId, 'a new clientId');
    const refused = c.seen.find((m) => m.channel === '/meta/connect' && m.successful === false);
    assert(refused && refused.advice && refused.advice.reconnect === 'handshake', `the old session was refused: ${JSON.stringify(refused)}`);
    await published(c, '/restart/x', { n: 2 });
    await c.wait.until(() => got.includes(2), 'delivery after the restart');
    assertEqual(got, [1, 2], 'received');
    assertEqual(c.getTransport().type, T, 'transport');
    await disconnect(c);
    proxy.close();
    const exit2 = await stopServer(second);
    assertEqual(exit2, { code: 0, signal: null }, 'second server exit');
  }, 20000);   // two server starts (slow under ASan) and reconnection back-off
}

test('a client offering only websocket handshakes over the socket and works [websocket]', async () => {
  const c = newClient('websocket');
  c.unregisterTransport('long-polling');
  c.unregisterTransport('callback-polling');
  await connected(c, 'websocket');
  const hs = c.sent.find((s) => s.message.channel === '/meta/handshake').message;
  assertEqual(hs.supportedConnectionTypes, ['websocket'], 'offered types');
  const got = [];
  await subscribed(c, '/wsonly/x', (m) => got.push(m.data.n));
  await published(c, '/wsonly/x', { n: 1 });
  await c.wait.until(() => got.length >= 1, 'delivery');
  assertEqual(got, [1], 'received');
  assertEqual([...new Set(wireOf(c.getClientId()).map((w) => w.via))], ['ws'], 'all traffic over');
});

// ------------------------------------------------------------------ runner

async function loadCometD() {
  const adapter = await import(pathToFileURL(path.join(NODE_MODULES, 'cometd-nodejs-client', 'cometd-nodejs-client.js')).href);
  adapter.adapt();
  const window = global.window;
  // CometD logs through window.console; keep its lines out of the results.
  window.console = {
    log: (...a) => console.log('# cometd:', ...a),
    debug: (...a) => console.log('# cometd:', ...a),
    info: (...a) => console.log('# cometd:', ...a),
    warn: (...a) => console.log('# cometd warn:', ...a),
    error: (...a) => console.log('# cometd error:', ...a),
  };
  installWireCapture(window);
  installScriptLoader(window);
  const lib = await import(pathToFileURL(path.join(NODE_MODULES, 'cometd', 'cometd.js')).href);
  CometD = lib.CometD;
  ({ AckExtension, TimeSyncExtension, TimeStampExtension } = lib);
}

function main() {
  H.runFile({
    tests,
    fileMs: FILE_MS,
    servers: () => servers,
    async start() {
      try {
        await loadCometD();
      } catch (e) {
        throw new Error(`loading cometd + cometd-nodejs-client: ${e && e.stack || e}`);
      }
      main_ = await startServer();
      return main_;
    },
    // disconnect every client, close the proxies; then each server must
    // exit 0 on SIGTERM
    async finish() {
      await Promise.race([
        Promise.allSettled(clients.filter((c) => !c.isDisconnected()).map((c) => disconnect(c))),
        delay(2000),
      ]);
      for (const p of proxies) p.close();
    },
  });
}

process.on('unhandledRejection', (e) => {
  console.log(`# unhandled rejection: ${e && e.stack || e}`);
});

main();
