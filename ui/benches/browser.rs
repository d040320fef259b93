//! The web UI in a real browser under load: Debian's Chromium, driven by
//! Playwright (ui/web/bench/browser.mjs), shows the map of 500 workloads
//! and 2,000 edges while the relay streams 50,000 flows a second into
//! lumen-ui for 5 minutes: the time to the first full map, the longest
//! main-thread task (Long Tasks API), the bytes per second the page
//! receives, and the page's JavaScript heap at the start and the end.
//! Results go to BENCHMARKS.md.
//!
//! Run (no root needed; after ui/setup.sh): `cargo bench -p lumen-ui --bench
//! browser` (`LUMEN_BENCH_SECS=60` for a short run).
//!
//! An observer's real gRPC server is fed datapath records by a producer
//! thread (500 pods, each its own workload, in 5 namespaces, each talking
//! to 4 others on a port; every 50th a policy drop); a real relay follows
//! it; the lumen-ui binary follows the relay.

#[path = "../../observer/benches/support/benchmarks_md.rs"]
mod benchmarks_md;
#[path = "../../observer/benches/support/machine.rs"]
mod machine;
#[path = "../../observer/benches/support/stream.rs"]
mod stream;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lumen_probes::abi;
use serde_json::Value;

const RATE: u64 = 50_000;
const WORKLOADS: u32 = 500;
const NAMESPACES: u32 = 5;
/// Each workload talks to this many others: 2,000 edges.
const PEERS: u32 = 4;

/// Record `i`: edge `i` modulo 2,000, from its workload to the peer it names.
fn record(i: u64, now_ns: u64) -> abi::Event {
    let edge = (i % u64::from(WORKLOADS * PEERS)) as u32;
    let src = edge % WORKLOADS;
    let dst = (src + 1 + 97 * (edge / WORKLOADS)) % WORKLOADS;
    stream::tcp_record(i, now_ns, (src, dst), (1000 + src, 1000 + dst))
}

/// A child process killed and reaped when dropped, also on a panic.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = std::env::var("LUMEN_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stream = stream::Stream::start(&rt, stream::pods(WORKLOADS, |p| p, NAMESPACES), RATE, record);

    let ui_listen = lumen_testbed::free_loopback_address();
    let ui = Killed(
        Command::new(env!("CARGO_BIN_EXE_lumen-ui"))
            .args(["--listen", &ui_listen, "--server", &stream.relay.to_string()])
            .env("LUMEN_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start lumen-ui"),
    );
    // Every edge on the map before the browser comes (the flows of the
    // last minutes are what a user opening the page gets).
    std::thread::sleep(Duration::from_secs(5));
    let seen0 = stream.seen_flows();
    let t0 = Instant::now();

    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let mut script = Killed(
        Command::new("node")
            .arg("bench/browser.mjs")
            .current_dir(&web)
            .env("LUMEN_UI_URL", format!("http://{ui_listen}/"))
            .env("LUMEN_BENCH_SECS", secs.to_string())
            .env("LUMEN_BENCH_WORKLOADS", WORKLOADS.to_string())
            .env("LUMEN_BENCH_EDGES", (WORKLOADS * PEERS).to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node (ui/setup.sh installs it)"),
    );
    let mut result = None;
    for line in BufReader::new(script.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        eprintln!("browser: {line}");
        if let Some(json) = line.strip_prefix("RESULT ") {
            result = Some(serde_json::from_str::<Value>(json).unwrap());
        }
    }
    let status = script.0.wait().unwrap();
    assert!(status.success(), "the browser script failed ({status})");
    let elapsed = t0.elapsed().as_secs_f64();
    let delivered = (stream.seen_flows() - seen0) as f64 / elapsed;
    drop((ui, stream));

    let r = result.expect("the script printed its RESULT");
    let f = |key: &str| r[key].as_f64().unwrap_or_else(|| panic!("{key} in {r}"));
    let mib = |b: f64| b / f64::from(1 << 20);
    let rows = format!(
        "| time to the first full map ({} workloads, {} edges) from the page's navigation | {:.0} ms | |\n\
         | longest main-thread task, from navigation to the first full map | {:.0} ms | |\n\
         | longest main-thread task in the first second after the first full map | {:.0} ms | |\n\
         | longest main-thread task over the {:.0} s that follow; long tasks (over 50 ms) | {:.0} ms; {} | ≤ 100 ms: **{}** |\n\
         | bytes per second the page received (Server-Sent Events and API calls, as sent) | {:.1} KiB/s | |\n\
         | page's JavaScript heap: at the first full map / after 1 min / at the end / most | {:.1} / {:.1} / {:.1} / {:.1} MiB | flat |\n\
         | flows/s the relay delivered over the run | {delivered:.0} | 50,000 |\n",
        f("workloads"),
        f("edges"),
        f("firstRenderMs"),
        f("longestBeforeMs"),
        f("longestSettlingMs"),
        f("runSecs") - 1.0,
        f("longestAfterMs"),
        f("longTasksAfter"),
        if f("longestAfterMs") <= 100.0 { "met" } else { "missed" },
        f("bytesPerSec") / 1024.0,
        mib(f("heapStart")),
        mib(f("heapMinute")),
        mib(f("heapEnd")),
        mib(f("heapMax")),
    );
    print!("{rows}");
    let section = format!(
        "## Web UI in a real browser: 500 workloads, 2,000 edges, 50,000 flows/s\n\n\
         Command: `cargo bench -p lumen-ui --bench browser` (after `ui/setup.sh`; `LUMEN_BENCH_SECS` sets the length, 300 by default).\n\
         Machine: {}, kernel {}; Debian's Chromium, headless, driven by Playwright (`ui/web/bench/browser.mjs`), 1600×1000.\n\n\
         | measure | result | budget |\n|---|---:|---|\n{rows}\n\
         How it is set up: an observer's real gRPC server is fed datapath records by a producer thread at 50,000 a second \
         (500 pods, each its own workload, in 5 namespaces, each sending to 4 others on TCP 8080: 2,000 edges; every 50th \
         a policy drop); a real relay follows it and the `lumen-ui` binary follows the relay; the page opens after 5 s, \
         on the default view (every namespace, workloads). The first full map is when Cytoscape holds every workload and \
         every edge and has drawn them (two animation frames later: its first frame of a large map is a long task of its \
         own, counted before). The second after it is apart: Cytoscape builds its texture caches of the new map then, \
         drawing every element directly meanwhile (its own `renderFn`/`LTCp.dequeue` in the profile); the budget is \
         read over the rest. Labels smaller than 6 px at the zoom shown are not drawn. `LUMEN_BENCH_PROFILE=<file>` \
         also writes the page's CPU profile and prints where its time went. Long tasks come from the Long Tasks API (a PerformanceObserver registered before the page's own \
         scripts); bytes from the DevTools protocol (`Network.dataReceived`, encoded lengths); the heap from \
         `Performance.getMetrics` (`JSHeapUsedSize`) after a garbage collection, every 10 s.\n",
        machine::cpu_model(),
        machine::kernel(),
    );
    benchmarks_md::update_benchmarks("ui-browser", &section);
    println!("BENCHMARKS.md updated");
}
