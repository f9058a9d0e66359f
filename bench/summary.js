// bench/summary.js - prints the summary lines the benchmarks appended to a
// file (bench/lib.js report(), one JSON object a line) as one table.
//
//   node bench/summary.js FILE          (bench/run.sh runs it last)
'use strict';
const fs = require('fs');
const { fmt } = require('./lib');

const rows = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter(Boolean)
  .map((l) => JSON.parse(l));
if (!rows.length) {
  console.log('\n(no summary: nothing was measured beside Faye)');
  process.exit(0);
}
const cells = rows.map((r) => [r.measure, `${r.a[0]} ${fmt(r.a[1])}`, `${r.b[0]} ${fmt(r.b[1])}`,
  r.unit, r.ratio]);
const head = ['measure', 'ours', 'peer', 'unit', 'ratio'];
const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
const line = (c) => c.map((x, i) => (i === 1 || i === 2 ? x.padStart(w[i]) : x.padEnd(w[i])))
  .join('  ').trimEnd();
console.log('\nSummary (same machine, same run; compare the ratios, not the absolute figures)');
console.log(line(head));
for (const c of cells) console.log(line(c));
