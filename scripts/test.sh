#!/usr/bin/env bash
# Runs every test: unit tests, and the end-to-end tests that need root and a
# BPF-capable kernel (real eBPF, real network namespaces). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

"$(dirname "$0")/setup.sh"
# Network namespaces left by test processes that were killed outright.
cargo run -q -p lumen-testbed --bin lumen-testbed-sweep
# Every package's binaries are built by this very command: tests that run
# another package's binary use them as they are.
LUMEN_WORKSPACE_BUILT=1 cargo test --workspace --locked -- --include-ignored "$@"
