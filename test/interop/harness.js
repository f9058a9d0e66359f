// test/interop/harness.js - what the interop test files share: small async
// helpers, a bayeux (or Faye reference) server in a child process, and the
// runner that prints "ok - name" / "not ok - name" and "N passed, N failed".
// Not a test itself (tools/test.sh runs *.test.js only); test/browser's
// harness builds on it.
'use strict';
const path = require('path');
const { spawn } = require('child_process');

const ROOT = path.resolve(__dirname, '..', '..');
const NODE_MODULES = path.join(ROOT, 'test', 'node', 'node_modules');
// The launcher prefix, run from the repository root as
// `sh -c "exec $BAYEUX_CMD serve ..."`; tools/check.sh points it at the
// sanitized build, and "node test/interop/faye-ref-server.js" runs Faye.
const CMD = process.env.BAYEUX_CMD || 'lua5.4 bin/bayeux';
const START_MS = 10000;          // server start budget

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    Promise.resolve(promise).finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

// JSON text with every object's keys sorted: key order means nothing in
// JSON (and a message that went through a server extension comes back in
// another order).
function canonical(value) {
  return JSON.stringify(value, (key, v) => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.keys(v).sort().reduce((o, k) => { o[k] = v[k]; return o; }, {}) : v));
}

function assertEqual(actual, expected, msg) {
  const a = canonical(actual), e = canonical(expected);
  if (a !== e) throw new Error(`${msg}: got ${a}, expected ${e}`);
}

// Resolves when pred() holds, checking every 20 ms.
function poll(pred, what, ms) {
  return withTimeout(new Promise((resolve) => {
    const check = () => { if (pred()) resolve(); else setTimeout(check, 20); };
    check();
  }), ms, what);
}

// Resolves when pred() holds, checking whenever notify() is called.
function waiter(defaultMs) {
  const pending = [];
  return {
    notify() {
      for (let i = pending.length - 1; i >= 0; i--) {
        if (pending[i].pred()) { pending[i].resolve(); pending.splice(i, 1); }
      }
    },
    until(pred, what, ms = defaultMs) {
      if (pred()) return Promise.resolve();
      return withTimeout(new Promise((resolve) => pending.push({ pred, resolve })), ms, what);
    },
  };
}

// Starts `$CMD serve` on an ephemeral port (`extra`: more options, as shell
// words; `cmd`: another command than $BAYEUX_CMD). Resolves with
// { proc, log, exit, url, port } once it prints its listening line;
// `exit` becomes { code, signal } when it ends.
function startServer({ mount, timeout, extra = '', cmd = CMD }) {
  const line = /bayeux: listening on (https?:\/\/\S+)/;
  const srv = { proc: null, log: '', exit: null, url: null, port: null };
  const started = new Promise((resolve, reject) => {
    srv.proc = spawn('sh', ['-c', `exec ${cmd} serve --host 127.0.0.1 --port 0 --mount ${mount} --timeout ${timeout} ${extra}`], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`no listening line within ${START_MS} ms`)), START_MS);
    srv.proc.stdout.on('data', (d) => {
      out += d;
      srv.log += d;
      const m = line.exec(out);
      if (m && !srv.url) {
        clearTimeout(timer);
        srv.url = m[1];
        srv.port = +new URL(m[1]).port;
        resolve(srv);
      }
    });
    srv.proc.stderr.on('data', (d) => { srv.log += d; });
    srv.proc.on('error', (err) => { clearTimeout(timer); reject(err); });
    srv.proc.on('exit', (code, signal) => {
      srv.exit = { code, signal };
      clearTimeout(timer);
      reject(new Error(`server exited (code ${code}, signal ${signal}) before listening`));
    });
  });
  started.srv = srv;
  return started;
}

// SIGTERM, then SIGKILL after `ms`. Resolves with { code, signal }.
function stopServer(srv, ms = 5000) {
  if (!srv || !srv.proc || srv.exit) return Promise.resolve(srv && srv.exit);
  return new Promise((resolve) => {
    const timer = setTimeout(() => { srv.proc.kill('SIGKILL'); }, ms);
    srv.proc.once('exit', (code, signal) => { clearTimeout(timer); resolve({ code, signal }); });
    srv.proc.kill('SIGTERM');
  });
}

