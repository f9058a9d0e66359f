#!/usr/bin/env node
// test/browser/history.test.js - channel history with recovery in headless
// Chromium (docs/delivery.md): a page with the Faye.History extension,
// subscribed to a history channel over a WebSocket, has its session ended
// by the server (its socket closed), misses what is published meanwhile,
// and gets exactly that on its re-handshake, once each and in order; then
// the server restarts (memory engine: history lost) and the page is told
// "epoch changed" and goes on with what comes next. With the Redis engine
// (a redis-server started here on a free port), the history is Redis's:
// a page whose server restarted gets what another process published while
// it was down.
//
//   node test/browser/history.test.js
//
// Prints "ok - name" / "not ok - name" and ends with "N passed, N failed";
// exits 1 on any failure. Bounded to 150 s.
'use strict';
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const h = require('./harness');
const { assert, assertEqual, test } = h;

const FILE_MS = 150000;

function startHistoryApp(port, engine) {
  const env = { PORT: String(port), TIMEOUT: '3' };
  if (engine) env.ENGINE = engine;
  return h.startServer('history', ['lua5.4', 'bin/bayeux', 'test/browser/history_app.lua'], env);
}

// A private redis-server on a free port, without persistence; resolves
// with its child process once it answers PING.
async function startRedis() {
  const port = await h.freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bx-hist-redis-'));
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'], { stdio: 'ignore' });
  process.on('exit', () => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const ping = () => new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write('*1\r\n$4\r\nPING\r\n'));
    s.on('data', (d) => { s.destroy(); resolve(d.toString().startsWith('+PONG')); });
  });
  for (let i = 0; i < 200; i++) {
    if (await ping()) return { proc, url: `redis://127.0.0.1:${port}/0?namespace=bhist` };
    await h.delay(25);
  }
  throw new Error('redis-server did not answer');
}

async function publish(base, channel, i) {
  const body = JSON.stringify([{ channel, data: { i } }]);
  const r = await h.request('POST', base + '/faye', { 'Content-Type': 'application/json' }, body);
  const reply = JSON.parse(r.body);
  assert(r.status === 200 && reply[0].successful, `publish ${i}: ${r.body}`);
}

async function main() {
  const port = await h.freePort();
  let app = await startHistoryApp(port);
  let appR = null, other = null, redis = null;
  const base = new URL(app.url).origin;
  const browser = await h.launchBrowser();
  let page = null;
  const state = () => page.evaluate(() => ({ got: window.got, resets: window.resets,
                                              id: window.cli.getClientId && window.cli.getClientId() }));
  const waitGot = (n, what) => page.waitForFunction((k) => window.got.length >= k, n, { timeout: 20000 })
    .catch(async (err) => { throw new Error(`${what}: ${err.message}; page ${JSON.stringify(await state())}`); });
  try {
    page = await h.openPage(browser, base + '/page', {});
    await page.evaluate(() => new Promise((resolve, reject) => {
      window.got = [];
      window.resets = [];
      window.cli = new Faye.Client('/faye', { timeout: 3 });
      window.hist = new Faye.History({ onReset: (ch, reason) => window.resets.push([ch, reason]) });
      window.cli.addExtension(window.hist);
      window.cli.subscribe('/h/a', (d) => window.got.push(d.i)).then(resolve, reject);
    }));

    await test('history: a page gets what it missed while the server had ended its session', async () => {
      await publish(base, '/h/a', 1);
      await publish(base, '/h/a', 2);
      await waitGot(2, 'the first two');
      const before = await page.evaluate(() => window.cli._clientId);
      assert(before, 'the page has a session');
      const sockets = page.net.websockets.length;
      assert(sockets >= 1, 'the page uses a WebSocket');
      await h.postJSON(`${base}/expire?client=${before}`);
      for (let i = 3; i <= 5; i++) await publish(base, '/h/a', i);
      await h.postJSON(`${base}/open`);
      await waitGot(5, 'the missed three');
      await publish(base, '/h/a', 6);
      await waitGot(6, 'the live one after');
      await h.delay(500);               // room for a double to arrive
      const s = await page.evaluate(() => ({ got: window.got, resets: window.resets, id: window.cli._clientId }));
      assertEqual(s.got, [1, 2, 3, 4, 5, 6], 'each once, in order');
      assertEqual(s.resets, [], 'no reset');
      assert(s.id && s.id !== before, 'a new session');
      assertEqual(page.net.consoleErrors, [], 'no page errors');
    });

    await test('history: after a restart (memory engine) the page is told the epoch changed', async () => {
      await h.stopServer(app);
      app = await startHistoryApp(port);
      await page.waitForFunction(() => window.resets.length >= 1, null, { timeout: 20000 })
        .catch(async (err) => { throw new Error(`${err.message}; page ${JSON.stringify(await state())}`); });
      await publish(base, '/h/a', 7);
      await waitGot(7, 'the first after the restart');
      const s = await page.evaluate(() => ({ got: window.got, resets: window.resets }));
      assertEqual(s.resets, [['/h/a', 'epoch changed']], 'one reset, saying why');
      assertEqual(s.got, [1, 2, 3, 4, 5, 6, 7], 'nothing doubled or lost after');
    });
    await page.close();

    await test('history: after a restart on the Redis engine the page gets what it missed', async () => {
      redis = await startRedis();
      const rport = await h.freePort();
      appR = await startHistoryApp(rport, redis.url);
      other = await startHistoryApp(0, redis.url);     // a second process, same Redis
      const baseR = new URL(appR.url).origin;
      const baseO = new URL(other.url).origin;
      page = await h.openPage(browser, baseR + '/page', {});
      await page.evaluate(() => new Promise((resolve, reject) => {
        window.got = [];
        window.resets = [];
        window.cli = new Faye.Client('/faye', { timeout: 3 });
        window.hist = new Faye.History({ onReset: (ch, reason) => window.resets.push([ch, reason]) });
        window.cli.addExtension(window.hist);
        window.cli.subscribe('/h/r', (d) => window.got.push(d.i)).then(resolve, reject);
      }));
      await publish(baseR, '/h/r', 1);
      await publish(baseO, '/h/r', 2);
      await waitGot(2, 'the first two');
      const before = await page.evaluate(() => window.cli._clientId);
      // the session ends with the server: its restart cannot take it over
      await h.postJSON(`${baseR}/expire?client=${before}`);
      await h.stopServer(appR);
      for (let i = 3; i <= 5; i++) await publish(baseO, '/h/r', i);
      appR = await startHistoryApp(rport, redis.url);
      await waitGot(5, 'the missed three, after the restart');
      await publish(baseO, '/h/r', 6);
      await waitGot(6, 'the live one after');
      await h.delay(500);               // room for a double to arrive
      const s = await page.evaluate(() => ({ got: window.got, resets: window.resets, id: window.cli._clientId }));
      assertEqual(s.got, [1, 2, 3, 4, 5, 6], 'each once, in order');
      assertEqual(s.resets, [], 'no reset: the history is Redis\'s');
      assert(s.id && s.id !== before, 'a new session');
      assertEqual(page.net.consoleErrors, [], 'no page errors');
    });
  } finally {
    await browser.close().catch(() => {});
    await h.stopServer(app);
    await h.stopServer(appR);
    await h.stopServer(other);
    if (redis && redis.proc.exitCode === null) redis.proc.kill('SIGKILL');
  }
}

h.run(main, FILE_MS);
