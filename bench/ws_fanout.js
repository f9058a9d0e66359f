// bench/ws_fanout.js - WebSocket fan-out, bayeux beside Node faye in one run.
//
// For each server: SUBS raw WebSocket clients (npm `ws`) handshake,
// /meta/connect with connectionType "websocket" and subscribe to /bench, as
// Faye's client does over a socket. One more WebSocket client publishes
// MSGS messages (~100 B each: {"n":k,"text":"x"*80}), BATCH per frame,
// without waiting for each acknowledgement: at most WINDOW messages not yet
// acknowledged and LAG per subscriber not yet delivered. We count
// deliveries by substring (no JSON parsing) until every subscriber has every
// message, and print deliveries per server CPU second (from
// /proc/<pid>/stat; the fair measure on a small machine where this load
// generator competes with the server) and per wall-clock second.
//
//   node bench/ws_fanout.js              (bench/run.sh runs it)
//   SUBS=1000 MSGS=1000 BATCH=1 WINDOW=20 LAG=50 node bench/ws_fanout.js
'use strict';
const B = require('./lib');

const SUBS = +process.env.SUBS || 1000;
const MSGS = +process.env.MSGS || 1000;
const BATCH = +process.env.BATCH || 1;
const WINDOW = +process.env.WINDOW || 20;
const LAG = +process.env.LAG || 50;
const LIMIT_MS = +process.env.LIMIT_MS || 90000;
const DELIVERY = Buffer.from('"channel":"/bench"');

async function run(name) {
  const srv = await B.startServer(name);
  let received = 0, acked = 0, wake = null;
  const total = SUBS * MSGS;
  const poke = () => { if (wake) wake(); };

  const subs = await B.openMany(SUBS, 50, (i) => new B.WsClient(srv.url, i).subscribe('/bench'));
  for (const c of subs) c.onData = (buf) => { received += B.count(buf, DELIVERY); poke(); };
  const pub = await new B.WsClient(srv.url, SUBS).handshake();
  pub.onData = (buf) => { acked += B.count(buf, DELIVERY); poke(); };
  await B.sleep(300);
  received = 0;

  const until = (cond) => new Promise((resolve) => {
    if (cond()) return resolve();
    wake = () => { if (cond()) { wake = null; resolve(); } };
  });
  const payload = 'x'.repeat(80);
  const cpu0 = B.cpuSeconds(srv.pid);
  const t0 = process.hrtime.bigint();
  const deadline = Date.now() + LIMIT_MS;
  const timedOut = () => Date.now() > deadline;
  let sent = 0;
  while (sent < MSGS && !timedOut()) {
    const batch = [];
    for (let k = sent; k < Math.min(MSGS, sent + BATCH); k++)
      batch.push({ channel: '/bench', clientId: pub.id, data: { n: k, text: payload } });
    pub.send(batch);
    sent += batch.length;
    await until(() => timedOut() ||
      (sent - acked < WINDOW && sent * SUBS - received <= LAG * SUBS));
  }
  const timer = setInterval(poke, 500);
  await until(() => received >= total || timedOut());
  clearInterval(timer);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = Math.max(B.cpuSeconds(srv.pid) - cpu0, 0.01);
  const perCpu = received / cpu, perWall = received / secs;
  console.log(`${name.padEnd(8)} ${SUBS} subscribers x ${MSGS} messages: ${received} deliveries ` +
    `in ${secs.toFixed(2)} s wall (${B.fmt(perWall)}/s), server CPU ${cpu.toFixed(2)} s = ` +
    `${B.fmt(perCpu)} deliveries per server CPU second` +
    (received < total ? ` (INCOMPLETE: ${received}/${total})` : ''));
  for (const c of subs) c.close();
  pub.close();
  await B.stop(srv);
  return { perCpu, perWall };
}

B.main(async () => {
  console.log(`WebSocket fan-out: ${SUBS} subscribers on one channel, ~100 B messages`);
  const ours = await run('bayeux');
  if (process.env.ONLY === 'bayeux') return;
  const faye = await run('faye');
  B.report({ measure: `WS fan-out, ${SUBS} subscribers`, unit: 'deliveries/server CPU s',
    a: ['bayeux', ours.perCpu], b: ['faye', faye.perCpu],
    ratio: B.ratioText(ours.perCpu, faye.perCpu) });
  B.report({ measure: `WS fan-out, ${SUBS} subscribers (wall clock)`, unit: 'deliveries/s',
    a: ['bayeux', ours.perWall], b: ['faye', faye.perWall],
    ratio: B.ratioText(ours.perWall, faye.perWall) + ' (bounded by the load generator)' });
});