function printStack(e) {
  console.log(`# ${(e && e.stack || String(e)).replace(/\n/g, '\n# ')}`);
}

// Runs a test file: starts the main server (`start()` resolves with it),
// runs `tests` ([{ name, fn, ms }]) one after another (BX_ONLY=regex picks
// some), then `finish()` (disconnect clients, close proxies), stops every
// server in `servers()` and checks each exits 0 on SIGTERM, which catches
// leaks under the sanitizers. The whole file is bounded to `fileMs`.
async function runFile({ tests, fileMs, start, servers, finish }) {
  let passed = 0, failed = 0, main = null;
  const killAll = () => { for (const s of servers()) if (s.proc && !s.exit) s.proc.kill('SIGKILL'); };
  const watchdog = setTimeout(() => {
    console.log(`not ok - whole file exceeded ${fileMs} ms`);
    console.log(`${passed} passed, ${failed + 1} failed`);
    killAll();
    process.exit(1);
  }, fileMs);

  try {
    main = await start();
  } catch (e) {
    console.log(`not ok - server starts (${CMD}): ${e.message}`);
    for (const s of servers()) if (s.log) console.log(s.log.replace(/^/gm, '# server: '));
    killAll();
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  console.log(`# server ${main.url} (${CMD})`);

  const only = process.env.BX_ONLY ? new RegExp(process.env.BX_ONLY) : null;
  for (const t of tests) {
    if (only && !only.test(t.name)) continue;
    try {
      await withTimeout(t.fn(), t.ms, t.name);
      console.log(`ok - ${t.name}`);
      passed++;
    } catch (e) {
      console.log(`not ok - ${t.name}`);
      printStack(e);
      failed++;
    }
    if (main.exit) break;
  }

  if (main.exit) {
    console.log(`not ok - server stays up (exited: code ${main.exit.code}, signal ${main.exit.signal})`);
    failed++;
  } else {
    await Promise.race([Promise.resolve(finish && finish()).catch(() => {}), delay(3000)]);
    for (const s of servers()) {
      if (s.exit) continue;
      const exit = await stopServer(s);
      if (exit && exit.code === 0) {
        console.log('ok - server exits 0 on SIGTERM');
        passed++;
      } else {
        console.log(`not ok - server exits 0 on SIGTERM (code ${exit && exit.code}, signal ${exit && exit.signal})`);
        failed++;
      }
    }
  }

  if (failed) for (const s of servers()) if (s.log) console.log(s.log.trimEnd().replace(/^/gm, '# server: '));
  clearTimeout(watchdog);
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

// An HTTP proxy with no affinity at all, in front of `backends` (servers
// from startServer) mounted at `mount`: each client's requests go to the
// next backend in turn, counted per client (the clientId of a POST's first
// message; "" for handshakes and the rest). A count over all requests
// would let two clients in lockstep each stay on one process. Resolves
// with { url, counts (requests per backend), server }.
function roundRobin(backends, mount) {
  const http = require('http');
  const counts = backends.map(() => 0);
  const turn = new Map();
  const server = http.createServer((req, res) => {
    const body = [];
    req.on('data', (d) => body.push(d));
    req.on('end', () => {
      const data = Buffer.concat(body);
      let key = '';
      try {
        const msgs = [].concat(JSON.parse(data.toString() || 'null'));
        key = (msgs[0] && msgs[0].clientId) || '';
      } catch (e) { /* not JSON: the shared turn */ }
      const n = turn.get(key) || 0;
      turn.set(key, n + 1);
      const i = n % backends.length;
      counts[i]++;
      const to = new URL(backends[i].url);
      const up = http.request({
        host: to.hostname, port: to.port, method: req.method, path: req.url,
        headers: { ...req.headers, host: to.host }, agent: false,
      }, (ur) => { res.writeHead(ur.statusCode, ur.headers); ur.pipe(res); });
      up.on('error', () => { res.statusCode = 502; res.end(); });
      up.end(data);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    resolve({ url: `http://127.0.0.1:${server.address().port}${mount}`, counts, server });
  }));
}

module.exports = {
  ROOT, NODE_MODULES, CMD, delay, withTimeout, assert, assertEqual, poll, waiter,
  startServer, stopServer, runFile, roundRobin,
};
