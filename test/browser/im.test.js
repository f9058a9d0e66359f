#!/usr/bin/env node
// test/browser/im.test.js - the IM example (examples/im/app.lua, its page in
// examples/im/public/) in headless Chromium with three users, once per
// transport the page can be forced onto with ?disable=: websocket,
// eventsource, long-polling, callback-polling.
//
//   node test/browser/im.test.js
//
// The app runs unchanged on a free port (PORT=0). Three pages (three
// browser contexts) log in through the form as a person would:
//   1. a wrong password is refused on the form; then alice, bob and carol
//      log in;
//   2. presence: each sees "3 here: Alice, Bob, Carol" in #general and the
//      two others online;
//   3. alice writes in #general: bob and carol see it, from Alice;
//   4. bob types (without sending): alice sees "Bob is typing…";
//   5. one to one: alice writes to bob; bob gets an unread badge, opens the
//      conversation and answers; carol has no such conversation and never
//      sees either line;
//   6. a group room: bob writes in #dev (alice and bob): alice gets it;
//      carol has no #dev;
//   7. carol tries to read what is not hers from her page's client: alice
//      and bob's conversation, #dev, its presence and typing channels, a
//      wildcard over conversations: each is refused (403/405), and nothing
//      of theirs reaches her;
//   8. carol publishes in #general claiming to be alice: the others see
//      Carol;
//   9. carol logs out: alice sees "2 here: Alice, Bob" and carol offline.
// Every page: no page errors; every /meta/connect over the transport.
// The same again over websocket and long-polling with the app as two
// processes sharing a private redis-server (ENGINE=redis://...): alice's
// page on one, bob's and carol's on the other; presence, messages,
// refusals and the stamped sender cross processes.
//
// Prints "ok - name" / "not ok - name" and ends with "N passed, N failed";
// exits 1 on any failure. Bounded to TEST_MS per round of PARALLEL cases.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { spawn } = require('child_process');
const h = require('./harness');
const { assert, assertEqual, test, withTimeout } = h;

const PARALLEL = 2;
// Every wait below is bounded by WAIT_MS and names what did not happen: a
// step that hangs fails there. TEST_MS only bounds the sum of ~40 browser
// steps, which on a machine loaded to 8 runnable tasks a core took more
// than 100 s with no step failing.
const TEST_MS = 180000;         // per case (three pages)
const WAIT_MS = 15000;

// Each test's steps with their start (s since the test began), printed if
// the test runs out of time: the slow step, not just "timed out".
const traces = {};
function step(tag, what) {
  const t = traces[tag];
  if (t) t.steps.push(`${((Date.now() - t.start) / 1000).toFixed(1)}s ${what}`);
}

const TRANSPORTS = [
  { transport: 'websocket', disable: [] },
  { transport: 'eventsource', disable: ['websocket'] },
  { transport: 'long-polling', disable: ['websocket', 'eventsource'] },
  { transport: 'callback-polling', disable: ['websocket', 'eventsource', 'long-polling'] },
  { transport: 'websocket', disable: [], redis: true },
  { transport: 'long-polling', disable: ['websocket', 'eventsource'], redis: true },
];

// A private redis-server for the two-process cases, started on first use.
const redis = { proc: null, port: 0, dir: null, ready: null };

function startRedis() {
  if (redis.ready) return redis.ready;
  redis.ready = (async () => {
    redis.port = await h.freePort();
    redis.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bx-im-redis-'));
    redis.proc = spawn('redis-server', ['--port', String(redis.port), '--bind', '127.0.0.1',
      '--save', '', '--appendonly', 'no', '--dir', redis.dir, '--loglevel', 'warning'],
    { stdio: 'ignore' });
    const net = require('net');
    for (let i = 0; i < 200; i++) {
      const up = await new Promise((resolve) => {
        const sock = net.connect(redis.port, '127.0.0.1');
        sock.on('error', () => resolve(false));
        sock.on('connect', () => sock.write('PING\r\n'));
        sock.on('data', (d) => { sock.destroy(); resolve(String(d).startsWith('+PONG')); });
      });
      if (up) return;
      await h.delay(25);
    }
    throw new Error('redis-server did not answer');
  })();
  return redis.ready;
}

process.on('exit', () => {
  if (redis.proc && redis.proc.exitCode === null) redis.proc.kill('SIGKILL');
  if (redis.dir) try { fs.rmSync(redis.dir, { recursive: true, force: true }); } catch (e) { /* gone */ }
});

const PASSWORDS = { alice: 'rabbit', bob: 'builder', carol: 'singer' };

// The open conversation's messages: [[from, text], ...].
function messages(page) {
  return page.evaluate(() => Array.from(document.querySelectorAll('#messages li'))
    .map((li) => [li.querySelector('.from').textContent, li.querySelector('.text').textContent]));
}

