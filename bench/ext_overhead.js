// bench/ext_overhead.js - the cost of one Lua incoming extension that every
// message passes through: bayeux with vs. without it (bench/ext_app.lua),
// and, beside it, Node faye with vs. without the same trivial extension in
// JavaScript (bench/faye_ext_server.js).
//
// A publish-heavy load, so that the extension's share shows: EXT_PUBS
// WebSocket publishers send messages (~100 B), EXT_BATCH per frame, each
// the next frame once the previous one is acknowledged, for EXT_SECS
// seconds; EXT_SUBS WebSocket subscribers receive every message. The figure is messages published per server CPU
// second (/proc/<pid>/stat); with the extension it is given as a
// percentage of the figure without it. Runs alternate without / with,
// EXT_ROUNDS times, and the median of each is kept.
//
//   node bench/ext_overhead.js          (bench/run.sh runs it)
//   EXT_PUBS=10 EXT_SUBS=10 EXT_SECS=2 EXT_BATCH=20 EXT_ROUNDS=5 node bench/ext_overhead.js
'use strict';
const B = require('./lib');

const PUBS = +process.env.EXT_PUBS || 10;
const SUBS = +process.env.EXT_SUBS || 10;
const SECS = +process.env.EXT_SECS || 2;
const BATCH = +process.env.EXT_BATCH || 20;
const ROUNDS = +process.env.EXT_ROUNDS || 5;
const DELIVERY = Buffer.from('"channel":"/bench"');

const CMDS = {
  bayeux: (ext) => ['lua5.4', ['bin/bayeux', 'bench/ext_app.lua', ...(ext ? [] : ['--no-ext'])]],
  faye: (ext) => ['node', ['bench/faye_ext_server.js', ...(ext ? [] : ['--no-ext'])]],
};

async function run(name, ext) {
  const srv = await B.start(...CMDS[name](ext));
  let received = 0;
  const subs = await B.openMany(SUBS, 20, (i) => new B.WsClient(srv.url, i).subscribe('/bench'));
  for (const c of subs) c.onData = (buf) => { received += B.count(buf, DELIVERY); };
  const pubs = await B.openMany(PUBS, 20, (i) => new B.WsClient(srv.url, SUBS + i).handshake());
  await B.sleep(300);
  received = 0;

  const payload = 'x'.repeat(80);
  const deadline = Date.now() + SECS * 1000;
  const cpu0 = B.cpuSeconds(srv.pid);
  const t0 = process.hrtime.bigint();
  let published = 0;
  await Promise.all(pubs.map((p) => new Promise((resolve) => {
    let sent = 0, acked = 0;
    const next = () => {
      if (Date.now() > deadline) return resolve();
      const batch = [];
      for (let k = 0; k < BATCH; k++, sent++)
        batch.push({ channel: '/bench', clientId: p.id, data: { n: sent, text: payload } });
      p.send(batch);
    };
    p.onData = (buf) => {
      const n = B.count(buf, DELIVERY);
      acked += n;
      published += n;
      if (acked >= sent) next();
    };
    next();
  })));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = Math.max(B.cpuSeconds(srv.pid) - cpu0, 0.01);
  await B.sleep(200);
  const rate = published / cpu;
  console.log(`${name.padEnd(7)} ${ext ? 'with   ' : 'without'} extension: ${published} messages ` +
    `(${received} deliveries) in ${secs.toFixed(2)} s wall, server CPU ${cpu.toFixed(2)} s = ` +
    `${B.fmt(rate)} messages per server CPU second`);
  for (const c of subs.concat(pubs)) c.close();
  await B.stop(srv);
  return rate;
}

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

B.main(async () => {
  console.log(`one incoming extension on every message: ${PUBS} WebSocket publishers ` +
    `(${BATCH} messages per frame) for ${SECS} s, ${SUBS} subscribers`);
  const pct = {};
  for (const name of process.env.ONLY === 'bayeux' ? ['bayeux'] : ['bayeux', 'faye']) {
    const without = [], withExt = [];
    for (let r = 0; r < ROUNDS; r++) {
      without.push(await run(name, false));
      withExt.push(await run(name, true));
    }
    const w = median(without), e = median(withExt);
    pct[name] = 100 * e / w;
    console.log(`${name.padEnd(7)} median: ${B.fmt(w)} without, ${B.fmt(e)} with = ` +
      `${pct[name].toFixed(0)}% of the throughput without the extension`);
  }
  if (!pct.faye) return;
  B.report({ measure: 'one incoming extension on every message', unit: '% of the throughput without it',
    a: ['bayeux', pct.bayeux], b: ['faye', pct.faye],
    ratio: `bayeux keeps ${pct.bayeux.toFixed(0)}%, faye ${pct.faye.toFixed(0)}%` });
});
