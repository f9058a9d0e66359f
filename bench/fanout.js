// bench/fanout.js - long-polling fan-out, bayeux beside Node faye in one run.
//
// For each server: SUBS clients handshake, subscribe to /bench and keep a
// long-poll open (raw HTTP, keep-alive). One publisher then sends MSGS
// messages in batches of BATCH per POST. We time until every subscriber has
// every message and print deliveries per second, plus the ratio.
//
//   node bench/fanout.js            (make bench runs it)
//   SUBS=500 MSGS=200 node bench/fanout.js
//   ONLY=bayeux node bench/fanout.js   (skip Faye; every bench/*.js takes it)
'use strict';
const http = require('http');
const path = require('path');
const { spawn } = require('child_process');
const { report, ratioText } = require('./lib');

const SUBS = +process.env.SUBS || 500;
const MSGS = +process.env.MSGS || 1000;
const BATCH = +process.env.BATCH || 100;
const LIMIT_MS = 60000;
const root = path.join(__dirname, '..');

function start(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const t = setTimeout(() => reject(new Error('server did not start')), 10000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/[^:]+:(\d+)(\/\S*)/);
      if (m) { clearTimeout(t); resolve({ child, port: +m[1], mount: m[2] }); }
    });
    child.on('exit', (code) => reject(new Error('server exited ' + code)));
  });
}

// CPU seconds a process has used (user + system), from /proc.
function cpuSeconds(pid) {
  const f = require('fs').readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (+fields[11] + +fields[12]) / 100;     // utime, stime in clock ticks
}

// Counts deliveries without parsing: the load generator must stay cheaper
// than the servers it measures.
function countDeliveries(text) {
  let n = 0, i = -1;
  while ((i = text.indexOf('"channel":"/bench"', i + 1)) !== -1) n++;
  return n;
}

function postRaw(agent, port, mount, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port, path: mount, method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } },
      (res) => {
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (buf += c));
        res.on('end', () => resolve(buf));
      });
    req.on('error', reject);
    req.end(data);
  });
}

function post(agent, port, mount, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request({ host: '127.0.0.1', port, path: mount, method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } },
      (res) => {
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (buf += c));
        res.on('end', () => { try { resolve(JSON.parse(buf)); } catch (e) { reject(e); } });
      });
    req.on('error', reject);
    req.end(data);
  });
}

async function run(name, srv) {
  const { port, mount } = srv;
  const agent = new http.Agent({ keepAlive: true, maxSockets: SUBS + 8 });
  let received = 0, stop = false, resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  const total = SUBS * MSGS;

  async function subscriber() {
    const hs = await post(agent, port, mount, [{ channel: '/meta/handshake', version: '1.0',
      supportedConnectionTypes: ['long-polling'] }]);
    const id = hs[0].clientId;
    await post(agent, port, mount, [{ channel: '/meta/subscribe', clientId: id, subscription: '/bench' },
      { channel: '/meta/connect', clientId: id, connectionType: 'long-polling', advice: { timeout: 0 } }]);
    return async function loop() {
      while (!stop) {
        const text = await postRaw(agent, port, mount, [{ channel: '/meta/connect', clientId: id,
          connectionType: 'long-polling' }]);
        received += countDeliveries(text);
        if (received >= total) resolveDone();
      }
    };
  }

  const loops = [];
  for (let i = 0; i < SUBS; i++) loops.push(await subscriber());
  const running = loops.map((l) => l().catch(() => {}));
  await new Promise((r) => setTimeout(r, 300));     // let every connect be held

  const cpu0 = cpuSeconds(srv.child.pid);
  const t0 = process.hrtime.bigint();
  const pub = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (let n = 0; n < MSGS; n += BATCH) {
    const batch = [];
    for (let k = n; k < Math.min(MSGS, n + BATCH); k++)
      batch.push({ channel: '/bench', data: { n: k, text: 'x'.repeat(80) } });
    await post(pub, port, mount, batch);
  }
  const timer = setTimeout(() => resolveDone(), LIMIT_MS);
  await done;
  clearTimeout(timer);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = Math.max(cpuSeconds(srv.child.pid) - cpu0, 0.01);
  stop = true;
  // The server's own CPU time is the fair measure: on 2 cores the load
  // generator competes with it, so wall time mostly measures the generator.
  const rate = received / cpu;
  console.log(`${name.padEnd(8)} ${SUBS} subscribers x ${MSGS} messages: ` +
    `${received} deliveries in ${secs.toFixed(2)} s wall, server CPU ${cpu.toFixed(2)} s = ` +
    `${Math.round(rate)} deliveries per server CPU second` +
    (received < total ? ` (INCOMPLETE: ${received}/${total})` : ''));
  srv.child.kill('SIGTERM');
  agent.destroy();
  pub.destroy();
  await Promise.race([Promise.all(running), new Promise((r) => setTimeout(r, 2000))]);
  return rate;
}

(async () => {
  console.log('long-polling fan-out (one core each, loopback)');
  const ours = await run('bayeux', await start('lua5.4',
    ['bin/bayeux', 'serve', '--port', '0', '--mount', '/faye', '--timeout', '30']));
  if (process.env.ONLY === 'bayeux') process.exit(0);
  const faye = await run('faye', await start('node',
    ['test/interop/faye-ref-server.js', '--port', '0', '--mount', '/faye', '--timeout', '30']));
  console.log(`bayeux / faye = ${(ours / faye).toFixed(1)}x deliveries per server CPU second`);
  report({ measure: `long-polling fan-out, ${SUBS} subscribers`, unit: 'deliveries/server CPU s',
    a: ['bayeux', ours], b: ['faye', faye], ratio: ratioText(ours, faye) });
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
