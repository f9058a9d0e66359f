#!/usr/bin/env node
// test/interop/faye_websocket.test.js - the real npm `faye` Node client over
// WebSocket (it handshakes over HTTP, then moves to the socket), against
// `bin/bayeux serve` started as a child process: everything the long-polling
// interop covers, plus a socket the server closes, the client reconnecting
// and getting what was published while it was away.
//
//   node test/interop/faye_websocket.test.js
//   BAYEUX_CMD="node test/interop/faye-ref-server.js" node test/interop/faye_websocket.test.js
//
// BAYEUX_CMD is the launcher prefix (default "lua5.4 bin/bayeux"), run from the
// repository root through `sh -c "exec $BAYEUX_CMD serve ..."`. Prints
// "ok - name" / "not ok - name" per test and ends with "N passed, N failed";
// exits 1 on any failure. The whole file is bounded to 30 s. The tests every
// transport shares are in faye_common.js.
'use strict';
const H = require('./harness');
const { withTimeout, assert, assertEqual } = H;
const { suite } = require('./faye_common');

const { test, newClient, delivered, socketOf, onSocket, run } = suite('websocket');

test('a websocket subscriber gets what a long-polling client publishes, and the reverse', async () => {
  const w = newClient();
  const lp = newClient('long-polling');
  const gotW = [], gotLp = [];
  await withTimeout(Promise.all([
    w.subscribe('/mixed/to-ws', (d) => { gotW.push(d.n); w.wait.notify(); }),
    lp.subscribe('/mixed/to-lp', (d) => { gotLp.push(d.n); lp.wait.notify(); }),
  ]), 5000, 'subscribe');
  await withTimeout(lp.publish('/mixed/to-ws', { n: 1 }), 5000, 'long-polling publish');
  await withTimeout(w.publish('/mixed/to-lp', { n: 2 }), 5000, 'websocket publish');
  await w.wait.until(() => gotW.includes(1), 'websocket delivery');
  await lp.wait.until(() => gotLp.includes(2), 'long-polling delivery');
  onSocket(w, 'the websocket client');
  assertEqual([...lp.connectionTypes], ['long-polling'], 'long-polling client connection types');
});

test('the server closes the socket: the client reconnects and gets what was published meanwhile', async () => {
  const a = newClient(), pub = newClient();
  const got = [];
  await withTimeout(a.subscribe('/away/x', (d) => { got.push(d.n); a.wait.notify(); }), 5000, 'subscribe');
  await withTimeout(pub.publish('/away/x', { n: 1 }), 5000, 'publish 1');
  await a.wait.until(() => got.includes(1), 'first delivery');

  // An unmasked client frame is a protocol error: the server answers with
  // a close frame and drops the socket, leaving the session alive.
  const sock = socketOf(a);
  assert(sock, 'subscriber has an open socket');
  let code = null;
  const closed = new Promise((resolve) => sock.on('close', (ev) => { code = ev.code; resolve(); }));
  sock._stream.write(Buffer.from([0x81, 0x01, 0x41]));
  await withTimeout(closed, 3000, 'server closes the socket');
  // RFC 6455 protocol error; Faye's websocket-driver says 1003 instead
  assert(code === 1002 || code === 1003, `close code ${code}, expected 1002 (Faye: 1003)`);

  // Published while the subscriber has no socket (it retries after 1 s).
  await withTimeout(pub.publish('/away/x', { n: 2 }), 5000, 'publish 2');
  await withTimeout(pub.publish('/away/x', { n: 3 }), 5000, 'publish 3');
  await a.wait.until(() => got.includes(3), 'deliveries after reconnecting', 5000);
  assertEqual(got, [1, 2, 3], 'received');
  assert(socketOf(a) && socketOf(a) !== sock, 'the client opened a new socket');
  onSocket(a, 'the subscriber');
});

test('disconnect over websocket is acknowledged and the server closes the socket', async () => {
  const a = newClient();
  await withTimeout(a.subscribe('/bye/x', () => {}), 5000, 'subscribe');
  const sock = socketOf(a);
  assert(sock, 'open socket');
  let code = null;
  const closed = new Promise((resolve) => sock.on('close', (ev) => { code = ev.code; resolve(); }));
  await withTimeout(a.disconnect(), 5000, 'disconnect');
  await withTimeout(closed, 3000, 'socket closed');
  assert(a.seen.some((m) => m.channel === '/meta/disconnect' && m.successful === true), 'disconnect acked');
  assertEqual(code, 1000, 'close code');
});

run();
