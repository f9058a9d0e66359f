#!/usr/bin/env node
// test/browser/chat.test.js - the chat example (examples/chat/app.lua and
// its page, examples/chat/index.html) in headless Chromium, with bayeux's
// own client, over every transport the page can be forced onto with
// ?disable=: websocket, eventsource, long-polling, callback-polling.
//
//   node test/browser/chat.test.js
//
// The app runs unchanged, once per transport, on a free port (PORT=0). Two
// pages (two browser contexts, "alice" and "bob") type into the form and
// press Send, as a person would:
//   1. alice says hello and sees it come back (so she is subscribed);
//   2. bob opens the page, answers, sees his line; alice sees it too;
//   3. alice answers bob: both see it;
//   4. bob types /time: both see it and the server's answer;
// then each page's log holds exactly those lines, once each, in order; both
// say "connected"; every /meta/connect went over the transport (WebSocket
// frames, POST bodies or JSONP URLs, as Chromium saw them).
//
// Prints "ok - name" / "not ok - name" and ends with "N passed, N failed";
// exits 1 on any failure. Bounded to 60 s.
'use strict';
const h = require('./harness');
const { assert, assertEqual, test } = h;

const FILE_MS = 60000;
const PARALLEL = 2;
const TEST_MS = 40000;          // per test (two pages): generous, for a loaded machine

const TRANSPORTS = [
  { transport: 'websocket', disable: [] },
  { transport: 'eventsource', disable: ['websocket'] },
  { transport: 'long-polling', disable: ['websocket', 'eventsource'] },
  { transport: 'callback-polling', disable: ['websocket', 'eventsource', 'long-polling'] },
];

// The chat log of a page: [[user, text], ...].
function lines(page) {
  return page.evaluate(() => Array.from(document.querySelectorAll('#log li'))
    .map((li) => [li.querySelector('.user').textContent, li.lastChild.textContent]));
}

// Waits until the page's log has a line from `user` whose text matches.
async function sees(page, user, text, who) {
  const source = text instanceof RegExp ? text.source : null;
  await page.waitForFunction(([u, t, re]) => Array.from(document.querySelectorAll('#log li')).some((li) =>
    li.querySelector('.user').textContent === u &&
    (re ? new RegExp(re).test(li.lastChild.textContent) : li.lastChild.textContent === t)),
  [user, source ? null : text, source], { timeout: 10000 }).catch(async () => {
    throw new Error(`${who} never saw ${user}: ${text}; log ${JSON.stringify(await lines(page))}`);
  });
}

// Types a line into the page's form and sends it, as a person would.
async function say(page, user, text) {
  await page.fill('#user', user);
  await page.fill('#text', text);
  await page.click('button');
}

async function main() {
  const browser = await h.launchBrowser();
  const ready = () => window.Faye !== undefined;
  const apps = [];
  try {
    await h.pool(TRANSPORTS.map((t) => () => test(`chat example, two pages talk over ${t.transport}`, async () => {
      // a chat room of their own
      const app = await h.startServer(`chat ${t.transport}`, ['lua5.4', 'bin/bayeux', 'examples/chat/app.lua'],
                                      { PORT: '0' });
      apps.push(app);
      const origin = new URL(app.url).origin;
      const support = { websocket: await h.supportsWebSocket(app.url),
                        eventsource: await h.supportsEventSource(app.url) };
      const expected = h.expectedTransport(t.transport, support);
      const url = origin + '/' + (t.disable.length ? '?disable=' + t.disable.join(',') : '');
      const tag = `[${t.transport}]`;
      const alice = await h.openPage(browser, url, { ready });
      await say(alice, 'alice', `hello ${tag}`);
      await sees(alice, 'alice', `hello ${tag}`, 'alice');
      const bob = await h.openPage(browser, url, { ready });
      await say(bob, 'bob', `hi alice ${tag}`);
      await sees(bob, 'bob', `hi alice ${tag}`, 'bob');
      await sees(alice, 'bob', `hi alice ${tag}`, 'alice');
      await say(alice, 'alice', `hi bob ${tag}`);
      await sees(bob, 'alice', `hi bob ${tag}`, 'bob');
      await sees(alice, 'alice', `hi bob ${tag}`, 'alice');
      await say(bob, 'bob', '/time');
      for (const [page, who] of [[alice, 'alice'], [bob, 'bob']]) {
        await sees(page, 'bob', '/time', who);
        await sees(page, 'server', /^it is /, who);
      }
      await h.delay(300);                 // a duplicate would show by now
      const a = await lines(alice), b = await lines(bob);
      const time = a.length === 5 ? a[4][1] : '?';
      assertEqual(a, [['alice', `hello ${tag}`], ['bob', `hi alice ${tag}`], ['alice', `hi bob ${tag}`],
                      ['bob', '/time'], ['server', time]], "alice's log");
      assertEqual(b, [['bob', `hi alice ${tag}`], ['alice', `hi bob ${tag}`], ['bob', '/time'], ['server', time]],
                  "bob's log");
      for (const [page, who] of [[alice, 'alice'], [bob, 'bob']]) {
        assertEqual(await page.textContent('#status'), 'connected', `${who}'s status line`);
        assertEqual(h.connectTypes(page), [expected], `${who}'s connects`);
        const net = page.net;
        if (expected === 'websocket') assert(net.websockets.length >= 1, `${who}: a WebSocket`);
        if (expected === 'eventsource') assert(net.eventsource.length >= 1, `${who}: an EventSource`);
        if (expected === 'callback-polling') {
          assert(net.jsonp.length >= 3, `${who}: JSONP requests`);
          assertEqual(net.posts, [], `${who}: no POST`);
        }
        if (expected === 'long-polling')
          assertEqual([net.websockets.length, net.eventsource.length], [0, 0], `${who}: no stream`);
        assertEqual(net.consoleErrors, [], `${who}: no page errors`);
      }
      await Promise.all([alice.close(), bob.close()]);
      await h.stopServer(app);
    }, TEST_MS)), PARALLEL);
  } finally {
    await browser.close().catch(() => {});
    await Promise.all(apps.map((app) => h.stopServer(app)));
  }
}

h.run(main, FILE_MS);
