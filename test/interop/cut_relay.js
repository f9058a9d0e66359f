// test/interop/cut_relay.js - a TCP relay on 127.0.0.1 that cuts
// connections in the middle of responses carrying messages, for the tests
// of acknowledged delivery (test/interop/ack.test.js,
// test/browser/ack.test.js). Not a test file itself.
//
// A chunk from the server that contains `pattern` (a delivery on the test's
// channel) is, the `first` time and every `every`-th after, at most
// `maxCuts` times, passed
// only in half; then both sides are closed, so what the server wrote is
// lost on the way (and with several ports, the next connections go to the
// next one). The client's WebSocket upgrade loses its
// Sec-WebSocket-Extensions, so frames stay readable here (no
// permessage-deflate).
'use strict';
const net = require('net');

function startRelay(ports, { every = 1, first = every, maxCuts = 8, pattern = '"channel":"/seq/', mount = '' } = {}) {
  const relay = { ports, idx: 0, seen: 0, cuts: 0, server: null, url: null, port: 0, pairs: new Set() };
  relay.server = net.createServer((down) => {
    const up = net.connect(relay.ports[relay.idx], '127.0.0.1');
    const pair = { down, up };
    relay.pairs.add(pair);
    let dead = false;
    const drop = () => { dead = true; down.destroy(); up.destroy(); relay.pairs.delete(pair); };
    down.on('error', drop); up.on('error', drop);
    down.on('close', drop); up.on('close', drop);
    down.on('data', (d) => {
      if (dead) return;
      if (d.includes('Sec-WebSocket-Extensions')) {
        d = Buffer.from(d.toString('latin1').replace(/Sec-WebSocket-Extensions:[^\r\n]*\r\n/gi, ''), 'latin1');
      }
      up.write(d);
    });
    up.on('data', (d) => {
      if (dead) return;
      if (relay.cuts < maxCuts && d.includes(pattern) && ++relay.seen >= first && (relay.seen - first) % every === 0) {
        relay.cuts++;
        relay.idx = (relay.idx + 1) % relay.ports.length;
        dead = true;
        up.destroy();
        down.end(d.subarray(0, d.length >> 1));
        setTimeout(() => { down.destroy(); relay.pairs.delete(pair); }, 50);
        return;
      }
      down.write(d);
    });
  });
  relay.close = () => {
    for (const p of relay.pairs) { p.down.destroy(); p.up.destroy(); }
    relay.server.close();
  };
  return new Promise((resolve, reject) => {
    relay.server.on('error', reject);
    relay.server.listen(0, '127.0.0.1', () => {
      relay.port = relay.server.address().port;
      relay.url = `http://127.0.0.1:${relay.port}${mount}`;
      resolve(relay);
    });
  });
}

module.exports = { startRelay };

// As a program (for specs): node test/interop/cut_relay.js PORT [EVERY [FIRST
// [MAXCUTS]]] relays to 127.0.0.1:PORT, prints "RELAY <port>", then "CUT <n>"
// at each cut; runs until killed.
if (require.main === module) {
  const [port, every = 1, first = every, maxCuts = 8] = process.argv.slice(2).map(Number);
  startRelay([port], { every, first, maxCuts }).then((relay) => {
    console.log(`RELAY ${relay.port}`);
    let cuts = 0;
    setInterval(() => { while (cuts < relay.cuts) console.log(`CUT ${++cuts}`); }, 20);
  });
}