async function waitFor(page, who, what, fn, arg) {
  step(page.imTag, `${who} ${what}`);
  await page.waitForFunction(fn, arg, { timeout: WAIT_MS }).catch(async () => {
    throw new Error(`${who}: never ${what}; messages ${JSON.stringify(await messages(page))}, ` +
                    `members ${await page.textContent('#members')}, status ${await page.textContent('#status')}`);
  });
}

function sees(page, who, from, text) {
  return waitFor(page, who, `saw ${from}: ${text}`, ([f, t]) => Array.from(document.querySelectorAll('#messages li'))
    .some((li) => li.querySelector('.from').textContent === f && li.querySelector('.text').textContent === t),
  [from, text]);
}

async function login(page, user, password) {
  step(page.imTag, `${user} logs in`);
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  await page.click('#login-button');
}

async function send(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
}

async function main() {
  const browser = await h.launchBrowser();
  const apps = [];
  try {
    await h.pool(TRANSPORTS.map((t, i) => () => test(`IM example, three users over ${t.transport}` +
                                                     (t.redis ? ', two processes on Redis' : ''), async () => {
      const env = { PORT: '0', TIMEOUT: '10' };
      if (t.redis) {
        await startRedis();
        env.ENGINE = `redis://127.0.0.1:${redis.port}/0?namespace=im${i}`;
        env.IM_SECRET = crypto.randomBytes(32).toString('hex');
      }
      const app = await h.startServer(`im ${t.transport}`, ['lua5.4', 'bin/bayeux', 'examples/im/app.lua'], env);
      apps.push(app);
      let other = app;
      if (t.redis) {
        other = await h.startServer(`im ${t.transport} (2)`, ['lua5.4', 'bin/bayeux', 'examples/im/app.lua'], env);
        apps.push(other);
      }
      // alice on the first process; bob and carol on the second (the same
      // one without Redis)
      const appOf = { alice: app, bob: other, carol: other };
      const support = { websocket: await h.supportsWebSocket(app.url),
                        eventsource: await h.supportsEventSource(app.url) };
      const expected = h.expectedTransport(t.transport, support);
      const query = '/' + (t.disable.length ? '?disable=' + t.disable.join(',') : '');
      const tag = `[${t.transport}${t.redis ? ' redis' : ''}]`;
      traces[tag] = { start: Date.now(), steps: [] };
      const dump = setTimeout(() => console.log(`# ${tag} steps: ${traces[tag].steps.join('; ')}`),
                              TEST_MS - 1000);
      const ready = () => document.getElementById('login-form') !== null && window.Faye !== undefined;
      const pages = {};
      for (const name of ['alice', 'bob', 'carol']) {
        step(tag, `${name} opens the page`);
        pages[name] = await h.openPage(browser, new URL(appOf[name].url).origin + query, { ready });
        pages[name].imTag = tag;
      }
      const { alice, bob, carol } = pages;

      // 1. log in (carol mistypes first)
      await login(carol, 'carol', 'wrong');
      await waitFor(carol, 'carol', 'saw the login error',
        () => document.getElementById('login-error').textContent === 'Wrong user name or password');
      for (const name of ['alice', 'bob', 'carol']) await login(pages[name], name, PASSWORDS[name]);
      for (const name of ['alice', 'bob', 'carol'])
        await waitFor(pages[name], name, 'got ready', () => window.im && window.im.ready === true);

      // 2. presence
      for (const name of ['alice', 'bob', 'carol']) {
        await waitFor(pages[name], name, 'saw three people in #general',
          () => document.getElementById('members').textContent === '3 here: Alice, Bob, Carol');
      }
      await waitFor(alice, 'alice', 'saw bob and carol online', () =>
        ['bob', 'carol'].every((p) => document.querySelector(`#people .dot[data-person="${p}"]`).classList.contains('online')));

      // 3. a room
      await send(alice, `hello everyone ${tag}`);
      for (const name of ['alice', 'bob', 'carol']) await sees(pages[name], name, 'Alice', `hello everyone ${tag}`);

      // 4. typing
      await bob.type('#text', 'hm', { delay: 20 });
      await waitFor(alice, 'alice', 'saw bob typing', () => document.getElementById('typing').textContent === 'Bob is typing…');
      await bob.fill('#text', '');

      // 5. one to one
      await alice.click('li[data-channel="/dm/alice/bob"]');
      await send(alice, `psst bob ${tag}`);
      await sees(alice, 'alice', 'Alice', `psst bob ${tag}`);
      await waitFor(bob, 'bob', 'got an unread badge from alice',
        () => document.querySelector('li[data-channel="/dm/alice/bob"] .badge').textContent === '1');
      await bob.click('li[data-channel="/dm/alice/bob"]');
      await sees(bob, 'bob', 'Alice', `psst bob ${tag}`);
      await send(bob, `hi alice ${tag}`);
      await sees(alice, 'alice', 'Bob', `hi alice ${tag}`);
      assertEqual(await carol.$('li[data-channel="/dm/alice/bob"]'), null, 'carol has no alice-bob conversation');

      // 6. a group room carol is not in
      await bob.click('li[data-channel="/room/dev"]');
      await send(bob, `build time ${tag}`);
      await waitFor(alice, 'alice', 'got an unread badge in #dev',
        () => document.querySelector('li[data-channel="/room/dev"] .badge').textContent === '1');
      await alice.click('li[data-channel="/room/dev"]');
      await sees(alice, 'alice', 'Bob', `build time ${tag}`);
      assertEqual(await carol.$('li[data-channel="/room/dev"]'), null, 'carol has no #dev');

      // 7. carol tries to listen in
      step(tag, 'carol tries what is not hers');
      const attempts = await carol.evaluate(async (channels) => {
        window.stolen = [];
        const out = {};
        for (const ch of channels) {
          // an answer that never comes says so, rather than hanging the test
          out[ch] = await Promise.race([
            window.im.client.subscribe(ch, (m) => window.stolen.push([ch, m]))
              .then(() => 'subscribed', (e) => String(e.code)),
            new Promise((resolve) => setTimeout(() => resolve('no answer in 15 s'), 15000))]);
        }
        return out;
      }, ['/dm/alice/bob', '/room/dev', '/presence/room/dev', '/typing/dm/alice/bob', '/typing/room/dev',
          '/dm/alice/*', '/dm/**', '/room/*', '/**']);
      for (const [ch, result] of Object.entries(attempts))
        assert(result === '403' || result === '405', `carol's subscribe to ${ch} refused (got ${result})`);
      await send(bob, `still building ${tag}`);
      await sees(alice, 'alice', 'Bob', `still building ${tag}`);
      await alice.click('li[data-channel="/dm/alice/bob"]');
      await send(alice, `secret ${tag}`);
      await waitFor(bob, 'bob', 'stored alice\'s secret', (text) => window.im.convs['/dm/alice/bob'].messages
        .some((m) => m.from === 'alice' && m.text === text), `secret ${tag}`);   // bob is on #dev
      await h.delay(500);                                     // anything that leaked would be in by now
      assertEqual(await carol.evaluate(() => window.stolen), [], 'nothing reached carol');
      const carolText = await carol.evaluate(() => JSON.stringify(Object.values(window.im.convs).map((c) => c.messages)));
      for (const secret of [`psst bob ${tag}`, `hi alice ${tag}`, `build time ${tag}`, `secret ${tag}`])
        assert(!carolText.includes(secret), `carol never got "${secret}"`);

      // 8. a spoofed name
      step(tag, 'carol publishes as alice');
      const spoofed = await carol.evaluate((text) => Promise.race([
        window.im.client.publish('/room/general', { id: 'spoof', text, from: 'alice' }).then(() => 'ok', (e) => String(e)),
        new Promise((resolve) => setTimeout(() => resolve('no answer in 15 s'), 15000))]), `it is me, alice ${tag}`);
      assertEqual(spoofed, 'ok', 'carol\'s publish is answered (and accepted, restamped)');
      await alice.click('li[data-channel="/room/general"]');
      await sees(alice, 'alice', 'Carol', `it is me, alice ${tag}`);

      // 9. carol leaves
      await carol.click('#logout');
      await waitFor(alice, 'alice', 'saw carol leave #general',
        () => document.getElementById('members').textContent === '2 here: Alice, Bob');
      await waitFor(alice, 'alice', 'saw carol offline',
        () => !document.querySelector('#people .dot[data-person="carol"]').classList.contains('online'));

      for (const name of ['alice', 'bob']) {
        const page = pages[name];
        assertEqual(page.net.consoleErrors, [], `${name}: no page errors`);
        assertEqual(h.connectTypes(page), [expected], `${name}'s connects`);
      }
      assertEqual(carol.net.consoleErrors, [], 'carol: no page errors');
      // a run that passed every step once hung here (closing pages or
      // stopping a server): each is bounded and named
      for (const [name, page] of Object.entries(pages)) {
        step(tag, `${name}'s page closes`);
        await withTimeout(page.close(), WAIT_MS, `${tag} closing ${name}'s page`);
      }
      step(tag, 'the server stops');
      await withTimeout(h.stopServer(app), WAIT_MS, `${tag} stopping the server`);
      if (other !== app) await withTimeout(h.stopServer(other), WAIT_MS, `${tag} stopping the second server`);
      clearTimeout(dump);
    }, TEST_MS)), PARALLEL);
  } finally {
    await browser.close().catch(() => {});
    await Promise.all(apps.map((app) => h.stopServer(app)));
  }
}

h.run(main, Math.ceil(TRANSPORTS.length / PARALLEL) * TEST_MS + 30000);
