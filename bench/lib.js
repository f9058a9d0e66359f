// bench/lib.js - what bench/run.js needs from Node: starting a server that
// prints "listening on http://HOST:PORT/MOUNT", stopping it, and number
// formatting. The load itself comes from the C generator (bench/bxload.c).
'use strict';
const path = require('path');
const { spawn } = require('child_process');

const root = path.join(__dirname, '..');

// Starts `cmd args` (in the repository root) and resolves once it prints its
// listening line, with { child, pid, host, port, mount }.
function start(cmd, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${cmd} did not start`)); },
      20000);
    const onExit = (code) => { clearTimeout(t); reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`)); };
    const onData = (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/([^:]+):(\d+)(\/\S*)/);
      if (m) {
        clearTimeout(t);
        child.removeListener('exit', onExit);
        child.stdout.removeListener('data', onData);
        child.stdout.resume();          // drain whatever it prints later
        resolve({ child, pid: child.pid, host: m[1], port: +m[2], mount: m[3] });
      }
    };
    child.on('exit', onExit);
    child.stdout.on('data', onData);
  });
}

function stop(srv) {
  return new Promise((resolve) => {
    if (srv.child.exitCode !== null || srv.child.signalCode !== null) return resolve();
    const t = setTimeout(() => { srv.child.kill('SIGKILL'); }, 5000);
    srv.child.once('exit', () => { clearTimeout(t); resolve(); });
    srv.child.kill('SIGTERM');
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fmt(x) {
  if (x === null || x === undefined || !Number.isFinite(x)) return '–';
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString('en-US');
  return x.toPrecision(3);
}

function median(xs) {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

module.exports = { root, start, stop, sleep, fmt, median };
