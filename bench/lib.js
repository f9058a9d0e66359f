// bench/lib.js - what the benchmarks share: starting a server, reading its
// CPU time and memory from /proc, raw WebSocket Bayeux clients (npm `ws`)
// that stay cheap, and the summary line each measure ends with.
//
// Not a benchmark itself; required by bench/ws_*.js and bench/ext_overhead.js.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');

const root = path.join(__dirname, '..');
const WebSocket = require(path.join(root, 'test', 'node', 'node_modules', 'ws'));

// The two servers, each started the same way: a command line that prints
// "listening on http://HOST:PORT/MOUNT" once it accepts connections.
const SERVERS = {
  bayeux: (extra = []) => ['lua5.4', ['bin/bayeux', 'serve', '--port', '0', '--mount', '/faye',
    '--timeout', '45', '--max-conns', '30000', ...extra]],
  faye: () => ['node', ['test/interop/faye-ref-server.js', '--port', '0', '--mount', '/faye',
    '--timeout', '45']],
};

function start(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const t = setTimeout(() => reject(new Error(`${cmd} did not start`)), 10000);
    const onExit = (code) => reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`));
    const onData = (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/([^:]+):(\d+)(\/\S*)/);
      if (m) {
        clearTimeout(t);
        child.removeListener('exit', onExit);
        child.stdout.removeListener('data', onData);
        child.stdout.resume();          // drain whatever it prints later
        resolve({ child, pid: child.pid, host: m[1], port: +m[2], mount: m[3],
          url: `ws://${m[1]}:${m[2]}${m[3]}` });
      }
    };
    child.on('exit', onExit);
    child.stdout.on('data', onData);
  });
}

function startServer(name, extra) {
  const [cmd, args] = SERVERS[name](extra);
  return start(cmd, args);
}

function stop(srv) {
  return new Promise((resolve) => {
    if (srv.child.exitCode !== null || srv.child.signalCode !== null) return resolve();
    const t = setTimeout(() => { srv.child.kill('SIGKILL'); }, 5000);
    srv.child.once('exit', () => { clearTimeout(t); resolve(); });
    srv.child.kill('SIGTERM');
  });
}

// CPU seconds a process has used (user + system), from /proc/<pid>/stat.
function cpuSeconds(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (+fields[11] + +fields[12]) / 100;     // utime, stime in clock ticks
}

// Resident set size in bytes, from /proc/<pid>/status.
function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? +m[1] * 1024 : NaN;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Counts occurrences of `needle` (a Buffer) in `buf` without decoding it.
function count(buf, needle) {
  let n = 0, i = -1;
  while ((i = buf.indexOf(needle, i + 1)) !== -1) n++;
  return n;
}

// Local source addresses 127.0.0.2..: ~28k ephemeral ports per
// (source, destination) pair, so many sockets spread over a few of them.
function localAddress(i) {
  return `127.0.0.${2 + (Math.floor(i / 10000) % 250)}`;
}

// A Bayeux session over one WebSocket, driven as Faye's client does it:
// /meta/handshake, then /meta/connect with connectionType "websocket"
// (renewed whenever the server answers it) and /meta/subscribe, each in its
// own frame. Frames after setup go to onData(buf) as raw Buffers.
class WsClient {
  constructor(url, i) {
    this.url = url;
    this.i = i;
    this.id = null;
    this.onData = null;
    this.ws = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, { perMessageDeflate: false, skipUTF8Validation: true,
        localAddress: localAddress(this.i), handshakeTimeout: 30000 });
      this.ws = ws;
      ws.once('open', resolve);
      ws.on('error', (e) => { this.error = e; reject(e); });   // later ones: kept, not thrown
    });
  }

  send(msgs) {
    this.ws.send(JSON.stringify(msgs));
  }

  // Sends `msgs` and resolves with the parsed first frame that mentions
  // `channel` (only used during setup, where parsing is affordable).
  request(msgs, channel) {
    return new Promise((resolve, reject) => {
      const key = Buffer.from(`"channel":"${channel}"`);
      const onMsg = (buf) => {
        if (buf.indexOf(key) === -1) return;
        this.ws.removeListener('message', onMsg);
        const replies = JSON.parse(buf.toString());
        const r = replies.find((m) => m.channel === channel);
        if (r && r.successful) resolve(r);
        else reject(new Error(`${channel} failed: ${buf}`));
      };
      this.ws.on('message', onMsg);
      this.send(msgs);
    });
  }

  async handshake() {
    await this.open();
    const hs = await this.request([{ channel: '/meta/handshake', version: '1.0',
      supportedConnectionTypes: ['websocket', 'long-polling'] }], '/meta/handshake');
    this.id = hs.clientId;
    this.ws.on('message', (buf) => {
      // a connect answered (its timeout ran out): connect again, as Faye's
      // client does; then hand the frame on
      if (buf.indexOf(CONNECT) !== -1 && this.ws.readyState === WebSocket.OPEN) this.connect();
      if (this.onData) this.onData(buf);
    });
    return this;
  }

  connect() {
    this.send([{ channel: '/meta/connect', clientId: this.id, connectionType: 'websocket' }]);
  }

  // The full setup of a subscriber: handshake, connect, subscribe.
  async subscribe(channel) {
    await this.handshake();
    this.connect();
    await this.request([{ channel: '/meta/subscribe', clientId: this.id, subscription: channel }],
      '/meta/subscribe');
    return this;
  }

  close() {
    if (this.ws) this.ws.terminate();
  }
}
const CONNECT = Buffer.from('"channel":"/meta/connect"');

// Opens `n` clients with at most `parallel` setups in flight.
async function openMany(n, parallel, make) {
  const out = new Array(n);
  let next = 0;
  async function worker() {
    while (next < n) {
      const i = next++;
      out[i] = await make(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
  return out;
}

// Percentile of a sorted numeric array (nearest rank).
function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function fmt(x) {
  if (!Number.isFinite(x)) return String(x);
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString('en-US');
  return x.toPrecision(3);
}

// The line a measure ends with: ours beside Faye's (or whatever two figures
// the measure compares) and their ratio. Also appended as JSON to
// $BENCH_SUMMARY, which bench/run.sh prints as one table at the end.
//   report({ measure, unit, a: ['bayeux', x], b: ['faye', y], ratio: 'text' })
function report(r) {
  const line = `== ${r.measure}: ${r.a[0]} ${fmt(r.a[1])}, ${r.b[0]} ${fmt(r.b[1])} ${r.unit}; ` +
    r.ratio;
  console.log(line);
  if (process.env.BENCH_SUMMARY) fs.appendFileSync(process.env.BENCH_SUMMARY, JSON.stringify(r) + '\n');
}

// "bayeux/faye = 12.3x" for figures where higher is better, and the
// inverse ("faye/bayeux") where lower is better (memory, latency).
function ratioText(ours, faye, better = 'higher') {
  return better === 'higher'
    ? `bayeux/faye = ${(ours / faye).toFixed(1)}x`
    : `faye/bayeux = ${(faye / ours).toFixed(1)}x (bayeux uses ${(100 * ours / faye).toFixed(0)}% of faye's)`;
}

function main(fn) {
  fn().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
}

module.exports = { root, WebSocket, startServer, start, stop, cpuSeconds, rssBytes, sleep,
  count, localAddress, WsClient, openMany, percentile, fmt, report, ratioText, main };
