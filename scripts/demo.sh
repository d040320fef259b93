#!/usr/bin/env bash
# Builds Lumen and runs `lumen demo` (as root): a three-node cluster with an
# observer per node and a relay, live traffic and a policy that drops some of
# it. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

"$(dirname "$0")/setup.sh"
cargo build -q --release -p lumen-cli
exec target/release/lumen demo "$@"
