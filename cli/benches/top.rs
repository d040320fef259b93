//! What `lumen top` costs while a relay streams 100,000 flows a second:
//! its CPU (from /proc, as a share of one core) and its memory over time.
//! Run as root (no kernel needed, but tmux and the sockets): `cargo bench
//! -p lumen-cli --bench top` (10 minutes; `LUMEN_BENCH_SECS=60` for a short
//! run). Results go to BENCHMARKS.md.
//!
//! An observer's real gRPC server is fed datapath records by a producer
//! thread at the rate (100 pods of 20 workloads in 4 namespaces talking to
//! each other on a port; every 50th a policy drop); the relay follows it;
//! `lumen top` runs in a 160×48 tmux pane against the relay, on its default
//! tab, as a user would leave it.

#[path = "../../observer/benches/support/benchmarks_md.rs"]
mod benchmarks_md;
#[path = "../../observer/benches/support/machine.rs"]
mod machine;
#[path = "../../observer/benches/support/stream.rs"]
mod stream;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lumen_observer::parser::{RuleMeta, Snapshot};
use lumen_probes::abi;

const RATE: u64 = 100_000;
const PODS: u32 = 100;
const APPS: u32 = 20;

/// The pods, and the rule their forwarded flows name.
fn snapshot() -> Snapshot {
    let mut s = stream::pods(PODS, |p| p % APPS, 4);
    s.rules.insert(
        7,
        Arc::new(RuleMeta {
            name: "allow-team".into(),
            namespace: "team0".into(),
            kind: "CiliumNetworkPolicy".into(),
            match_type: 2,
        }),
    );
    s
}

fn record(i: u64, now_ns: u64) -> abi::Event {
    let src = (i % u64::from(PODS)) as u32;
    let dst = ((i / 7 + 13) % u64::from(PODS)) as u32;
    let mut ev = stream::tcp_record(i, now_ns, (src, dst), (1000 + src % APPS, 1000 + dst % APPS));
    if ev.verdict == abi::VERDICT_FORWARDED {
        ev.rule_id = 7;
    }
    ev
}

/// (CPU seconds, resident bytes) of process `pid`.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
    let cpu = (ticks(11) + ticks(12)) / hz;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    (cpu, rss_kib * 1024)
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).status();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = std::env::var("LUMEN_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stream = stream::Stream::start(&rt, snapshot(), RATE, record);
    let listen = stream.relay;

    let session = Session(format!("lumen-top-bench-{}", std::process::id()));
    let lumen = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.join("lumen")))
        .filter(|p| p.exists())
        .expect("the lumen binary beside the bench (cargo bench builds it)");
    let status = Command::new("tmux")
        .args(["new-session", "-d", "-s", &session.0, "-x", "160", "-y", "48"])
        .arg(format!("{} top --server {listen}", lumen.display()))
        .env("TERM", "xterm-256color")
        .status()
        .expect("tmux");
    assert!(status.success());
    let pid: u32 = String::from_utf8(
        Command::new("tmux")
            .args(["display", "-p", "-t", &session.0, "#{pane_pid}"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();

    // Warm up 10 s, then sample every 10 s.
    std::thread::sleep(Duration::from_secs(10));
    let (cpu0, rss0) = usage(pid);
    let seen0 = stream.seen_flows();
    let t0 = Instant::now();
    let mut samples = vec![(0u64, rss0)];
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(10));
        samples.push((t0.elapsed().as_secs(), usage(pid).1));
    }
    let (cpu1, rss1) = usage(pid);
    let elapsed = t0.elapsed().as_secs_f64();
    let delivered = (stream.seen_flows() - seen0) as f64 / elapsed;
    let screen = String::from_utf8(
        Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &session.0])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    drop((session, stream));

    let cpu_share = (cpu1 - cpu0) / elapsed * 100.0;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let minute = samples.iter().find(|s| s.0 >= 60).map_or(rss0, |s| s.1);
    let rows = format!(
        "| `lumen top` CPU while the relay streams {:.0} flows/s ({:.0} s, after 10 s of warm-up) | {cpu_share:.1} % of one core | ≤ 25 % |\n\
         | `lumen top` resident memory: after 10 s / 1 min / at the end ({:.0} s) / peak | {:.1} / {:.1} / {:.1} / {:.1} MiB | flat |\n",
        delivered,
        elapsed,
        elapsed + 10.0,
        mib(rss0),
        mib(minute),
        mib(rss1),
        mib(peak),
    );
    print!("{rows}");
    println!("{screen}");
    let section = format!(
        "## `lumen top`: CPU and memory under a stream\n\n\
         Command: `cargo bench -p lumen-cli --bench top` (as root; `LUMEN_BENCH_SECS` sets the length, 600 by default).\n\
         Machine: {}, kernel {}.\n\n\
         | measure | result | budget |\n|---|---:|---|\n{rows}\n\
         How it is set up: an observer's real gRPC server is fed datapath records by a producer thread at 100,000 a second \
         (100 pods of 20 workloads in 4 namespaces, every 50th a policy drop), a relay follows it, and `lumen top` runs in a \
         160×48 tmux pane against the relay on its default tab, redrawing ten times a second. Its CPU is utime + stime from \
         `/proc/<pid>/stat` over the run, its memory `VmRSS`, sampled every 10 s. The flow rate is what the observer stored \
         over the run; the relay and the server run in the benchmark's process, not in `lumen top`'s.\n",
        machine::cpu_model(),
        machine::kernel(),
    );
    benchmarks_md::update_benchmarks("top", &section);
    println!("BENCHMARKS.md updated");
}
