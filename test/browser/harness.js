// test/browser/harness.js - what the browser test files share: the TAP-like
// runner ("ok - name" / "not ok - name", then "N passed, N failed"), server
// child processes, HTTP helpers and headless Chromium pages.
//
//   const h = require('./harness');
//   h.run(async () => { await h.test('name', async () => { ... }); }, 100000);
//
// Not a test file itself (tools/test.sh runs test/browser/*.test.js).
'use strict';
const http = require('http');
const path = require('path');
const { spawn } = require('child_process');

const { ROOT, NODE_MODULES } = require('../interop/harness');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SERVER_TIMEOUT = 3;        // seconds a /meta/connect is held by the test app
const START_MS = 10000;
const TEST_MS = 20000;

let passed = 0, failed = 0;
const children = new Set();

function note(text) {
  console.log('# ' + text);
}

const { delay, withTimeout, assert, assertEqual } = require('../interop/harness');

// Runs one test; several may run at once (Promise.all).
async function test(name, fn, ms = TEST_MS) {
  try {
    await withTimeout(fn(), ms, name);
    passed++;
    console.log(`ok - ${name}`);
  } catch (err) {
    failed++;
    console.log(`not ok - ${name}`);
    for (const line of String(err && err.stack || err).split('\n').slice(0, 6)) console.log(`#   ${line}`);
  }
}

// ---------------------------------------------------------------- servers

// Starts `argv` (from the repository root) and resolves with a handle once
// it prints "bayeux: listening on <url>"; handle.url is that URL.
function startServer(name, argv, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: Object.assign({}, process.env, env || {}),
    });
    children.add(child);
    let out = '', done = false;
    const handle = { name, child, log: '', url: null, exited: false };
    const timer = setTimeout(() => {
      if (!done) { done = true; reject(new Error(`${name}: no listening line within ${START_MS} ms\n${handle.log}`)); }
    }, START_MS);
    child.stdout.on('data', (d) => {
      out += d;
      handle.log += d;
      const m = /bayeux: listening on (https?:\/\/\S+)/.exec(out);
      if (m && !done) {
        done = true;
        clearTimeout(timer);
        handle.url = m[1];
        resolve(handle);
      }
    });
    child.stderr.on('data', (d) => { handle.log += d; });
    child.on('error', (err) => {
      if (!done) { done = true; clearTimeout(timer); reject(err); }
    });
    child.on('exit', (code, signal) => {
      handle.exited = true;
      children.delete(child);
      if (!done) {
        done = true;
        clearTimeout(timer);
        reject(new Error(`${name} exited (code ${code}, signal ${signal}) before listening\n${handle.log}`));
      }
    });
  });
}

function stopServer(handle, ms = 5000) {
  if (!handle || handle.exited) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => handle.child.kill('SIGKILL'), ms);
    handle.child.once('exit', () => { clearTimeout(timer); resolve(); });
    handle.child.kill('SIGTERM');
  });
}

// test/browser/app.lua on `port` (0: any free port).
// `env`: more environment (TLS_CERT and TLS_KEY for HTTPS).
function startApp(name, port, env) {
  return startServer(name, ['lua5.4', 'bin/bayeux', 'test/browser/app.lua'],
                     Object.assign({ PORT: String(port), TIMEOUT: String(SERVER_TIMEOUT) }, env || {}));
}

function request(method, url, headers, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: headers || {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.setTimeout(3000, () => req.destroy(new Error(`${method} ${url} timed out`)));
    req.end(body);
  });
}

function get(url, headers) {
  return request('GET', url, headers);
}

async function getJSON(url) {
  const r = await get(url);
  if (r.status !== 200) throw new Error(`GET ${url}: ${r.status} ${r.body}`);
  return JSON.parse(r.body);
}

async function postJSON(url) {
  const r = await request('POST', url);
  if (r.status !== 200) throw new Error(`POST ${url}: ${r.status} ${r.body}`);
  return JSON.parse(r.body);
}

// Does the server take WebSocket upgrades / EventSource streams on `base`?
function supportsWebSocket(base) {
  const WebSocket = require(path.join(NODE_MODULES, 'ws'));
  return new Promise((resolve) => {
    const ws = new WebSocket(base.replace(/^http/, 'ws'));
    const timer = setTimeout(() => { ws.terminate(); resolve(false); }, 3000);
    ws.on('open', () => { clearTimeout(timer); ws.close(); resolve(true); });
    ws.on('error', () => { clearTimeout(timer); resolve(false); });
  });
}

function supportsEventSource(base) {
  return new Promise((resolve) => {
    const req = http.get(base + '/probe', { headers: { Accept: 'text/event-stream' } }, (res) => {
      resolve(res.statusCode === 200 && /^text\/event-stream/.test(res.headers['content-type'] || ''));
      req.destroy();
    });
    req.on('error', () => resolve(false));
    req.setTimeout(3000, () => { req.destroy(); resolve(false); });
  });
}

