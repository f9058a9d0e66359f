#!/usr/bin/env node
// test/browser/behaviour.test.js - what bayeux's browser client
// (client/bayeux.js) does beyond plain subscribe/publish, in headless
// Chromium against test/browser/app.lua (whose test hooks give advice,
// destroy sessions and report what the server saw):
//
//   - the handshake is retried, with growing waits, while the server is not
//     up yet; the client connects once it is, with what was subscribed
//     meanwhile (the page is served by page.route on a port nobody listens
//     on, then the server starts there); transport:down, then up
//   - advice interval on a connect reply: the next connect waits that
//     long; advice reconnect "none" stops the client: no more connects, no
//     handshake (per transport)
//   - advice reconnect "handshake" after the session is destroyed
//     server-side: one new handshake, every subscription restored exactly
//     once, even the one whose subscribe killed the session and was
//     answered 401 after the new handshake (per transport)
//   - a subscribe an extension refuses with "401::..." (as an auth
//     extension may) rejects with code 401, as Faye's client does: no new
//     handshake, the session and its other subscriptions go on (per
//     transport)
//   - the network goes away (Chromium offline) and comes back: the client
//     reconnects, its subscription neither lost nor duplicated (per
//     transport)
//   - unsubscribe(channel, fn) with two listeners keeps the server
//     subscription until the last one goes; withChannel on a wildcard;
//     removeExtension (incoming and outgoing); off() and unbind()
//   - setHeader() reaches the server, the new value once changed
//     (long-polling, eventsource, CORS); publishes made in one tick travel
//     in one HTTP request (the same and JSONP)
//
//   node test/browser/behaviour.test.js
//
// Prints "ok - name" / "not ok - name" and ends with "N passed, N failed";
// exits 1 on any failure. Bounded to 90 s (about 25 s on an idle machine).
'use strict';
const fs = require('fs');
const path = require('path');
const h = require('./harness');
const { assert, assertEqual, test, delay, expectedTransport } = h;

const FILE_MS = 90000;
const PARALLEL = 4;
const TEST_MS = 40000;          // per test: generous, for a loaded machine

const TRANSPORTS = [
  { transport: 'websocket', disable: [] },
  { transport: 'eventsource', disable: ['websocket'] },
  { transport: 'long-polling', disable: ['websocket', 'eventsource'] },
  { transport: 'callback-polling', disable: ['websocket', 'eventsource', 'long-polling'] },
];

// Waits for `pred(T.log)` in the page (a function source taking the log),
// showing the log when it does not come.
async function waitLog(page, pred, arg, ms, what) {
  await page.waitForFunction(([src, a]) => (0, eval)('(' + src + ')')(T.log, a),
                             [pred.toString(), arg], { timeout: ms || 10000 })
    .catch(async (err) => {
      const s = await page.evaluate(() => T.snapshot()).catch(() => null);
      throw new Error(`${what || err.message}; page log ${JSON.stringify(s)}`);
    });
}

async function started(browser, base, t, options) {
  const page = await h.openPage(browser, base + '/page');
  await page.evaluate(([d, o]) => T.start('/faye', d, o), [t.disable, options || { timeout: 10, retry: 1 }]);
  return page;
}

