#!/usr/bin/env node
// test/browser/client.test.js - bayeux's browser client (client/bayeux.js,
// served at /faye/client.js) in headless Chromium, driven by playwright-core.
//
//   node test/browser/client.test.js
//
// Servers (child processes, 127.0.0.1, any free port):
//   A  test/browser/app.lua: /faye and the test page /page   (restarted once)
//   B  test/browser/app.lua again: a second origin, for CORS and JSONP pages
//   F  test/interop/faye-ref-server.js: Node faye, to show the client speaks
//      plain Bayeux (its pages are served to the browser by page.route)
//
// For each transport forced with disable() (websocket, eventsource,
// long-polling, callback-polling): subscribe, publish, receive, the publish
// resolves, an invalid channel rejects with 405, transport:up fires; then A
// restarts on the same port and every page reconnects (transport:down, then
// up) with its subscription back and not duplicated. Cross-origin pages
// (from B) work over CORS and JSONP. The same runs against F.
//
// While the server under test answers WebSocket upgrades or EventSource GETs
// with an error, the forced-transport checks verify the fall-back instead and
// print a "# " note. Prints "ok - name" / "not ok - name" and ends with
// "N passed, N failed"; exits 1 on any failure. Bounded to 120 s.
'use strict';
const fs = require('fs');
const path = require('path');
const {
  ROOT, SERVER_TIMEOUT, note, delay, assert, assertEqual, test, startServer, stopServer, startApp, get,
  supportsWebSocket, supportsEventSource, expectedTransport, launchBrowser, openPage: open, run,
} = require('./harness');

const FILE_MS = 115000;

// ------------------------------------------------------------------ pages

const ALL_OFF = ['websocket', 'eventsource', 'long-polling', 'cross-origin-long-polling'];

// The forced transports: what is disabled, what we expect on the wire.
const SAME_ORIGIN = [
  { transport: 'websocket', disable: [] },
  { transport: 'eventsource', disable: ['websocket'] },
  { transport: 'long-polling', disable: ['websocket', 'eventsource'] },
  { transport: 'callback-polling', disable: ['websocket', 'eventsource', 'long-polling'] },
];
const CROSS_ORIGIN = [
  { transport: 'cross-origin-long-polling', disable: ['websocket', 'eventsource'] },
  { transport: 'callback-polling', disable: ALL_OFF },
];

// Opens a page (routes: { pathname: { type, body } } served by page.route).
function openPage(browser, url, routes) {
  return open(browser, url, { routes });
}

// The checks every forced transport must pass.
async function basicChecks(page, endpoint, disable, channel, expected, what) {
  await page.evaluate(([e, d]) => T.start(e, d), [endpoint, disable]);
  const r = await page.evaluate((ch) => T.basic(ch), channel);
  assertEqual(r.got, [{ n: 1, text: 'hello' }], `${what}: data received once`);
  assertEqual(r.named, [[channel, { n: 1, text: 'hello' }]], `${what}: withChannel(channel, data)`);
  assert(r.resolved, `${what}: publish thenable resolved`);
  assert(r.pubErr && r.pubErr.code === 405, `${what}: publish to /invalid/* rejects with code 405 (got ${JSON.stringify(r.pubErr)})`);
  assert(r.subErr && r.subErr.code === 403, `${what}: subscribe to /meta/nope rejects with code 403 (got ${JSON.stringify(r.subErr)})`);
  assert(r.events[0] === 'up', `${what}: transport:up fired first (events ${JSON.stringify(r.events)})`);
  assertEqual(r.types, [expected], `${what}: connectionType of every connect`);
  const net = page.net;
  if (expected === 'websocket') assert(net.websockets.length >= 1, `${what}: a WebSocket was opened`);
  if (expected === 'eventsource') assert(net.eventsource.length >= 1, `${what}: an EventSource was opened`);
  if (expected === 'callback-polling') {
    assert(net.jsonp.length >= 3, `${what}: JSONP requests were made (${net.jsonp.length})`);
    assertEqual(net.xhr, [], `${what}: no XHR`);
  }
  if (expected === 'cross-origin-long-polling') {
    assert(net.jsonp.length >= 1 && /meta%2Fhandshake/.test(net.jsonp[0]), `${what}: handshake over JSONP, as Faye's client does`);
    assert(net.xhr.some((x) => /^POST /.test(x)), `${what}: CORS POSTs`);
  }
  assertEqual(net.consoleErrors, [], `${what}: no page errors`);
  return r;
}

// ------------------------------------------------------------------- main

