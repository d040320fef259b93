#!/usr/bin/env bash
# Builds Lumen and runs `lumen demo` (as root): an online shop on a three-node
# cluster with an observer per node, the relay and the web UI, live traffic and
# policies that drop some of it. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

"$(dirname "$0")/setup.sh"
cargo build -q --release -p lumen-cli -p lumen-ui
exec target/release/lumen demo "$@"
