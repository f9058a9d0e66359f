// test/interop/faye_common.js - the npm `faye` Node client against
// `$BAYEUX_CMD serve` (see harness.js): the client, the server and the tests
// every transport must pass; faye_longpoll.test.js and
// faye_websocket.test.js run them, the latter with tests of its own.
'use strict';
const path = require('path');
const H = require('./harness');
const { withTimeout, assert, assertEqual } = H;

const faye = require(path.join(H.NODE_MODULES, 'faye'));

const SERVER_TIMEOUT = 2;        // seconds a /meta/connect is held
const TEST_MS = 6000;            // per test
const FILE_MS = 30000;           // whole file

// A suite for `transport` ('long-polling' or 'websocket'): returns
// { test, newClient, delivered, socketOf, url(), run() } with the common
// tests already added.
function suite(transport) {
  let server = null;             // { proc, log, exit, url, port }
  const clients = [];
  const tests = [];
  const test = (name, fn) => { tests.push({ name, fn, ms: TEST_MS }); };

  // A faye client whose raw incoming messages (what the server sent,
  // before the client's own channel dispatch) are recorded in c.seen, so a
  // test can tell what the server delivered, not only what the client
  // chose to hand to callbacks. `transport` 'long-polling' disables the
  // WebSocket; 'websocket' lets the client move to it as it does by default.
  function newClient(which = transport) {
    const c = new faye.Client(server.url, { timeout: SERVER_TIMEOUT + 5, retry: 1 });
    if (which === 'long-polling') c.disable('websocket');
    c.seen = [];
    c.connectionTypes = new Set();
    c.wait = H.waiter(TEST_MS - 1000);
    c.addExtension({
      incoming(message, callback) {
        c.seen.push(message);
        callback(message);
        c.wait.notify();
      },
      outgoing(message, callback) {
        if (message.channel === '/meta/connect') c.connectionTypes.add(message.connectionType);
        callback(message);
      },
    });
    clients.push(c);
    return c;
  }

  // The client's open WebSocket (faye-websocket Client), if any.
  function socketOf(c) {
    const sockets = c._dispatcher.transports.websocket;
    if (!sockets) return null;
    for (const t of sockets.values()) if (t._socket) return t._socket;
    return null;
  }

  // c's connects now go over its open WebSocket. Faye's client sends what
  // comes before its socket opens over HTTP (a loaded machine may see a
  // first connect go that way): what matters is that it moved to the
  // socket and stayed there.
  function onSocket(c, who) {
    const types = [...c.connectionTypes];
    assertEqual(types[types.length - 1], 'websocket', `${who}'s last connection type of ${JSON.stringify(types)}`);
    assert(socketOf(c), `${who} holds an open WebSocket`);
  }

  // Deliveries (not replies) the server sent c on a channel.
  function delivered(c, channel) {
    return c.seen.filter((m) => m.channel === channel && 'data' in m && m.successful === undefined);
  }

  test(`subscribe + publish delivers the data over ${transport}`, async () => {
    const a = newClient(), b = newClient();
    const got = [];
    await withTimeout(a.subscribe('/interop/basic', (data) => { got.push(data); a.wait.notify(); }), 5000, 'subscribe');
    await withTimeout(b.publish('/interop/basic', { text: 'hello', n: 1 }), 5000, 'publish');
    await a.wait.until(() => got.length >= 1, 'delivery on /interop/basic');
    assertEqual(got, [{ text: 'hello', n: 1 }], 'received data');
    if (transport === 'websocket') {
      onSocket(a, 'subscriber');
      onSocket(b, 'publisher');
    } else {
      assertEqual([...a.connectionTypes], [transport], 'subscriber connection types');
      assertEqual([...b.connectionTypes], [transport], 'publisher connection types');
    }
  });

  test('wildcards /foo/* and /foo/** match one and many segments', async () => {
    const one = newClient(), many = newClient(), pub = newClient();
    const gotOne = [], gotMany = [];
    await withTimeout(Promise.all([
      one.subscribe('/foo/*', (data) => { gotOne.push(data.n); one.wait.notify(); }),
      many.subscribe('/foo/**', (data) => { gotMany.push(data.n); many.wait.notify(); }),
    ]), 5000, 'subscribe');
    await withTimeout(pub.publish('/foo/a', { n: 1 }), 5000, 'publish /foo/a');
    await withTimeout(pub.publish('/foo/a/b', { n: 2 }), 5000, 'publish /foo/a/b');
    await withTimeout(pub.publish('/bar/a', { n: 3 }), 5000, 'publish /bar/a');
    await withTimeout(pub.publish('/foo/c', { n: 4 }), 5000, 'publish /foo/c');
    await one.wait.until(() => gotOne.includes(4), '/foo/* receives /foo/c');
    await many.wait.until(() => gotMany.includes(4), '/foo/** receives /foo/c');
    // Publishes were acked in order, so by the time /foo/c arrived anything
    // the server had delivered from the earlier ones has arrived too.
    assertEqual(gotOne, [1, 4], '/foo/* got');
    assertEqual(gotMany, [1, 2, 4], '/foo/** got');
    assertEqual(delivered(one, '/foo/a/b'), [], 'server delivered /foo/a/b to /foo/*');
    assertEqual(delivered(many, '/bar/a').concat(delivered(one, '/bar/a')), [], 'server delivered /bar/a');
  });

  test('unsubscribe stops delivery', async () => {
    const a = newClient(), pub = newClient();
    const got = [];
    const sub = a.subscribe('/unsub/x', (data) => { got.push(data.n); a.wait.notify(); });
    await withTimeout(a.subscribe('/unsub/sentinel', () => {}), 5000, 'subscribe sentinel');
    await withTimeout(sub, 5000, 'subscribe');
    await withTimeout(pub.publish('/unsub/x', { n: 1 }), 5000, 'publish 1');
    await a.wait.until(() => got.includes(1), 'first delivery');

    sub.cancel();
    await a.wait.until(() => a.seen.some((m) => m.channel === '/meta/unsubscribe' && m.successful === true),
      'unsubscribe acknowledged');
    await withTimeout(pub.publish('/unsub/x', { n: 2 }), 5000, 'publish 2');
    await withTimeout(pub.publish('/unsub/sentinel', { n: 3 }), 5000, 'publish sentinel');
    await a.wait.until(() => delivered(a, '/unsub/sentinel').length >= 1, 'sentinel delivery');
    assertEqual(delivered(a, '/unsub/x').map((m) => m.data.n), [1], 'server delivered on /unsub/x');
    assertEqual(got, [1], 'callback got');
  });

  test("a client extension's ext reaches the server and rides along with the delivery", async () => {
    const a = newClient(), pub = newClient();
    pub.addExtension({
      outgoing(message, callback) {
        if (message.channel === '/ext/x') message.ext = { token: 'secret-42', list: [1, 2] };
        callback(message);
      },
    });
    await withTimeout(a.subscribe('/ext/x', () => {}), 5000, 'subscribe');
    await withTimeout(pub.publish('/ext/x', { n: 1 }), 5000, 'publish');
    await a.wait.until(() => delivered(a, '/ext/x').length >= 1, 'delivery on /ext/x');
    const m = delivered(a, '/ext/x')[0];
    assertEqual(m.data, { n: 1 }, 'delivered data');
    assertEqual(m.ext, { token: 'secret-42', list: [1, 2] }, 'delivered ext');
  });

  test('publishing to an invalid channel (/foo/*) rejects with error 405', async () => {
    const pub = newClient();
    let err = null;
    try {
      await withTimeout(pub.publish('/foo/*', { n: 1 }), 5000, 'publish');
    } catch (e) {
      err = e;
    }
    assert(err, 'publish resolved; expected a rejection');
    assert(!/timed out/.test(err.message || ''), err.message);
    assertEqual(err.code, 405, 'error code');
  });

  test('the publish thenable resolves on the server ack', async () => {
    const pub = newClient();
    let ackSeenFirst = null;
    const publication = pub.publish('/ack/x', { n: 1 });
    assert(publication && typeof publication.then === 'function', 'publish returns a thenable');
    await withTimeout(publication.then(() => {
      ackSeenFirst = pub.seen.some((m) => m.channel === '/ack/x' && m.successful === true);
    }), 5000, 'publish ack');
    assert(ackSeenFirst, 'resolved without a successful /ack/x reply from the server');
  });

  function run() {
    H.runFile({
      tests,
      fileMs: FILE_MS,
      servers: () => (server ? [server] : []),
      async start() {
        const p = H.startServer({ mount: '/faye', timeout: SERVER_TIMEOUT });
        server = p.srv;
        return p;
      },
      // disconnect every client, then the server must exit 0 on SIGTERM
      finish: () => Promise.allSettled(clients.map((c) => c.disconnect())),
    });
  }

  return { test, newClient, delivered, socketOf, onSocket, url: () => server.url, run };
}

module.exports = { suite, SERVER_TIMEOUT };
