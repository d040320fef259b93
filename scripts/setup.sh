#!/usr/bin/env bash
# Installs what building and running Lumen needs on Debian 12, when missing,
# and mounts the BPF filesystem. Idempotent; run as root.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs packages and mounts bpffs)" >&2
  exit 1
fi

need=()
command -v clang-19 >/dev/null || need+=(clang-19)
command -v llvm-strip-19 >/dev/null || need+=(llvm-19)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
command -v bpftool >/dev/null || need+=(bpftool)
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
command -v iptables >/dev/null || need+=(iptables)
command -v tmux >/dev/null || need+=(tmux)
command -v cc >/dev/null || need+=(gcc libc6-dev)
# observer/tests/prometheus.rs runs the dashboards' queries against a real Prometheus.
[ -x /usr/bin/prometheus ] || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup.sh: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The package starts a system Prometheus where an init system runs; the
  # tests start their own, in a node's network namespace, and need none.
  if [[ " ${need[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

if ! command -v cargo >/dev/null; then
  echo "setup.sh: cargo not found: install Rust (https://rustup.rs) and re-run" >&2
  exit 1
fi
if [ ! -e /sys/kernel/btf/vmlinux ]; then
  echo "setup.sh: the kernel has no BTF (/sys/kernel/btf/vmlinux): Lumen needs CONFIG_DEBUG_INFO_BTF=y" >&2
  exit 1
fi
if [ "$(stat -f -c %T /sys/fs/bpf 2>/dev/null)" != "bpf_fs" ]; then
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
fi
mkdir -p /var/run/netns

# The web UI's front end (Node.js, npm, Chromium for its browser test; npm ci
# and the build lumen-ui embeds), and the OTLP test receiver's Python venv.
"$(dirname "$0")/../ui/setup.sh"
"$(dirname "$0")/../export/tests/otlp/setup.sh" >/dev/null
