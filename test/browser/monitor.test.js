#!/usr/bin/env node
// test/browser/monitor.test.js - the live monitor page (bayeux serve
// --monitor /monitor --monitor-token T) in headless Chromium:
//   - with the token, the page subscribes over the server's own client.js
//     and its charts move: two readings (and two screenshots) a few
//     samples apart differ, the rate chart shows the publishes made
//     meanwhile, and the busiest channel is listed;
//   - without the token (or with a wrong one) the page answers 403, and a
//     client that subscribes to the monitor channel without it is refused.
//
//   node test/browser/monitor.test.js
//
// Prints "ok - name" / "not ok - name" and ends with "N passed, N failed";
// exits 1 on any failure. Bounded to 60 s.
'use strict';
const fs = require('fs');
const path = require('path');
const h = require('./harness');
const { assert, assertEqual, test } = h;

const FILE_MS = 60000;
const TEST_MS = 40000;
const SEE_MS = 15000;

async function main() {
  const browser = await h.launchBrowser();
  const srv = await h.startServer('monitor', ['lua5.4', 'bin/bayeux', 'serve', '--port', '0',
    '--mount', '/faye', '--monitor', '/monitor', '--monitor-token', 'T0ken']);
  const origin = new URL(srv.url).origin;
  // publishes over HTTP, as any client's: the channel /load/a gets most
  let n = 0;
  const publish = async (count) => {
    for (let i = 0; i < count; i++) {
      n++;
      const ch = n % 4 === 0 ? '/load/b' : '/load/a';
      await h.request('POST', origin + '/faye', { 'Content-Type': 'application/json' },
                      JSON.stringify([{ channel: ch, data: { n }, clientId: 'x' }]));
    }
  };
  try {
    await test('with the token the charts update every second and show the load', async () => {
      const page = await h.openPage(browser, origin + '/monitor?token=T0ken',
                                    { ready: () => window.monitor !== undefined });
      const samples = () => page.evaluate(() => window.monitor.samples);
      const reading = () => page.evaluate(() => ({
        samples: window.monitor.samples,
        rates: Array.from(document.querySelectorAll('#rates polyline')).map((p) => p.getAttribute('points')),
        conns: Array.from(document.querySelectorAll('#conns polyline')).map((p) => p.getAttribute('points')),
        legend: document.getElementById('rates-legend').textContent,
        top: Array.from(document.querySelectorAll('#top text')).map((t) => t.textContent),
        status: document.getElementById('status').textContent,
      }));
      await page.waitForFunction(() => window.monitor.samples >= 2, null, { timeout: SEE_MS });
      await publish(30);
      const s0 = await samples();
      await page.waitForFunction((s) => window.monitor.samples >= s + 1, s0, { timeout: SEE_MS });
      const first = await reading();
      const shot1 = await page.screenshot();
      await publish(60);
      await page.waitForFunction((s) => window.monitor.samples >= s + 2, first.samples, { timeout: SEE_MS });
      const second = await reading();
      const shot2 = await page.screenshot();
      const dir = path.join(h.ROOT, 'build', 'test-browser');
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'monitor-1.png'), shot1);
      fs.writeFileSync(path.join(dir, 'monitor-2.png'), shot2);

      assertEqual(first.rates.length, 2, 'the rate chart has two series (in, out)');
      assertEqual(first.conns.length, 4, 'the connections chart has four series');
      assert(second.samples >= first.samples + 2, 'samples keep arriving');
      assert(first.rates[0] !== second.rates[0], 'the rate chart moved between the readings');
      assert(!shot1.equals(shot2), 'the two screenshots differ');
      // the publishes of the last minute show as a rate above 0 somewhere
      const ys = (pts) => pts.split(' ').map((p) => Number(p.split(',')[1]));
      assert(ys(second.rates[0]).some((y) => y < 150), `the in-rate rose above 0: ${second.rates[0]}`);
      assert(/^live, \d+ sessions$/.test(second.status), `status: ${second.status}`);
      const all = first.top.concat(second.top).join(' | ');
      assert(/\/load\/a \d+/.test(all), `the busiest channel is listed: ${all}`);
      assertEqual(page.net.consoleErrors, [], 'no page errors');
      h.note(`screenshots in ${dir}`);
      await page.close();
    }, TEST_MS);

    await test('without the token the page and the channel are refused', async () => {
      for (const q of ['', '?token=wrong', '?token=']) {
        const r = await h.request('GET', origin + '/monitor' + q);
        assertEqual(r.status, 403, `GET /monitor${q}`);
        assert(!/svg/.test(r.body), 'no page');
      }
      // a page of the server's own (with the token) tries a client without it
      const page = await h.openPage(browser, origin + '/monitor?token=T0ken',
                                    { ready: () => window.monitor !== undefined });
      const results = await page.evaluate(() => Promise.all(['/bayeux/monitor', '/**', '/bayeux/*'].map((ch) => {
        const c = new Faye.Client(location.origin + '/faye');
        return c.subscribe(ch, () => {}).then(() => 'subscribed ' + ch, (e) => 'refused ' + ch + ': ' + e.message);
      })));
      assertEqual(results, ['refused /bayeux/monitor: Forbidden', 'refused /**: Forbidden',
                            'refused /bayeux/*: Forbidden'], 'subscriptions without the token');
      await page.close();
    }, TEST_MS);
  } finally {
    await browser.close();
    await h.stopServer(srv);
  }
}

h.run(main, FILE_MS);
