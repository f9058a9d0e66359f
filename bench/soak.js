#!/usr/bin/env node
// bench/soak.js - `make soak`: a bounded load over every transport, with
// sequence-numbered messages counted exactly at every receiver.
//
//   node bench/soak.js [--secs S] [--clients N] [--quick]
//
// Default: 600 s, 5,000 clients. --quick (make test's `soak` suite): 60 s,
// 400 clients. The clients, sharing one bayeux server (bin/bayeux serve):
//
//   55 %  WebSocket subscribers      bench/bxload.c (fanout, --transport ws)
//   40 %  long-polling subscribers   bench/bxload.c (fanout, --transport lp)
//          each run has its own WebSocket publishers at a fixed rate over 50
//          rooms; every message carries its number and every delivery is
//          checked against a bitmap per subscriber (lost, duplicated, sent
//          to the wrong subscriber)
//   2.5 % EventSource subscribers    (below, in Node)
//   2.5 % callback-polling (JSONP)  subscribers, half of them cross-origin
//          (an Origin header, CORS answers); all on /soak/side, where this
//          script publishes message 1, 2, 3, ... over HTTP and each
//          receiver checks it gets every number exactly once
//
// The server's RSS is sampled throughout. The result: lost, duplicated and
// errors per part (all must be 0: no client is meant to drop), the RSS
// series, and, for a full run (not --quick), whether memory stayed flat
// (the mean of the last quarter of the run within 10 % + 8 MiB of the
// second quarter's). No timing threshold: a slow machine only makes the
// run's deliveries later, and every wait is bounded generously.
// Ends with "N passed, N failed" (one per check), exit status 0 if none
// failed.
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');
const { root, start, stop, sleep } = require('./lib');

const BXLOAD = path.join(root, 'build', 'bench', 'bxload');
const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
function arg(name, def) {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : def;
}
const SECS = arg('--secs', quick ? 60 : 600);
const CLIENTS = arg('--clients', quick ? 400 : 5000);
const N_WS = Math.round(CLIENTS * 0.55);
const N_LP = Math.round(CLIENTS * 0.40);
const N_SIDE = Math.max(4, CLIENTS - N_WS - N_LP);
const N_ES = Math.floor(N_SIDE / 2);
const N_JSONP = N_SIDE - N_ES;
const SIDE_RATE = 2;            // side messages per second
const DRAIN_S = 120;            // the longest wait for the last deliveries
const SETUP_S = 600;            // the longest set-up of the generators

let passed = 0;
let failed = 0;
function check(ok, what) {
  console.log(`${ok ? 'ok' : 'not ok'} - ${what}`);
  if (ok) passed++; else failed++;
}

function rss(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
    return m ? Number(m[1]) * 1024 : NaN;
  } catch (e) {
    return NaN;
  }
}

// ---- the C generator ----

function bxload(port, pid, args) {
  return new Promise((resolve) => {
    const a = ['--port', String(port), '--mount', '/faye', '--pid', String(pid), ...args];
    const child = spawn(BXLOAD, a, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code, sig) => {
      const m = out.match(/^RESULT (.*)$/m);
      if (!m) resolve({ ok: false, fail: `bxload exited ${sig || code}: ${err.trim()}` });
      else resolve(JSON.parse(m[1]));
    });
  });
}

// ---- HTTP helpers for the side clients ----

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