async function main() {
  let A = await startApp('A', 0);
  const B = await startApp('B', 0);
  const F = await startServer('F', ['node', 'test/interop/faye-ref-server.js', 'serve', '--host', '127.0.0.1',
                                    '--port', '0', '--mount', '/faye', '--timeout', String(SERVER_TIMEOUT)]);
  const aPort = new URL(A.url).port;
  const aOrigin = new URL(A.url).origin, bOrigin = new URL(B.url).origin, fOrigin = new URL(F.url).origin;

  const support = { websocket: await supportsWebSocket(A.url), eventsource: await supportsEventSource(A.url) };
  if (!support.websocket) note('bayeux does not take WebSocket upgrades yet: checking the fall-back instead');
  if (!support.eventsource) note('bayeux does not serve EventSource yet: checking the fall-back instead');

  // ---- serving
  await test('GET /faye/client.js serves the embedded client with ETag, Last-Modified, 304', async () => {
    const src = fs.readFileSync(path.join(ROOT, 'client', 'bayeux.js'), 'utf8');
    const r = await get(A.url + '/client.js');
    assertEqual(r.status, 200, 'status');
    assertEqual(r.headers['content-type'], 'text/javascript; charset=utf-8', 'content-type');
    assert(r.body === src, 'body is client/bayeux.js');
    const etag = r.headers.etag;
    assert(/^[0-9a-f]{40}$/.test(etag), `ETag is SHA-1 hex (${etag})`);
    assert(r.headers['last-modified'], 'Last-Modified');
    assert(r.headers['cache-control'], 'Cache-Control');
    assertEqual((await get(A.url + '/client.js', { 'If-None-Match': etag })).status, 304, 'bare If-None-Match');
    assertEqual((await get(A.url + '/client.js', { 'If-None-Match': `"${etag}"` })).status, 304, 'quoted If-None-Match');
    assertEqual((await get(A.url + '/client.js', { 'If-None-Match': '"other"' })).status, 200, 'other If-None-Match');
    const alias = await get(aOrigin + '/faye.js');
    assertEqual([alias.status, alias.headers.etag], [200, etag], '/faye.js');
    assertEqual((await get(A.url + '/faye.js')).status, 200, '/faye/faye.js');
    assertEqual((await get(A.url + '/nope.js')).status, 404, 'unknown script');
  });

  const browser = await launchBrowser();
  try {
    // ---- bayeux, same origin, each transport
    const pages = [];
    for (const t of SAME_ORIGIN) {
      const expected = expectedTransport(t.transport, support);
      const what = `bayeux, ${t.transport}` + (expected !== t.transport ? ` (falls back to ${expected})` : '');
      await test(`${what}: subscribe, publish, receive, ack, 405, transport:up`, async () => {
        const page = await openPage(browser, A.url.replace(/\/faye$/, '/page'));
        pages.push({ page, t, expected });
        await basicChecks(page, '/faye', t.disable, `/same/${t.transport}`, expected, what);
      });
    }

    // ---- the rest of the API, over WebSocket (when served) and long-polling
    for (const disable of [[], ['websocket', 'eventsource']]) {
      await test(`bayeux, API (disabled: ${disable.join(', ') || 'none'}): cancel, unsubscribe, wildcards, extensions, disconnect`, async () => {
        const page = await openPage(browser, A.url.replace(/\/faye$/, '/page'));
        const r = await page.evaluate((d) => T.api(d), disable);
        assertEqual(r.got, { a: [1], b: [1], w: [1, 2] }, 'deliveries');
        assertEqual(r.seen, [{ token: 't' }], 'outgoing ext reaches subscribers; incoming sees it');
        assert(r.added, 'extension added(client) hook');
        assertEqual(r.subscribes, ['/api/x', '/api/*'], 'one /meta/subscribe per channel');
        assertEqual(r.unsubscribes, ['/api/x'], 'one /meta/unsubscribe, when the last listener goes');
        assertEqual([r.state, r.stateAfter, r.disconnects], ['CONNECTED', 'DISCONNECTED', 1], 'disconnect');
        const ids = r.ids.map((id) => parseInt(id, 36));
        assert(r.ids.every((id) => /^[0-9a-z]+$/.test(id)) && ids.every((n, i) => i === 0 || n > ids[i - 1]),
               `message ids are base-36 counters: ${r.ids}`);
        assertEqual(page.net.consoleErrors, [], 'no page errors');
        await page.close();
      });
    }

    // ---- a server that refuses WebSocket and EventSource: the client falls
    // back to long-polling (endpoints sends both to paths that answer 404)
    await test('bayeux, WebSocket and EventSource refused: falls back to long-polling; setHeader', async () => {
      const page = await openPage(browser, A.url.replace(/\/faye$/, '/page'));
      const opts = { timeout: 10, retry: 1, endpoints: { websocket: aOrigin + '/nope', eventsource: aOrigin + '/nope' } };
      await page.evaluate((o) => { T.start('/faye', [], o); T.client.setHeader('Authorization', 'Bearer test'); }, opts);
      const r = await page.evaluate(() => T.basic('/fallback'));
      assertEqual(r.got, [{ n: 1, text: 'hello' }], 'data received once');
      assertEqual(r.types, ['long-polling'], 'connectionType');
      assert(page.net.websockets.some((u) => /\/nope$/.test(u)), 'a WebSocket was tried');
      assert(page.net.eventsource.some((u) => /\/nope\//.test(u)), 'an EventSource was tried');
      assert(page.net.headers.length && page.net.headers.every((h) => h.authorization === 'Bearer test'),
             'setHeader() header on every XHR');
      await page.close();
    });

    // ---- restart A on the same port: every page comes back
    await test('bayeux restarts on the same port', async () => {
      await stopServer(A);
      await delay(1500);                // long enough for every page to notice
      A = await startApp('A', aPort);
      assertEqual(new URL(A.url).port, aPort, 'same port');
    });
    for (const { page, t, expected } of pages) {
      await test(`bayeux, ${expected}: reconnects after a restart with its subscription back`, async () => {
        const channel = `/same/${t.transport}`;
        await page.waitForFunction((ch) => {
          const l = T.log;
          const down = l.events.indexOf('down');
          return down >= 0 && l.events.indexOf('up', down) > down && l.handshakes >= 2 && l.subAcks[ch] >= 2;
        }, channel, { timeout: 15000 }).catch(async (err) => {
          const s = await page.evaluate(() => T.snapshot()).catch(() => null);
          throw new Error(`${err.message}; page state ${JSON.stringify(s)}`);
        });
        const r = await page.evaluate((ch) => T.again(ch, 2), channel);
        assertEqual(r.delivered, 1, 'delivered once after the restart');
        assertEqual(r.last, { n: 2 }, 'data');
        assert(r.resolved, 'publish resolved');
        const s = await page.evaluate(() => T.snapshot());
        assertEqual(s.subAcks[channel], 2, 'one subscribe before, one after (no duplicates)');
        // while the server was away the client may have fallen back; the
        // connects of the new session must use the transport again
        const after = s.connects.filter(([h]) => h >= 2).map(([, type]) => type);
        assert(after.length >= 1 && after.every((type) => type === expected),
               `connects after the re-handshake over ${expected}: ${JSON.stringify(s.connects)}`);
        assertEqual(page.net.consoleErrors, [], 'no page errors');
        await page.close();
      });
    }

    // ---- bayeux, cross-origin page (from B): CORS and JSONP
    for (const t of CROSS_ORIGIN) {
      await test(`bayeux, cross-origin page, ${t.transport}`, async () => {
        const page = await openPage(browser, `${bOrigin}/page?client=${encodeURIComponent(A.url + '/client.js')}`);
        await basicChecks(page, A.url, t.disable, `/cross/${t.transport}`, t.transport, `cross-origin ${t.transport}`);
        await page.close();
      });
    }

    // ---- Node faye: the same page and client against faye's server
    const clientSrc = fs.readFileSync(path.join(ROOT, 'client', 'bayeux.js'), 'utf8');
    const pageSrc = fs.readFileSync(path.join(__dirname, 'page.html'), 'utf8');
    const routes = {
      '/page': { type: 'text/html; charset=utf-8', body: pageSrc },
      '/bx/client.js': { type: 'text/javascript; charset=utf-8', body: clientSrc },
    };
    for (const t of SAME_ORIGIN) {
      await test(`faye (Node), ${t.transport}`, async () => {
        const page = await openPage(browser, `${fOrigin}/page?client=/bx/client.js`, routes);
        await basicChecks(page, '/faye', t.disable, `/faye/${t.transport}`, t.transport, `faye ${t.transport}`);
        await page.evaluate(() => T.client.disconnect());
        await page.close();
      });
    }
    for (const t of CROSS_ORIGIN) {
      await test(`faye (Node), cross-origin page, ${t.transport}`, async () => {
        const page = await openPage(browser, `${bOrigin}/page?client=${encodeURIComponent(A.url + '/client.js')}`);
        await basicChecks(page, F.url, t.disable, `/fayex/${t.transport}`, t.transport, `faye cross-origin ${t.transport}`);
        await page.evaluate(() => T.client.disconnect());
        await page.close();
      });
    }
  } finally {
    await browser.close().catch(() => {});
    await Promise.all([stopServer(A), stopServer(B), stopServer(F)]);
  }
}

run(main, FILE_MS);