async function main() {
  const A = await h.startApp('A', 0);
  const base = new URL(A.url).origin;
  const support = { websocket: await h.supportsWebSocket(A.url), eventsource: await h.supportsEventSource(A.url) };
  const browser = await h.launchBrowser();
  const seen = (id) => h.getJSON(`${base}/subscriptions?client=${encodeURIComponent(id)}`);
  let late = null;
  // the tests run PARALLEL at a time: each has its own page, client and
  // channels (functions that start a test, in this list)
  const tests = [];

  try {
    // ---- the handshake while the server is not up yet (first: the longest)
    tests.push(() => test('handshake retried with back-off until the server is up; then connects, subscribes, receives', async () => {
      const port = await h.freePort();
      const origin = `http://127.0.0.1:${port}`;
      const routes = {
        '/page': { type: 'text/html; charset=utf-8', body: fs.readFileSync(path.join(__dirname, 'page.html'), 'utf8') },
        '/bx/client.js': { type: 'text/javascript; charset=utf-8',
                           body: fs.readFileSync(path.join(h.ROOT, 'client', 'bayeux.js'), 'utf8') },
      };
      const page = await h.openPage(browser, `${origin}/page?client=/bx/client.js`, { routes });
      await page.evaluate(() => {
        T.start('/faye', [], { timeout: 10, retry: 1 });
        T.sub('/retry/x');                 // made while nothing answers
        T.removedCalls = 0;
        const gone = () => { T.removedCalls++; };
        T.client.on('transport:up', gone).off('transport:up', gone);
        T.client.bind('transport:down', gone).unbind('transport:down', gone);
      });
      const handshakesTried = () => page.net.failed.filter((f) => f.method === 'POST' &&
        h.postedMessages(f.body).some((m) => m.channel === '/meta/handshake'));
      while (handshakesTried().length < 4) await delay(50);
      late = await h.startApp('late', port);
      await waitLog(page, (l) => l.subAcks['/retry/x'] === 1 && l.handshakes === 1, null, 15000,
                    'no subscription once the server was up');
      const got = await page.evaluate(async () => {
        const r = await T.pub('/retry/x', { late: true });
        return { r, got: await T.received('/retry/x', 1) };
      });
      assertEqual(got, { r: { ok: true }, got: [{ late: true }] }, 'publish acked, received once');
      const s = await page.evaluate(() => T.snapshot());
      assertEqual([s.events[0], s.events[s.events.length - 1]], ['down', 'up'], 'transport:down, then transport:up');
      assertEqual(await page.evaluate(() => T.removedCalls), 0, 'listeners removed by off() / unbind() not called');
      assertEqual(s.types, [expectedTransport('websocket', support)], 'connects over the best transport');
      const tries = handshakesTried().map((f) => f.t);
      const gaps = tries.slice(1).map((t, i) => t - tries[i]);
      // retry: 1 -> waits of 1, 1.5, 2.25 s: compare the first and the third,
      // far enough apart to tell on a loaded machine
      assert(gaps.length >= 3 && gaps[2] > gaps[0], `waits between handshake attempts grow: ${gaps}`);
      assertEqual(page.net.consoleErrors, [], 'no page errors');
      await page.close();
    }, TEST_MS));

    // ---- advice interval, then reconnect "none"
    tests.push(...TRANSPORTS.map((t) => () => test(`advice interval is waited; advice reconnect "none" stops the client (${t.transport})`, async () => {
      const page = await started(browser, base, t);
      assertEqual(await page.evaluate(() => T.sub('/none/x')), { ok: true }, 'subscribed');
      const id = await page.evaluate(() => T.client.getClientId());

      await h.postJSON(`${base}/advise?client=${id}&interval=1500`);
      await waitLog(page, (l) => {
        const i = l.connectReplies.findIndex((r) => r.advice && r.advice.interval === 1500);
        return i >= 0 && l.connectTimes.some((at) => at >= l.connectReplies[i].t);
      }, null, 10000, 'no connect after the interval advice');
      let s = await page.evaluate(() => T.snapshot());
      const reply = s.connectReplies.find((r) => r.advice && r.advice.interval === 1500);
      const next = s.connectTimes.find((at) => at >= reply.t);
      // a lower bound only: timers never fire early, however loaded the machine
      assert(next - reply.t >= 1450, `next connect ${next - reply.t} ms after the advice of 1500 ms`);

      await h.postJSON(`${base}/advise?client=${id}&reconnect=none&interval=0`);
      await waitLog(page, (l) => l.connectReplies.some((r) => r.advice && r.advice.reconnect === 'none'),
                    null, 10000, 'no connect reply with reconnect "none"');
      const before = await seen(id);
      const at = await page.evaluate(() => T.log.connectTimes.length);
      await delay(1000);                   // a client still going would have connected again by now
      const after = await seen(id);
      s = await page.evaluate(() => T.snapshot());
      assertEqual(s.connectTimes.length, at, 'no connect sent after the advice');
      assertEqual(after.connects, before.connects, 'no connect reached the server after the advice');
      assertEqual(s.handshakes, 1, 'no new handshake');
      // a stopped client sends nothing more: publish and subscribe fail at
      // once (Faye's would stay pending for ever)
      const pubResult = await page.evaluate(() => T.pub('/none/x', { n: 1 }));
      const subResult = await page.evaluate(() => T.sub('/none/y'));
      assert(pubResult.error && /reconnect "none"/.test(pubResult.error.message), `publish after "none": ${JSON.stringify(pubResult)}`);
      assert(subResult.error && /reconnect "none"/.test(subResult.error.message), `subscribe after "none": ${JSON.stringify(subResult)}`);
      await delay(300);
      const last = await seen(id);
      assertEqual([last.publishes, last.subscribe], [after.publishes, after.subscribe], 'nothing reached the server');
      assertEqual(page.net.consoleErrors, [], 'no page errors');
      await page.close();
    }, TEST_MS)));

    // ---- advice reconnect "handshake": the session is destroyed
    tests.push(...TRANSPORTS.map((t) => () => test(`session destroyed server-side: one re-handshake, subscriptions restored once (${t.transport})`, async () => {
      const page = await started(browser, base, t);
      const ch = `/kill/${t.transport}`, slow = `/doomed/${t.transport}`;
      assertEqual(await page.evaluate((c) => T.sub(c), ch), { ok: true }, 'subscribed');
      const id1 = await page.evaluate(() => T.client.getClientId());
      // this subscribe destroys the session as it arrives and is answered
      // (401) 1 s later: by then the client has handshaken again
      assertEqual(await page.evaluate((s) => T.sub(s), slow), { ok: true },
                  'the subscribe made as the session died resolves');
      await waitLog(page, (l, [c, s]) => l.handshakes === 2 && l.subAcks[c] === 2 && l.subAcks[s] === 1,
                    [ch, slow], 10000, 'subscriptions not restored');
      const id2 = await page.evaluate(() => T.client.getClientId());
      assert(id2 && id2 !== id1, 'a new client id');
      const r = await page.evaluate(async ([c, s]) => {
        const acks = await Promise.all([T.pub(c, { n: 2 }), T.pub(s, { n: 3 })]);
        return { acks, got: await T.received(c, 1, 0), slow: await T.received(s, 1, 500) };
      }, [ch, slow]);
      assertEqual(r.acks, [{ ok: true }, { ok: true }], 'publishes acked');
      assertEqual(r.got, [{ n: 2 }], 'received once after the re-handshake');
      assertEqual(r.slow, [{ n: 3 }], 'received once on the channel subscribed meanwhile');
      const s = await page.evaluate(() => T.snapshot());
      assertEqual(s.handshakes, 2, 'exactly one new handshake');
      assertEqual([s.subAcks[ch], s.subAcks[slow]], [2, 1], 'one subscribe ack per session');
      const server = await seen(id2);
      assertEqual(server.subscribe.slice().sort(), [ch, slow].sort(), 'the new session subscribed each channel once');
      const expected = expectedTransport(t.transport, support);
      const after = s.connects.filter(([hs]) => hs >= 2).map(([, type]) => type);
      assert(after.length >= 1 && after.every((type) => type === expected),
             `connects of the new session over ${expected}: ${JSON.stringify(s.connects)}`);
      assertEqual(page.net.consoleErrors, [], 'no page errors');
      await page.close();
    }, TEST_MS)));

    // ---- a subscribe refused with 401 by an extension
    tests.push(...TRANSPORTS.map((t) => () => test(`subscribe refused with 401 by an extension: rejects, no re-handshake (${t.transport})`, async () => {
      const page = await started(browser, base, t);
      const ok = `/fine401/${t.transport}`, refused = `/refused401/${t.transport}`;
      assertEqual(await page.evaluate((c) => T.sub(c), ok), { ok: true }, 'subscribed');
      const id1 = await page.evaluate(() => T.client.getClientId());
      const r = await h.withTimeout(page.evaluate((c) => T.sub(c), refused), 10000,
                                    'the refused subscribe never settled');
      assertEqual(r, { error: { code: 401, message: 'Unauthorized' } }, 'the subscribe rejects with the 401');
      await delay(500);                    // a re-handshake would have started by now
      const s = await page.evaluate(() => T.snapshot());
      assertEqual(s.handshakes, 1, 'no new handshake');
      assertEqual(await page.evaluate(() => T.client.getClientId()), id1, 'the same session');
      assertEqual(s.subErrors[refused], ['401::Unauthorized'], 'refused once, not retried');
      const after = await page.evaluate(async (c) => {
        const ack = await T.pub(c, { n: 1 });
        return { ack, got: await T.received(c, 1, 0) };
      }, ok);
      assertEqual(after, { ack: { ok: true }, got: [{ n: 1 }] }, 'the session goes on');
      // the refused channel is not kept: subscribing again asks the server again
      assertEqual(await page.evaluate((c) => T.sub(c), refused), { error: { code: 401, message: 'Unauthorized' } },
                  'a second subscribe is refused again');
      assertEqual(page.net.consoleErrors, [], 'no page errors');
      await page.close();
    }, TEST_MS)));

    // ---- the network goes away (Chromium offline) and comes back
    tests.push(...TRANSPORTS.map((t) => () => test(`network lost and back: reconnects, subscription neither lost nor duplicated (${t.transport})`, async () => {
      const page = await started(browser, base, t);
      const ch = `/offline/${t.transport}`;
      assertEqual(await page.evaluate((c) => T.sub(c), ch), { ok: true }, 'subscribed');
      await page.context().setOffline(true);
      await waitLog(page, (l) => l.events.includes('down'), null, 15000, 'no transport:down while offline');
      await page.context().setOffline(false);
      await waitLog(page, (l) => l.events.lastIndexOf('up') > l.events.indexOf('down'), null, 15000,
                    'no transport:up once back online');
      const r = await page.evaluate(async (c) => {
        const ack = await T.pub(c, { back: true });
        return { ack, got: await T.received(c, 1, 300) };
      }, ch);
      assertEqual(r, { ack: { ok: true }, got: [{ back: true }] }, 'publish acked, received once');
      const s = await page.evaluate(() => T.snapshot());
      // the session may have expired meanwhile: then one handshake more,
      // and one subscribe more, never two
      assertEqual(s.subAcks[ch], s.handshakes, 'one subscribe ack per session');
      // (a client that fell back while offline goes back to the best
      // transport with the connect after the one in flight)
      const expected = expectedTransport(t.transport, support);
      await waitLog(page, (l, e) => l.connects[l.connects.length - 1][1] === e, expected, 10000,
                    `not back on ${expected}`);
      assertEqual(page.net.consoleErrors, [], 'no page errors');
      await page.close();
    }, TEST_MS)));

    // ---- the rest of the API
    tests.push(...[TRANSPORTS[0], TRANSPORTS[2]].map((t) => () => test(`unsubscribe(channel, fn) with two listeners, withChannel, removeExtension (${t.transport})`, async () => {
      const page = await started(browser, base, t);
      const p = `/api/${t.transport}`;
      const r = await page.evaluate(async (p) => {
        const c = T.client;
        const out = { one: [], two: [], named: [], ext: [], sent: [] };
        const f1 = (d) => out.one.push(d), f2 = (d) => out.two.push(d);
        await Promise.all([c.subscribe(p + '/x', f1), c.subscribe(p + '/x', f2)]);
        await c.subscribe(p + '/*').withChannel((ch, d) => out.named.push([ch.slice(p.length), d]));
        c.unsubscribe(p + '/x', f1);
        await c.publish(p + '/x', 1);
        await until(() => out.two.length === 1 && out.named.length === 1, 5000, 'delivery to the second listener');
        out.afterFirst = await fetch('/subscriptions?client=' + c.getClientId()).then((x) => x.json());
        const ext = {
          outgoing(m, cb) { if (m.channel === p + '/y') { out.sent.push(m.data); m.ext = { tag: 'ext' }; } cb(m); },
          incoming(m, cb) { if (m.channel === p + '/y' && m.data !== undefined) out.ext.push(m.ext || null); cb(m); },
          removed(host) { out.removed = host === c; },
        };
        c.addExtension(ext);
        await c.publish(p + '/y', 'a');
        await until(() => out.named.length === 2, 5000, 'delivery through the extension');
        c.removeExtension(ext);
        await c.publish(p + '/y', 'b');
        await until(() => out.named.length === 3, 5000, 'delivery after removeExtension');
        c.unsubscribe(p + '/x', f2);
        await c.publish(p + '/x', 2);
        await until(() => out.named.length === 4, 5000, 'delivery to the wildcard');
        await sleep(200);
        out.afterLast = await fetch('/subscriptions?client=' + c.getClientId()).then((x) => x.json());
        return out;
      }, p);
      assertEqual([r.one, r.two], [[], [1]], 'only the removed listener stopped');
      assertEqual(r.afterFirst.unsubscribe, [], 'the server subscription stays while a listener is left');
      assertEqual(r.named, [['/x', 1], ['/y', 'a'], ['/y', 'b'], ['/x', 2]], 'withChannel gets each channel and data');
      assertEqual([r.sent, r.ext], [['a'], [{ tag: 'ext' }]], 'the extension runs until removed, both ways');
      assert(r.removed, 'extension removed(client) hook');
      assertEqual(r.afterLast.unsubscribe, [p + '/x'], 'one /meta/unsubscribe when the last listener goes');
      assertEqual(r.afterLast.subscribe.filter((c) => c === p + '/x'), [p + '/x'], 'one /meta/subscribe for two listeners');
      assertEqual(page.net.consoleErrors, [], 'no page errors');
      await page.close();
    }, TEST_MS)));

    // ---- setHeader() and batching. The cross-origin page comes from
    // localhost rather than 127.0.0.1. No headers on JSONP.
    const httpCases = [
      { transport: 'long-polling', disable: ['websocket', 'eventsource'], page: base },
      { transport: 'eventsource', disable: ['websocket'], page: base },
      { transport: 'cross-origin-long-polling', disable: ['websocket', 'eventsource'],
        page: base.replace('127.0.0.1', 'localhost'), endpoint: A.url },
      { transport: 'callback-polling', disable: ['websocket', 'eventsource', 'long-polling'], page: base,
        noHeaders: true },
    ];
    tests.push(...httpCases.map((hc) => () => test(`${hc.noHeaders ? '' : 'setHeader() reaches the server; '}publishes made in one tick go in one request (${hc.transport})`, async () => {
      const page = await h.openPage(browser, hc.page + '/page');
      const ch = `/headers/${hc.transport}`;
      const r = await page.evaluate(async ([e, d, c]) => {
        T.start(e, d, { timeout: 10, retry: 1 });
        T.client.setHeader('Authorization', 'Bearer one');
        await T.sub(c);
        await T.pub(c, { n: 1 });
        await T.received(c, 1, 0);
        T.client.setHeader('Authorization', 'Bearer two');
        const acks = await Promise.all([2, 3, 4].map((n) => T.pub(c, { n })));
        return { acks, got: await T.received(c, 4), types: T.log.types };
      }, [hc.endpoint || '/faye', hc.disable, ch]);
      assertEqual(r.acks, [{ ok: true }, { ok: true }, { ok: true }], 'acked');
      assertEqual(r.got.map((d) => d.n), [1, 2, 3, 4], 'received once each, in order');
      if (!hc.noHeaders)
        assertEqual(r.got.map((d) => d.authorization), ['Bearer one', 'Bearer two', 'Bearer two', 'Bearer two'],
                    'the server saw the header of the time');
      const wanted = hc.transport === 'eventsource' ? expectedTransport('eventsource', support) : hc.transport;
      assertEqual(r.types, [wanted], 'transport');
      const requests = hc.transport === 'callback-polling'
        ? page.net.jsonp.map(h.jsonpMessages)
        : page.net.posts.map((p) => h.postedMessages(p.body));
      const carrying = requests.map((ms) => ms.filter((m) => m.channel === ch).map((m) => m.data.n))
        .filter((ns) => ns.length > 0);
      assertEqual(carrying, [[1], [2, 3, 4]], 'the publishes of one tick, in one request');
      assertEqual(page.net.consoleErrors, [], 'no page errors');
      await page.close();
    }, TEST_MS)));

    await h.pool(tests, PARALLEL);
  } finally {
    await browser.close().catch(() => {});
    await Promise.all([h.stopServer(A), h.stopServer(late)]);
  }
}

h.run(main, FILE_MS);
