#!/usr/bin/env node
// test/interop/faye_longpoll.test.js - the real npm `faye` Node client, over
// long-polling only, against `bin/bayeux serve` started as a child process:
// subscribe and publish, wildcards, unsubscribe, a client extension's ext,
// an invalid channel, the publish thenable (faye_common.js).
//
//   node test/interop/faye_longpoll.test.js
//   BAYEUX_CMD="node test/interop/faye-ref-server.js" node test/interop/faye_longpoll.test.js
//
// Prints "ok - name" / "not ok - name" per test and ends with
// "N passed, N failed"; exits 1 on any failure (harness.js).
'use strict';
require('./faye_common').suite('long-polling').run();
