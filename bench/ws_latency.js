// bench/ws_latency.js - publish -> delivery latency at a steady, moderate
// load, bayeux beside Node faye in one run.
//
// For each server: SUBS WebSocket subscribers on /bench (set up as Faye's
// client does) and one WebSocket publisher sending RATE messages a second
// (~100 B, one per frame, on a timer) for SECS seconds. Each message carries
// its send time (process.hrtime, microseconds, the same clock in every
// process of the machine). PROBES of the subscribers, in this process beside
// the publisher, time every delivery by a substring search (no JSON
// parsing); the other SUBS - PROBES are the load, held by a child process
// that only counts what it gets (probes and load subscribe in turn). So the figures are the server's latency
// (a probe's socket is written anywhere in the server's pass over the
// subscribers) rather than the time one Node process takes to read a
// thousand sockets in turn. Prints p50, p99 and max over the probes'
// deliveries, and the server's CPU use.
//
//   node bench/ws_latency.js            (bench/run.sh runs it)
//   SUBS=1000 PROBES=50 RATE=20 SECS=5 node bench/ws_latency.js
'use strict';
const { fork } = require('child_process');
const B = require('./lib');

const SUBS = +process.env.SUBS || 1000;
const PROBES = Math.min(+process.env.PROBES || 50, SUBS);
const RATE = +process.env.RATE || 20;
const SECS = +process.env.SECS || 5;
const STAMP = Buffer.from('"t":');
const DELIVERY = Buffer.from('"channel":"/bench"');

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

// The child: holds `n` subscribers on `url` and counts deliveries.
function loadProcess() {
  let subs = [], received = 0;
  process.on('message', async (m) => {
    if (m.open) {
      const more = await B.openMany(m.n, 50, (i) => new B.WsClient(m.url, m.first + i).subscribe('/bench'));
      for (const c of more) c.onData = (buf) => { received += B.count(buf, DELIVERY); };
      subs = subs.concat(more);
      process.send({ ready: true });
    } else if (m.count) {
      process.send({ received });
    } else if (m.close) {
      subs.forEach((c) => c.close());
      process.exit(0);
    }
  });
}

function ask(child, msg, key) {
  return new Promise((resolve) => {
    const on = (m) => { if (key in m) { child.removeListener('message', on); resolve(m); } };
    child.on('message', on);
    child.send(msg);
  });
}

async function run(name) {
  const srv = await B.startServer(name);
  const samples = new Float64Array(PROBES * Math.ceil(RATE * SECS + 10));
  let n = 0, measuring = false;

  // probes and load subscribe in turn, so that a server delivering in
  // subscription order reaches the probes all along its pass, not first
  const load = fork(__filename, [], { env: { ...process.env, BENCH_ROLE: 'load' } });
  const probes = [];
  let opened = 0;
  for (let p = 0; p < PROBES; p++) {
    const n = Math.round(((p + 1) * (SUBS - PROBES)) / (PROBES + 1)) - opened;
    await ask(load, { open: true, url: srv.url, n, first: PROBES + 1 + opened }, 'ready');
    opened += n;
    probes.push(await new B.WsClient(srv.url, p).subscribe('/bench'));
  }
  await ask(load, { open: true, url: srv.url, n: SUBS - PROBES - opened,
    first: PROBES + 1 + opened }, 'ready');
  for (const c of probes) {
    c.onData = (buf) => {
      if (!measuring) return;
      const now = nowUs();
      let i = -1;
      while ((i = buf.indexOf(STAMP, i + 1)) !== -1) {
        let t = 0, j = i + STAMP.length, d;
        while ((d = buf[j] - 48) >= 0 && d <= 9) { t = t * 10 + d; j++; }
        if (n < samples.length) samples[n++] = (now - t) / 1000;
      }
    };
  }
  const pub = await new B.WsClient(srv.url, PROBES).handshake();
  await B.sleep(500);

  const payload = 'x'.repeat(70);
  measuring = true;
  const { received: r0 } = await ask(load, { count: true }, 'received');
  const cpu0 = B.cpuSeconds(srv.pid);
  const t0 = Date.now();
  let sent = 0;
  await new Promise((resolve) => {
    const period = 1000 / RATE;
    const tick = () => {
      // steady rate: catch up on the schedule, never burst ahead of it
      while (sent < RATE * SECS && Date.now() - t0 >= sent * period) {
        pub.send([{ channel: '/bench', clientId: pub.id, data: { t: nowUs(), text: payload } }]);
        sent++;
      }
      if (sent >= RATE * SECS) resolve();
      else setTimeout(tick, Math.max(0, t0 + sent * period - Date.now()));
    };
    tick();
  });
  const secs = (Date.now() - t0) / 1000;
  const cpu = B.cpuSeconds(srv.pid) - cpu0;
  // the last deliveries (a server that fell behind gets 5 s to catch up)
  let others = 0;
  for (let w = 0; w < 50; w++) {
    others = (await ask(load, { count: true }, 'received')).received - r0;
    if (n >= sent * PROBES && others >= sent * (SUBS - PROBES)) break;
    await B.sleep(100);
  }
  measuring = false;
  const sorted = Array.from(samples.subarray(0, n)).sort((a, b) => a - b);
  const r = { p50: B.percentile(sorted, 50), p99: B.percentile(sorted, 99), max: sorted[n - 1] };
  console.log(`${name.padEnd(8)} ${SUBS} subscribers, ${RATE} messages/s for ${SECS} s: ` +
    `${n + others}/${sent * SUBS} deliveries; latency at ${PROBES} probes p50 ${r.p50.toFixed(2)} ms, ` +
    `p99 ${r.p99.toFixed(2)} ms, max ${r.max.toFixed(2)} ms; server CPU ${(100 * cpu / secs).toFixed(0)}%`);
  load.send({ close: true });
  for (const c of probes) c.close();
  pub.close();
  await new Promise((res) => load.on('exit', res));
  await B.stop(srv);
  return r;
}

if (process.env.BENCH_ROLE === 'load') {
  loadProcess();
} else {
  B.main(async () => {
    console.log(`publish -> delivery latency: ${SUBS} WebSocket subscribers, ` +
      `${RATE} messages/s (${SUBS * RATE} deliveries/s)`);
    const ours = await run('bayeux');
    if (process.env.ONLY === 'bayeux') return;
    const faye = await run('faye');
    for (const p of ['p50', 'p99']) {
      B.report({ measure: `latency ${p}, ${SUBS} WS subscribers at ${SUBS * RATE} deliveries/s`,
        unit: 'ms', a: ['bayeux', ours[p]], b: ['faye', faye[p]],
        ratio: B.ratioText(ours[p], faye[p], 'lower') });
    }
  });
}
