#!/usr/bin/env node
// test/browser/ack.test.js - bayeux's browser client (client/bayeux.js) with
// its opt-in Faye.AckExtension, in headless Chromium, through a relay
// (test/interop/cut_relay.js) that cuts the socket in the middle of
// responses carrying messages: many sequence-numbered publishes (POSTed
// straight to the server) all arrive, in order, none twice, over
// WebSocket and long-polling; the handshake asks for ext.ack and the
// connects carry the batch ids. Without the extension the client sends no
// ext.ack (the fast path stays as it was). With it, EventSource is left
// aside (acknowledged messages ride /meta/connect answers only).
//
//   node test/browser/ack.test.js
//
// Prints "ok - name" / "not ok - name" and ends with "N passed, N failed";
// exits 1 on any failure.
'use strict';
const h = require('./harness');
const { startRelay } = require('../interop/cut_relay');
const { assert, assertEqual, test, delay } = h;

const FILE_MS = 100000;
const TEST_MS = 45000;
const N = 60;

const PAGE = `<!doctype html><html><head><meta charset="utf-8"></head><body>
<script src="/faye/client.js"></script>
<script>window.testReady = true;</script></body></html>`;

async function run(browser, server, transport, ack) {
  const relay = await startRelay([server.port], { maxCuts: ack ? 6 : 0, every: 2, first: 1 });
  try {
    const page = await h.openPage(browser, `${relay.url}/page.html`,
      { routes: { '/page.html': { type: 'text/html', body: PAGE } } });
    await page.evaluate(async ([disable, ack]) => {
      window.got = [];
      window.meta = [];
      const c = new Faye.Client('/faye', { timeout: 3, retry: 0.5 });
      for (const t of disable) c.disable(t);
      if (ack) c.addExtension(new Faye.AckExtension());
      // after it: outgoing extensions run in the order added
      c.addExtension({
        incoming(m, cb) { if (m.channel.startsWith('/meta/')) window.meta.push({ dir: 'in', m }); cb(m); },
        outgoing(m, cb) { if (m.channel.startsWith('/meta/')) window.meta.push({ dir: 'out', m: JSON.parse(JSON.stringify(m)) }); cb(m); },
      });
      window.client = c;
      await c.subscribe('/seq/b', (d) => window.got.push(d.n));
    }, [transport === 'long-polling' ? ['websocket', 'eventsource'] : [], ack]);
    // in six rounds, each waiting for its last message: the first response
    // of each round is cut, the batch comes again and passes
    const base = server.url;
    let got = [];
    for (let i = 1; i <= N; i++) {
      const r = await h.request('POST', base, { 'Content-Type': 'application/json' },
        JSON.stringify([{ channel: '/seq/b', data: { n: i, pad: 'x'.repeat(64) } }]));
      assertEqual(r.status, 200, 'publish');
      if (i % (N / 6) !== 0) continue;
      for (let k = 0; k < 150; k++) {
        got = await page.evaluate(() => window.got.slice());
        if (got.includes(i)) break;
        await delay(100);
      }
    }
    await delay(300);
    got = await page.evaluate(() => window.got.slice());
    const meta = await page.evaluate(() => window.meta);
    const used = await page.evaluate(() => window.client._dispatcher.transport && window.client._dispatcher.transport.name);
    const noEventSource = await page.evaluate(() => window.client._dispatcher.disabled.has('eventsource'));
    await page.evaluate(() => window.client.disconnect());
    await page.close();
    return { got, meta, cuts: relay.cuts, used, noEventSource };
  } finally {
    relay.close();
  }
}

h.run(async () => {
  const server = await h.startServer('bayeux', ['lua5.4', 'bin/bayeux', 'serve', '--host', '127.0.0.1',
    '--port', '0', '--mount', '/faye', '--timeout', '3']);
  server.port = +new URL(server.url).port;
  const browser = await h.launchBrowser();
  try {
    for (const T of ['websocket', 'long-polling']) {
      await test(`Faye.AckExtension: every message arrives once, in order, through cut responses [${T}]`, async () => {
        const r = await run(browser, server, T, true);
        if (process.env.BX_DEBUG) h.note(`got ${r.got.length} cuts ${r.cuts} used ${r.used} meta ${JSON.stringify(r.meta.map((x) => [x.dir, x.m.channel, x.m.successful, x.m.ext, x.m.error]))}`);
        const hs = r.meta.find((x) => x.dir === 'out' && x.m.channel === '/meta/handshake');
        assertEqual(hs.m.ext, { ack: true }, 'handshake ext');
        const hr = r.meta.find((x) => x.dir === 'in' && x.m.channel === '/meta/handshake');
        assertEqual(hr.m.ext, { ack: true }, 'handshake reply ext');
        const acks = r.meta.filter((x) => x.dir === 'out' && x.m.channel === '/meta/connect').map((x) => x.m.ext && x.m.ext.ack);
        assert(acks.every((a) => Number.isInteger(a)), `connects carry batch ids: ${acks}`);
        assert(Math.max(...acks) >= 1, `batches acknowledged: ${acks}`);
        assert(r.cuts >= 3, `responses cut: ${r.cuts}`);
        assertEqual(r.used, T, 'transport');
        assertEqual(r.noEventSource, true, 'EventSource left aside');
        const want = Array.from({ length: N }, (_, i) => i + 1);
        assertEqual(r.got, want, `what arrived (${r.got.length})`);
        h.note(`[${T}] ${r.cuts} responses cut, ${N} of ${N} arrived in order, none twice`);
      }, TEST_MS);
    }
    await test('without the extension the client sends no ext.ack', async () => {
      const r = await run(browser, server, 'websocket', false);
      const out = r.meta.filter((x) => x.dir === 'out');
      assert(out.every((x) => !x.m.ext || x.m.ext.ack === undefined), 'no ext.ack');
      assertEqual(r.got.length, N, 'received');
    }, TEST_MS);
  } finally {
    await browser.close();
    await h.stopServer(server);
  }
}, FILE_MS);
