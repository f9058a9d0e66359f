#!/usr/bin/env node
// test/interop/faye_history.test.js - channel history with recovery
// (docs/delivery.md) with the real npm `faye` Node client and bayeux's
// Faye.History extension (client/bayeux.js) added to it: the server ends
// the client's session (closing its socket) while messages are published;
// Faye's client handshakes again and resubscribes through its outgoing
// extensions, naming the last position it saw, and gets exactly what it
// missed, once each and in order. The client's new handshake is held by a
// test extension until the test has published, so the miss is certain.
//
//   node test/interop/faye_history.test.js
//
// Prints "ok - name" / "not ok - name" and ends with "N passed, N failed";
// exits 1 on any failure. Bounded to 40 s.
'use strict';
const path = require('path');
const http = require('http');
const H = require('./harness');
const { assert, assertEqual, poll } = H;

const Faye = require(path.join(H.NODE_MODULES, 'faye'));
const { History } = require(path.join(H.ROOT, 'client', 'bayeux.js'));

let srv = null;
const clients = [];

function post(messages) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify(messages);
    const req = http.request(srv.url, { method: 'POST', headers: { 'Content-Type': 'application/json' } },
      (res) => {
        let text = '';
        res.on('data', (d) => { text += d; });
        res.on('end', () => resolve(JSON.parse(text)));
      });
    req.on('error', reject);
    req.end(body);
  });
}

async function publish(channel, i) {
  const r = await post([{ channel, data: { i } }]);
  assert(r[0].successful, `publish ${i}: ${JSON.stringify(r)}`);
}

const tests = [
  {
    name: 'faye client + Faye.History: after the server ended its session, gets what it missed, once, in order',
    ms: 30000,
    fn: async () => {
      const client = new Faye.Client(srv.url, { timeout: 3, retry: 0.2 });
      clients.push(client);
      const got = [], resets = [];
      let holding = false;
      const held = [];
      client.addExtension({
        outgoing(message, callback) {
          if (message.channel === '/meta/handshake' && holding) held.push(() => callback(message));
          else callback(message);
        },
      });
      client.addExtension(new History({ onReset: (ch, reason) => resets.push([ch, reason]) }));
      await client.subscribe('/h/a', (d) => got.push(d.i));
      await publish('/h/a', 1);
      await publish('/h/a', 2);
      await poll(() => got.length >= 2, 'the first two', 10000);
      const before = client._dispatcher.clientId;
      assert(before, 'the client has a session');

      holding = true;
      const r = await post([{ channel: '/meta/disconnect', clientId: before }]);
      assert(r[0].successful, `the session ended: ${JSON.stringify(r)}`);
      for (let i = 3; i <= 5; i++) await publish('/h/a', i);
      await poll(() => held.length >= 1, 'the client handshakes again', 10000);
      holding = false;
      for (const go of held.splice(0)) go();

      await poll(() => got.length >= 5, `the missed three (got ${got})`, 10000);
      await publish('/h/a', 6);
      await poll(() => got.length >= 6, `the live one (got ${got})`, 10000);
      await H.delay(300);               // room for a double to arrive
      assertEqual(got, [1, 2, 3, 4, 5, 6], 'each once, in order');
      assertEqual(resets, [], 'no reset');
      assert(client._dispatcher.clientId !== before, 'a new session');
    },
  },
];

H.runFile({
  tests,
  fileMs: 40000,
  start: async () => {
    srv = await H.startServer({ mount: '/faye', timeout: 3, extra: "--history '/h/**:100:300'" });
    return srv;
  },
  servers: () => (srv ? [srv] : []),
  finish: () => Promise.all(clients.map((c) => c.disconnect())),
});
