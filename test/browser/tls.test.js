#!/usr/bin/env node
// test/browser/tls.test.js - headless Chromium against test/browser/app.lua
// over HTTPS (TLS_CERT, TLS_KEY): the page loads over https, bayeux's
// browser client talks over wss, then over EventSource on TLS. Chromium
// trusts the server's certificate through a pin of its public key
// (--ignore-certificate-errors-spki-list), and the pin is really checked:
// after SIGHUP makes the server present another certificate, a new page is
// refused with a certificate error.
//
//   node test/browser/tls.test.js
//
// Prints "ok - name" / "not ok - name" and ends with "N passed, N failed";
// exits 1 on any failure. Bounded to 60 s.
'use strict';
const fs = require('fs');
const path = require('path');
const {
  assert, assertEqual, test, stopServer, startApp, launchBrowser, openPage, run, delay,
} = require('./harness');
const { makeCA } = require('../interop/tls_certs');

run(async () => {
  const ca = makeCA();
  const one = ca.issue('one'), two = ca.issue('two');
  const served = { cert: path.join(ca.dir, 'served.crt'), key: path.join(ca.dir, 'served.key') };
  fs.copyFileSync(one.cert, served.cert);
  fs.copyFileSync(one.key, served.key);
  const A = await startApp('A', 0, { TLS_CERT: served.cert, TLS_KEY: served.key });
  const browser = await launchBrowser([`--ignore-certificate-errors-spki-list=${one.spki}`]);
  try {
    assert(A.url.startsWith('https://'), `listening line says https: ${A.url}`);
    const origin = new URL(A.url).origin;

    await test('a page loaded over https exchanges messages over wss', async () => {
      const page = await openPage(browser, origin + '/page');
      assertEqual(await page.evaluate(() => location.protocol), 'https:', 'page protocol');
      await page.evaluate(([e, d]) => T.start(e, d), ['/faye', []]);
      const r = await page.evaluate((ch) => T.basic(ch), '/tls/ws');
      assertEqual(r.got, [{ n: 1, text: 'hello' }], 'data received once');
      assertEqual(r.types, ['websocket'], 'connection types');
      assert(page.net.websockets.length >= 1 && page.net.websockets.every((u) => u.startsWith('wss://')),
             `a wss:// socket (${JSON.stringify(page.net.websockets)})`);
      assertEqual(page.net.consoleErrors, [], 'no page errors');
      await page.close();
    });

    await test('EventSource over TLS', async () => {
      const page = await openPage(browser, origin + '/page');
      await page.evaluate(([e, d]) => T.start(e, d), ['/faye', ['websocket']]);
      const r = await page.evaluate((ch) => T.basic(ch), '/tls/es');
      assertEqual(r.got, [{ n: 1, text: 'hello' }], 'data received once');
      assertEqual(r.types, ['eventsource'], 'connection types');
      assert(page.net.eventsource.length >= 1 && page.net.eventsource.every((u) => u.startsWith('https://')),
             `an https EventSource (${JSON.stringify(page.net.eventsource)})`);
      await page.close();
    });

    await test('after SIGHUP the new, unpinned certificate is refused by a new page', async () => {
      fs.copyFileSync(two.cert, served.cert);
      fs.copyFileSync(two.key, served.key);
      A.child.kill('SIGHUP');
      for (let i = 0; i < 100 && !/tls: reloaded/.test(A.log); i++) await delay(50);
      assert(/tls: reloaded/.test(A.log), 'the server logged the reload');
      const page = await browser.newPage();
      let err = null;
      try {
        await page.goto(origin + '/page');
      } catch (e) { err = e; }
      assert(err && /ERR_CERT/.test(err.message), `a certificate error, got ${err && err.message}`);
      await page.close();
    });
  } finally {
    await browser.close();
    await stopServer(A);
    ca.remove();
  }
}, 60000);
