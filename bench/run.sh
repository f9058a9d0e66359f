#!/bin/sh
# make bench: our figures beside Faye's, measured in the same run.
set -e
cd "$(dirname "$0")/.."
node bench/fanout.js