// A port nothing listens on (just now).
function freePort() {
  const net = require('net');
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ------------------------------------------------------------------ pages

// What a page settles on when `wanted` is forced and the server lacks some
// streaming transports.
function expectedTransport(wanted, support) {
  if (wanted === 'websocket' && !support.websocket)
    return support.eventsource ? 'eventsource' : 'long-polling';
  if (wanted === 'eventsource' && !support.eventsource) return 'long-polling';
  return wanted;
}


// `extraArgs`: more Chromium switches (tls.test.js pins a certificate).
function launchBrowser(extraArgs) {
  const { chromium } = require(path.join(NODE_MODULES, 'playwright-core'));
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
           '--disable-component-update', '--disable-sync', '--disable-quic',
           // pages that page.route() serves count as "public": without this,
           // Chromium blocks their WebSockets to 127.0.0.1
           '--disable-features=LocalNetworkAccessChecks'].concat(extraArgs || []),
  });
}

// Opens `url` in a new page (its own browser context) and records what it
// does on the network in page.net: websockets (URLs), frames (WebSocket
// frames sent), eventsource, xhr ("METHOD url"), posts ({ url, body, t }),
// jsonp (script URLs with ?message=), headers (of each XHR), failed
// ({ url, method, body, t }), consoleErrors.
// `routes` ({ pathname: { type, body } }) are served by page.route();
// `ready` (a function run in the page) is waited for.
async function openPage(browser, url, opts) {
  opts = opts || {};
  const page = await browser.newPage();
  const net = { websockets: [], frames: [], eventsource: [], xhr: [], posts: [], jsonp: [], headers: [],
                failed: [], consoleErrors: [] };
  page.net = net;
  page.on('websocket', (ws) => {
    net.websockets.push(ws.url());
    ws.on('framesent', (f) => net.frames.push(f.payload));
  });
  page.on('request', (req) => {
    const type = req.resourceType();
    const u = req.url();
    if (type === 'eventsource') net.eventsource.push(u);
    else if (type === 'xhr' || type === 'fetch') {
      net.xhr.push(req.method() + ' ' + u);
      net.headers.push(req.headers());
      if (req.method() === 'POST') net.posts.push({ url: u, body: req.postData(), t: Date.now() });
    }
    else if (type === 'script' && /[?&]message=/.test(u)) net.jsonp.push(u);
  });
  page.on('requestfailed', (req) => net.failed.push({ url: req.url(), method: req.method(), t: Date.now(),
                                                       body: req.postData() }));
  page.on('pageerror', (err) => net.consoleErrors.push(String(err)));
  const routes = opts.routes;
  if (routes) await page.route((u) => routes[u.pathname] !== undefined, (route) => {
    const r = routes[new URL(route.request().url()).pathname];
    route.fulfill({ status: 200, contentType: r.type, body: r.body });
  });
  await page.goto(url);
  if (opts.ready !== null) {
    await page.waitForFunction(opts.ready || (() => window.testReady && (window.Faye || window.clientError)),
                               null, { timeout: 5000 });
    const loadError = await page.evaluate(() => window.clientError || null);
    if (loadError) throw new Error(loadError);
  }
  return page;
}

// The Bayeux messages of a POST body (JSON, or a form's message=).
function postedMessages(body) {
  if (!body) return [];
  let text = body;
  if (/^message=/.test(body)) text = decodeURIComponent(body.slice(8).replace(/\+/g, ' '));
  try {
    const v = JSON.parse(text);
    return Array.isArray(v) ? v : [v];
  } catch (e) {
    return [];
  }
}

// The Bayeux messages of a JSONP script URL.
function jsonpMessages(url) {
  const m = new URL(url).searchParams.get('message');
  return m ? postedMessages(m) : [];
}

// Every Bayeux message a page sent: POST bodies, JSONP URLs, WebSocket frames.
function sentMessages(page) {
  const net = page.net;
  return [].concat(
    ...net.posts.map((p) => postedMessages(p.body)),
    ...net.jsonp.map(jsonpMessages),
    ...net.frames.map((f) => postedMessages(typeof f === 'string' ? f : String(f))));
}

// The connectionTypes of the /meta/connect messages a page sent, each once.
function connectTypes(page) {
  const types = [];
  for (const m of sentMessages(page))
    if (m && m.channel === '/meta/connect' && !types.includes(m.connectionType)) types.push(m.connectionType);
  return types;
}

// Runs the functions of `tasks`, `n` at a time, in order.
async function pool(tasks, n) {
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) await tasks[next++]();
  };
  await Promise.all(Array.from({ length: n }, worker));
}

// ------------------------------------------------------------------- run

// Runs `main`, bounded to `fileMs`; prints "N passed, N failed" and exits
// (1 on any failure), killing every server child left.
function run(main, fileMs) {
  const finish = () => {
    clearTimeout(fileTimer);
    for (const c of children) c.kill('SIGKILL');
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  };
  const fileTimer = setTimeout(() => {
    console.log(`not ok - the whole file took more than ${fileMs} ms`);
    failed++;
    finish();
  }, fileMs);
  main().then(finish, (err) => {
    failed++;
    console.log('not ok - setup');
    for (const line of String(err && err.stack || err).split('\n').slice(0, 8)) console.log(`#   ${line}`);
    finish();
  });
}

module.exports = {
  ROOT, NODE_MODULES, SERVER_TIMEOUT,
  note, delay, withTimeout, assert, assertEqual, test,
  startServer, stopServer, startApp, request, get, getJSON, postJSON,
  supportsWebSocket, supportsEventSource, expectedTransport, freePort,
  launchBrowser, openPage, postedMessages, jsonpMessages, sentMessages, connectTypes, pool, run,
};