function request(port, method, p, headers, body, timeoutMs) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, agent },
      (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { data += d; });
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
        res.on('error', reject);
      });
    req.setTimeout(timeoutMs || 120000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

function post(port, msgs, extra) {
  const body = JSON.stringify(msgs);
  return request(port, 'POST', '/faye', Object.assign({
    'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body),
  }, extra || {}), body).then((r) => {
    if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.body}`);
    return JSON.parse(r.body);
  });
}

// A receiver of /soak/side: counts every number it gets.
class Side {
  constructor(kind, i) {
    this.kind = kind;
    this.name = `${kind}${i}`;
    this.got = new Map();       // number -> times
    this.errors = 0;
    this.dropped = false;       // its connection failed: not counted
    this.done = false;
  }

  take(msgs) {
    for (const m of msgs) {
      if (m.channel === '/soak/side' && m.data && typeof m.data.n === 'number') {
        this.got.set(m.data.n, (this.got.get(m.data.n) || 0) + 1);
      } else if (m.successful === false) {
        this.errors++;
      }
    }
  }
}

async function handshakeSubscribe(port, c, headers) {
  const hs = await post(port, [{ channel: '/meta/handshake', version: '1.0',
    supportedConnectionTypes: ['long-polling', 'callback-polling', 'eventsource'] }], headers);
  c.id = hs[0].clientId;
  const sub = await post(port, [{ channel: '/meta/subscribe', clientId: c.id,
    subscription: '/soak/side' }], headers);
  if (!sub[0].successful) throw new Error(`subscribe: ${JSON.stringify(sub)}`);
}

// EventSource: one stream per client; data lines carry JSON arrays.
function runEventSource(port, c) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: `/faye/${c.id}`,
      headers: { Accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) {
        c.dropped = true;
        c.errors++;
        res.resume();
        resolve();
        return;
      }
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).replace(/\r$/, '');
          buf = buf.slice(i + 1);
          if (line.startsWith('data: ')) {
            try {
              c.take(JSON.parse(line.slice(6)));
            } catch (e) {
              c.errors++;
            }
          }
        }
      });
      const over = () => { if (!c.done) c.dropped = true; resolve(); };
      res.on('end', over);
      res.on('error', over);
      res.on('close', over);
    });
    req.on('error', () => { if (!c.done) c.dropped = true; resolve(); });
    c.stream = req;
  });
}

// An EventSource client's connects: they keep its session alive (the stream
// alone does not), answered at once with connectionType eventsource.
async function esConnects(port, c) {
  while (!c.done && !c.dropped) {
    try {
      const r = await post(port, [{ channel: '/meta/connect', clientId: c.id,
        connectionType: 'eventsource' }]);
      c.take(r);
      if (!r[0].successful) c.dropped = true;
    } catch (e) {
      if (!c.done) c.dropped = true;
    }
    for (let i = 0; i < 50 && !c.done; i++) await sleep(200);
  }
}

// Callback-polling: GET with message= and jsonp=, one held connect at a time.
async function runJsonp(port, c, headers, until) {
  let n = 0;
  while (!c.done && Date.now() < until) {
    const msg = JSON.stringify([{ channel: '/meta/connect', clientId: c.id,
      connectionType: 'callback-polling', id: String(++n) }]);
    const p = `/faye?message=${encodeURIComponent(msg)}&jsonp=cb${c.name}`;
    let r;
    try {
      r = await request(port, 'GET', p, headers);
    } catch (e) {
      if (!c.done) c.dropped = true;    // else: ended by the script
      return;
    }
    const m = r.body.match(/^\/\*\*\/[\w$.]+\(([\s\S]*)\);$/);
    if (r.status !== 200 || !m) {
      c.errors++;
      c.dropped = true;
      return;
    }
    const replies = JSON.parse(m[1]);
    c.take(replies);
    const connect = replies.find((x) => x.channel === '/meta/connect');
    if (!connect || !connect.successful) {
      c.errors++;
      c.dropped = true;
      return;
    }
  }
}

async function main() {
  if (!fs.existsSync(BXLOAD)) {
    console.log('not ok - build/bench/bxload missing (make build-bench)');
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  const srv = await start('lua5.4', ['bin/bayeux', 'serve', '--port', '0', '--mount', '/faye',
    '--timeout', '30', '--max-conns', String(CLIENTS * 2 + 1000)]);
  const port = srv.port;
  console.log(`# soak: ${SECS} s, ${CLIENTS} clients (WebSocket ${N_WS}, long-polling ${N_LP}, ` +
    `EventSource ${N_ES}, callback-polling ${N_JSONP}) on port ${port}, server pid ${srv.pid}`);

  const samples = [];
  const t0 = Date.now();
  const sampleEvery = Math.max(1000, (SECS * 1000) / 60);
  const sampler = setInterval(() => {
    samples.push({ t: (Date.now() - t0) / 1000, rss: rss(srv.pid) });
  }, sampleEvery);

  // the side receivers first (the generators take a while to set up)
  const side = [];
  for (let i = 0; i < N_ES; i++) side.push(new Side('es', i));
  for (let i = 0; i < N_JSONP; i++) side.push(new Side('jsonp', i));
  const origin = (c) => (c.kind === 'jsonp' && Number(c.name.slice(5)) % 2
    ? { Origin: 'https://elsewhere.example' } : {});
  for (const c of side) {
    try {
      await handshakeSubscribe(port, c, origin(c));
    } catch (e) {
      c.errors++;
      c.dropped = true;
    }
  }
  const until = Date.now() + (SECS + DRAIN_S) * 1000;
  const loops = side.filter((c) => !c.dropped).map((c) => (c.kind === 'es'
    ? Promise.all([runEventSource(port, c), esConnects(port, c)])
    : runJsonp(port, c, origin(c), until)));

  // each generator publishes at its rate for SECS once set up
  const common = ['--rooms', '50', '--per', '1', '--pubs', '2', '--size', '40',
    '--secs', String(SECS), '--drain', String(DRAIN_S), '--setup', String(SETUP_S),
    '--parallel', '50'];
  const wsRun = bxload(port, srv.pid, ['--transport', 'ws', '--channel', '/soak/ws',
    '--subs', String(N_WS),
    '--rate', '10', '--msgs', String(10 * SECS + 100), ...common]);
  const lpRun = bxload(port, srv.pid, ['--transport', 'lp', '--channel', '/soak/lp',
    '--subs', String(N_LP),
    '--rate', '5', '--msgs', String(5 * SECS + 100), ...common]);

  // the side publisher: numbers 1..n, one HTTP publish each
  let sent = 0;
  let pubErrors = 0;
  const pubEnd = Date.now() + SECS * 1000;
  while (Date.now() < pubEnd) {
    const next = t0 + (sent + 1) * (1000 / SIDE_RATE);
    if (next > Date.now()) await sleep(next - Date.now());
    try {
      const r = await post(port, [{ channel: '/soak/side', data: { n: sent + 1 } }]);
      if (r[0].successful) sent++; else pubErrors++;
    } catch (e) {
      pubErrors++;
    }
  }
  // wait (bounded) until every side receiver has every number
  const drainEnd = Date.now() + DRAIN_S * 1000;
  const complete = (c) => c.dropped || c.got.size >= sent;
  while (Date.now() < drainEnd && !side.every(complete)) await sleep(200);
  for (const c of side) {
    c.done = true;
    if (c.stream) c.stream.destroy();
  }
  agent.destroy();              // held callback-polling connects end now

  const [ws, lp] = await Promise.all([wsRun, lpRun]);
  clearInterval(sampler);
  samples.push({ t: (Date.now() - t0) / 1000, rss: rss(srv.pid) });
  await Promise.race([Promise.all(loops), sleep(10000)]);
  await stop(srv);

  // ---- report ----
  for (const [name, r] of [['WebSocket', ws], ['long-polling', lp]]) {
    console.log(`# ${name}: ${r.ready || 0} of ${r.subs || 0} subscribers, ${r.msgs || 0} messages, ` +
      `${r.deliveries || 0} deliveries of ${r.expected || 0} expected, lost ${r.missing}, ` +
      `duplicated ${r.dup}, wrong ${r.wrong}, errors ${r.errors}, connection errors ` +
      `${r.conn_errors}${r.fail ? `, ${r.fail}` : ''}`);
    // ready counts the two publishers too
    check(r.ready === r.subs + 2 && r.msgs > 0, `${name}: every subscriber set up, messages sent`);
    check(r.missing === 0 && r.dup === 0 && r.wrong === 0,
      `${name}: nothing lost, duplicated or misdelivered`);
    check(r.errors === 0 && r.conn_errors === 0 && !r.fail, `${name}: no errors`);
  }
  for (const kind of ['es', 'jsonp']) {
    const cs = side.filter((c) => c.kind === kind);
    const stayed = cs.filter((c) => !c.dropped);
    let lost = 0;
    let dup = 0;
    let errors = 0;
    for (const c of cs) errors += c.errors;
    for (const c of stayed) {
      for (let n = 1; n <= sent; n++) {
        const k = c.got.get(n) || 0;
        if (k === 0) lost++;
        if (k > 1) dup += k - 1;
      }
    }
    const name = kind === 'es' ? 'EventSource' : 'callback-polling';
    console.log(`# ${name}: ${stayed.length} of ${cs.length} stayed connected, ${sent} messages ` +
      `each, lost ${lost}, duplicated ${dup}, errors ${errors}`);
    check(stayed.length === cs.length, `${name}: every client stayed connected`);
    check(lost === 0 && dup === 0, `${name}: nothing lost or duplicated`);
    check(errors === 0, `${name}: no errors`);
  }
  check(sent > 0 && pubErrors === 0, `side publisher: ${sent} publishes, ${pubErrors} errors`);

  const mb = (b) => (b / 1048576).toFixed(1);
  console.log(`# server RSS (MiB) every ${(sampleEvery / 1000).toFixed(0)} s: ` +
    samples.map((s) => mb(s.rss)).join(' '));
  if (!quick) {
    const q = Math.floor(samples.length / 4);
    const mean = (xs) => xs.reduce((a, s) => a + s.rss, 0) / xs.length;
    const second = mean(samples.slice(q, 2 * q));
    const last = mean(samples.slice(3 * q));
    check(q > 0 && last <= second * 1.10 + 8 * 1048576,
      `server RSS flat: second quarter ${mb(second)} MiB, last quarter ${mb(last)} MiB`);
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.log(`not ok - soak: ${e.stack || e}`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
