#!/usr/bin/env node
// test/browser/examples.test.js - the example apps of the README's table
// (beside the chat, which chat.test.js drives) in headless Chromium, each
// run unchanged with `bin/bayeux` on a free port (PORT=0), checking what a
// person would see on the page:
//   - examples/server_publish.lua: the page says "subscribed to /time",
//     then shows the server's ticks (the tick number goes up, the time is
//     shown, the title follows);
//   - examples/auth.lua: /?token=s3cret says "subscribed to /secret" and
//     lists the ticks; /?token=wrong and no token say "refused: Forbidden"
//     and list nothing;
//   - examples/publish_api.lua: the page says it is subscribed; a POST to
//     /publish (JSON, then a form, as its curl lines) shows each message in
//     the list; a wrong token answers 401 and shows nothing.
//
//   node test/browser/examples.test.js
//
// Prints "ok - name" / "not ok - name" and ends with "N passed, N failed";
// exits 1 on any failure. Bounded to 60 s.
'use strict';
const h = require('./harness');
const { assert, assertEqual, test } = h;

const FILE_MS = 60000;
const PARALLEL = 2;
const TEST_MS = 30000;          // per test: generous, for a loaded machine
const SEE_MS = 10000;           // what a page should show within

const ready = () => window.Faye !== undefined;

// Waits until the page's #status reads `text` (a string or a RegExp source).
async function statusIs(page, text, what) {
  const re = text instanceof RegExp ? text.source : null;
  await page.waitForFunction(([t, r]) => {
    const s = document.getElementById('status').textContent;
    return r ? new RegExp(r).test(s) : s === t;
  }, [re ? null : text, re], { timeout: SEE_MS }).catch(async () => {
    throw new Error(`${what}: the status line never read ${text}; it reads ` +
                    JSON.stringify(await page.textContent('#status')));
  });
}

// The texts of the page's #log items.
function items(page) {
  return page.evaluate(() => Array.from(document.querySelectorAll('#log li')).map((li) => li.textContent));
}

// Waits until #log holds an item equal to `text` (or matching a RegExp).
async function listShows(page, text, what) {
  const re = text instanceof RegExp ? text.source : null;
  await page.waitForFunction(([t, r]) => Array.from(document.querySelectorAll('#log li'))
    .some((li) => (r ? new RegExp(r).test(li.textContent) : li.textContent === t)),
  [re ? null : text, re], { timeout: SEE_MS }).catch(async () => {
    throw new Error(`${what}: the list never showed ${text}; it shows ${JSON.stringify(await items(page))}`);
  });
}

async function main() {
  const browser = await h.launchBrowser();
  const apps = [];
  const start = async (name, file, env) => {
    const app = await h.startServer(name, ['lua5.4', 'bin/bayeux', file], Object.assign({ PORT: '0' }, env));
    apps.push(app);
    return app;
  };
  try {
    await h.pool([
      () => test('server_publish example: the page shows the server\'s ticks', async () => {
        const app = await start('server_publish', 'examples/server_publish.lua');
        const page = await h.openPage(browser, new URL(app.url).origin + '/', { ready });
        await statusIs(page, 'subscribed to /time', 'server_publish');
        const tick = () => page.evaluate(() => Number(document.getElementById('n').textContent));
        await page.waitForFunction(() => /^\d+$/.test(document.getElementById('n').textContent),
                                   null, { timeout: SEE_MS });
        const first = await tick();
        await page.waitForFunction((n) => Number(document.getElementById('n').textContent) > n,
                                   first, { timeout: SEE_MS });
        const time = await page.textContent('#time');
        assert(time && time !== '–', `the time is shown (${JSON.stringify(time)})`);
        // read both in one turn of the page: a tick may arrive between two reads
        const [title, shown] = await page.evaluate(() =>
          [document.title, document.getElementById('n').textContent]);
        assertEqual(title, `tick ${shown}`, 'the title follows the ticks');
        assertEqual(page.net.consoleErrors, [], 'no page errors');
        await page.close();
      }, TEST_MS),

      () => test('auth example: the right token subscribes and ticks arrive; a wrong or no token is refused', async () => {
        const app = await start('auth', 'examples/auth.lua', { TOKEN: 's3cret' });
        const origin = new URL(app.url).origin;
        const good = await h.openPage(browser, origin + '/?token=s3cret', { ready });
        const wrong = await h.openPage(browser, origin + '/?token=wrong', { ready });
        const none = await h.openPage(browser, origin + '/', { ready });
        await statusIs(good, 'subscribed to /secret', 'right token');
        assertEqual(await good.textContent('#token'), 's3cret', 'the page shows the token');
        await statusIs(wrong, 'refused: Forbidden', 'wrong token');
        await statusIs(none, 'refused: Forbidden', 'no token');
        assertEqual(await none.textContent('#token'), '(none)', 'the page says there is no token');
        await listShows(good, /^tick \d+$/, 'right token');
        // by the time the good page has a tick, a refused page would have one too
        await good.waitForFunction(() => document.querySelectorAll('#log li').length >= 2, null,
                                   { timeout: SEE_MS });
        assertEqual(await items(wrong), [], 'nothing listed with a wrong token');
        assertEqual(await items(none), [], 'nothing listed without a token');
        for (const [page, who] of [[good, 'right'], [wrong, 'wrong'], [none, 'none']]) {
          assertEqual(page.net.consoleErrors, [], `${who}: no page errors`);
          await page.close();
        }
      }, TEST_MS),

      () => test('publish_api example: an HTTP POST shows up on the page; a wrong token does not', async () => {
        const app = await start('publish_api', 'examples/publish_api.lua', { TOKEN: 's3cret' });
        const origin = new URL(app.url).origin;
        const page = await h.openPage(browser, origin + '/', { ready });
        await statusIs(page, 'subscribed to /messages: now run the curl line', 'publish_api');
        const auth = { Authorization: 'Bearer s3cret' };
        let r = await h.request('POST', origin + '/publish', Object.assign({ 'Content-Type': 'application/json' }, auth),
                                JSON.stringify({ channel: '/messages', data: { text: 'hello from curl' } }));
        assertEqual([r.status, JSON.parse(r.body)], [200, { channel: '/messages', ok: true }], 'JSON publish answer');
        await listShows(page, 'hello from curl', 'JSON publish');
        r = await h.request('POST', origin + '/publish',
                            Object.assign({ 'Content-Type': 'application/x-www-form-urlencoded' }, auth),
                            'channel=%2Fmessages&data=' + encodeURIComponent('{"text":"form post"}'));
        assertEqual(r.status, 200, `form publish answer ${r.body}`);
        await listShows(page, 'form post', 'form publish');
        r = await h.request('POST', origin + '/publish',
                            { 'Content-Type': 'application/json', Authorization: 'Bearer wrong' },
                            JSON.stringify({ channel: '/messages', data: { text: 'intruder' } }));
        assertEqual(r.status, 401, 'a wrong token');
        r = await h.request('POST', origin + '/publish', Object.assign({ 'Content-Type': 'application/json' }, auth),
                            JSON.stringify({ channel: '/messages', data: { text: 'last' } }));
        assertEqual(r.status, 200, 'a last publish');
        await listShows(page, 'last', 'last publish');
        assertEqual(await items(page), ['hello from curl', 'form post', 'last'], 'the list, in order, once each');
        assertEqual(page.net.consoleErrors, [], 'no page errors');
        await page.close();
      }, TEST_MS),
    ], PARALLEL);
  } finally {
    await browser.close().catch(() => {});
    await Promise.all(apps.map((app) => h.stopServer(app)));
  }
}

h.run(main, FILE_MS);
