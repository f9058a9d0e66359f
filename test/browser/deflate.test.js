#!/usr/bin/env node
// test/browser/deflate.test.js - Chromium's WebSocket offers
// permessage-deflate: bayeux (test/browser/app.lua) accepts it, and a
// large delivery reaches the page intact having crossed the wire
// compressed. The page's socket goes through a counting TCP proxy, so the
// bytes the server sent are measured, not assumed. The bayeux browser
// client's own socket negotiates it too.
//
//   node test/browser/deflate.test.js
//
// Prints "ok - name" / "not ok - name" and ends with "N passed, N failed";
// exits 1 on any failure. Bounded to 60 s.
'use strict';
const net = require('net');
const { assert, assertEqual, test, startApp, stopServer, launchBrowser, openPage, run } = require('./harness');

// A TCP proxy to `port` counting the bytes the server sends back.
function proxy(port) {
  return new Promise((resolve) => {
    const p = { fromServer: 0, port: 0, server: null, socks: [] };
    p.server = net.createServer((c) => {
      const s = net.connect(port, '127.0.0.1');
      p.socks.push(c, s);
      s.on('data', (d) => { p.fromServer += d.length; });
      c.pipe(s);
      s.pipe(c);
      c.on('error', () => s.destroy());
      s.on('error', () => c.destroy());
    });
    p.server.listen(0, '127.0.0.1', () => { p.port = p.server.address().port; resolve(p); });
  });
}

const TEXT_LEN = 100000;

async function main() {
  const A = await startApp('A', 0);
  const prox = await proxy(+new URL(A.url).port);
  const browser = await launchBrowser();
  try {
    await test('a page socket negotiates permessage-deflate; a large delivery arrives intact, compressed on the wire', async () => {
      const page = await openPage(browser, A.url.replace(/\/faye$/, '/page'));
      const r = await page.evaluate(async ([port, n]) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/faye`);
        const got = [];
        let wake = null;
        ws.onmessage = (e) => { for (const m of JSON.parse(e.data)) got.push(m); if (wake) wake(); };
        await new Promise((ok, ko) => { ws.onopen = ok; ws.onerror = ko; });
        const reply = async (pred) => {
          for (let i = 0; i < 200; i++) {
            const m = got.find(pred);
            if (m) return m;
            await new Promise((ok) => { wake = ok; setTimeout(ok, 50); });
          }
          throw new Error('no reply: ' + JSON.stringify(got));
        };
        ws.send(JSON.stringify([{ channel: '/meta/handshake', version: '1.0', supportedConnectionTypes: ['websocket'], id: '1' }]));
        const id = (await reply((m) => m.id === '1')).clientId;
        ws.send(JSON.stringify([{ channel: '/meta/subscribe', clientId: id, subscription: '/big', id: '2' }]));
        await reply((m) => m.id === '2');
        ws.send(JSON.stringify([{ channel: '/meta/connect', clientId: id, connectionType: 'websocket', id: '3' }]));
        // repetitive, as JSON is: it compresses
        const text = 'abcdefghij'.repeat(n / 10);
        ws.send(JSON.stringify([{ channel: '/big', clientId: id, data: { text }, id: '4' }]));
        const d = await reply((m) => m.channel === '/big' && m.data);
        const ext = ws.extensions;
        ws.close();
        return { ext, intact: d.data.text === text };
      }, [prox.port, TEXT_LEN]);
      assert(/^permessage-deflate/.test(r.ext), `WebSocket.extensions: ${JSON.stringify(r.ext)}`);
      assert(r.intact, 'the delivery arrived intact');
      // the delivery alone is over 100 KB uncompressed
      assert(prox.fromServer < TEXT_LEN / 4, `bytes from the server: ${prox.fromServer}`);
      await page.close();
    });

    await test("the bayeux client's socket in Chromium negotiates permessage-deflate", async () => {
      const page = await openPage(browser, A.url.replace(/\/faye$/, '/page'));
      const cdp = await page.context().newCDPSession(page);
      await cdp.send('Network.enable');
      const answers = [];
      cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
        const h = e.response.headers;
        answers.push(h['Sec-WebSocket-Extensions'] || h['sec-websocket-extensions'] || '');
      });
      await page.evaluate(() => T.start('/faye', []));
      const res = await page.evaluate(() => T.basic('/deflate/basic'));
      assertEqual(res.got, [{ n: 1, text: 'hello' }], 'data received once');
      assert(answers.length >= 1, 'a WebSocket handshake was seen');
      assert(/^permessage-deflate/.test(answers[0]), `Sec-WebSocket-Extensions: ${answers[0]}`);
      await page.close();
    });
  } finally {
    await browser.close();
    for (const s of prox.socks) s.destroy();
    prox.server.close();
    await stopServer(A);
  }
}

run(main, 60000);
