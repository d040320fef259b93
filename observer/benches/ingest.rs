//! Events from the kernel to stored flows, end to end: the real datapath
//! program, driven with BPF_PROG_TEST_RUN on one core, writes drop events
//! into the node's pinned ring buffer; the real observer (reader, decode,
//! store) drains it on the other core. Measures whether 500,000 events/s
//! sustained lose nothing, the most the pipeline keeps up with, what
//! every flow metric costs the observer's core in this real pipeline, and
//! whether flow export (a flow log file and OTLP) slows it.
//! Results go to BENCHMARKS.md.
//!
//! Run as root: `cargo bench -p lumen-observer --bench ingest`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use aya::programs::SchedClassifier;
use aya::EbpfLoader;
use lumen_observer::{counters, ObserverConfig, ObserverHandle};
use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::ServerStatusRequest;

#[path = "support/cpu.rs"]
mod cpu;
use cpu::pin_to_cpu;
#[path = "support/benchmarks_md.rs"]
mod benchmarks_md;
#[path = "support/every_flow_metric.rs"]
mod every_flow_metric;
#[path = "../../export/tests/otlp/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "support/test_run.rs"]
mod test_run;
use every_flow_metric::EVERY_FLOW_METRIC;

fn seen_flows(rt: &tokio::runtime::Runtime, socket: &Path) -> u64 {
    rt.block_on(async move {
        let channel = lumen_observer::server::connect_unix(socket).await.unwrap();
        ObserverClient::new(channel)
            .server_status(ServerStatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .seen_flows
    })
}

/// Drives `per_tick` events every 10 ms for `duration` (0: as fast as it goes).
fn drive(prog: &SchedClassifier, packet: &[u8], per_tick: u32, duration: Duration) {
    let start = Instant::now();
    let mut tick = start;
    while start.elapsed() < duration {
        let (verdict, _) = test_run::test_run(prog, packet, per_tick.max(1));
        assert_eq!(
            verdict, 2,
            "the generator's packets are dropped (and so always reported)"
        );
        if per_tick > 0 {
            tick += Duration::from_millis(10);
            if let Some(wait) = tick.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
}

/// The observer's CPU time so far: every thread of this process but the
/// main one, which drives the generator (threads that ended included).
fn observer_cpu() -> Duration {
    let usage = |who| {
        // SAFETY: getrusage fills the struct we own.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
        t(u.ru_utime) + t(u.ru_stime)
    };
    usage(libc::RUSAGE_SELF) - usage(libc::RUSAGE_THREAD)
}

/// Removes an observer's pinned maps and links when dropped, also when the
/// benchmark panics, so that nothing is left for the next run.
struct Pins(std::path::PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = lumen_observer::daemon::uninstall(&self.0);
    }
}

/// An observer for the node, on CPU 1, with `metrics` if given (served on
/// `metrics_address`).
fn start_observer(
    tb: &lumen_testbed::Testbed,
    node: &lumen_testbed::Node,
    dir: &Path,
    metrics: Option<(&str, std::net::SocketAddr)>,
) -> (ObserverHandle, ObserverConfig) {
    start_observer_with(tb, node, dir, metrics, |_| {})
}

/// [`start_observer`], its configuration changed by `configure` first.
fn start_observer_with(
    tb: &lumen_testbed::Testbed,
    node: &lumen_testbed::Node,
    dir: &Path,
    metrics: Option<(&str, std::net::SocketAddr)>,
    configure: impl FnOnce(&mut ObserverConfig),
) -> (ObserverHandle, ObserverConfig) {
    let mut cfg = ObserverConfig::in_dir(&format!("{}-ingest", tb.prefix()), dir);
    cfg.netns = Some(node.netns.clone());
    cfg.endpoints = Some(dir.join("endpoints.yaml"));
    cfg.policy = Some(dir.join("policy.yaml"));
    cfg.ring_buffer_bytes = 16 << 20;
    cfg.max_flows = 1_000_000;
    if let Some((metrics, address)) = metrics {
        cfg.metrics = Some(metrics.to_string());
        cfg.metrics_listen_address = Some(address);
    }
    configure(&mut cfg);
    pin_to_cpu(1);
    let observer = ObserverHandle::spawn(cfg.clone());
    pin_to_cpu(0);
    assert!(observer.wait_ready(Duration::from_secs(20)), "observer did not start");
    (observer, cfg)
}

/// Runs `f` in the node's namespace with the datapath program loaded on
/// the observer's pinned maps (its ring buffer included).
fn with_generator<R: Send>(
    node: &lumen_testbed::Node,
    pin_dir: &Path,
    f: impl FnOnce(&SchedClassifier) -> R + Send,
) -> R {
    lumen_testbed::in_netns(&node.netns, || {
        let mut ebpf = EbpfLoader::new()
            .map_pin_path(pin_dir)
            .load(lumen_probes::DATAPATH_OBJECT)
            .unwrap();
        let prog: &mut SchedClassifier = ebpf
            .program_mut(lumen_probes::PROG_FROM_ENDPOINT)
            .unwrap()
            .try_into()
            .unwrap();
        prog.load().unwrap();
        f(prog)
    })
    .unwrap()
}

/// The sum of `hubble_drop_total` served at `address`.
fn drops_counted(address: std::net::SocketAddr) -> u64 {
    sum_of(&scrape(address), "hubble_drop_total{")
}

/// `/metrics` as served at `address`.
fn scrape(address: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

/// The sum of the samples in `body` whose line starts with `series`.
fn sum_of(body: &str, series: &str) -> u64 {
    body.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// What one observer did under the export comparison's load.
#[derive(Debug, Default, Clone, Copy)]
struct ExportRun {
    /// At 500,000 events/s: events written by the datapath, lost in the
    /// kernel, and flows the observer stored.
    sustained: (u64, u64, u64),
    /// Unpaced: events/s generated, and the same three.
    unpaced_rate: f64,
    unpaced: (u64, u64, u64),
    /// Flow log lines written and records dropped (queue full, write
    /// error); OTLP log records accepted by the collector and dropped.
    file: (u64, u64),
    otlp: (u64, u64),
    /// Flows the export's feed missed (the store overwrote them first).
    missed: u64,
}

const EXPORT_ROUNDS: usize = 3;
const EXPORT_SECS: u64 = 4;
const UNPACED_SECS: u64 = 3;

/// Observers without export and with a flow log file (on tmpfs) and OTLP
/// (log records, and metrics every second, over gRPC to the test receiver
/// in the node's namespace, on the generator's core) take turns, each
/// driven at 500,000 events/s and then unpaced: `[off, on]` runs.
fn export_rounds(
    tb: &lumen_testbed::Testbed,
    node: &lumen_testbed::Node,
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    packet: &[u8],
) -> [Vec<ExportRun>; 2] {
    pin_to_cpu(0);
    // Started from this thread (CPU 0), in the namespace the observer sends from.
    let receiver = lumen_testbed::in_netns(&node.netns, harness::Receiver::start_counting).unwrap();
    let logs = tempfile::Builder::new()
        .prefix("lumen-bench-ingest-export-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let mut runs: [Vec<ExportRun>; 2] = Default::default();
    for _ in 0..EXPORT_ROUNDS {
        for (i, on) in [false, true].into_iter().enumerate() {
            let address = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let (observer, cfg) = start_observer_with(tb, node, dir, None, |cfg| {
                cfg.metrics_listen_address = Some(address);
                if on {
                    cfg.export.export_file_path = Some(logs.path().join("flows.log"));
                    cfg.otlp.otlp_endpoint = Some(receiver.grpc_endpoint());
                    cfg.otlp.otlp_metrics_interval = Some(Duration::from_secs(1));
                }
            });
            let pin_dir = cfg.pin_dir();
            let pins = Pins(pin_dir.clone());
            let mut run = with_generator(node, &pin_dir, |prog| {
                let measure = |load: &dyn Fn()| {
                    let (k0, s0) = (counters::event_counters(&pin_dir).unwrap(), seen_flows(rt, &cfg.socket));
                    let start = Instant::now();
                    load();
                    let elapsed = start.elapsed();
                    std::thread::sleep(Duration::from_millis(500));
                    let (k1, s1) = (counters::event_counters(&pin_dir).unwrap(), seen_flows(rt, &cfg.socket));
                    let emitted = k1.emitted - k0.emitted;
                    (
                        emitted as f64 / elapsed.as_secs_f64(),
                        (emitted, k1.lost - k0.lost, s1 - s0),
                    )
                };
                let (_, sustained) = measure(&|| drive(prog, packet, 5_000, Duration::from_secs(EXPORT_SECS)));
                let (unpaced_rate, unpaced) = measure(&|| {
                    let deadline = Instant::now() + Duration::from_secs(UNPACED_SECS);
                    while Instant::now() < deadline {
                        test_run::test_run(prog, packet, 20_000);
                    }
                });
                ExportRun {
                    sustained,
                    unpaced_rate,
                    unpaced,
                    ..Default::default()
                }
            });
            if on {
                let body = lumen_testbed::in_netns(&node.netns, || scrape(address)).unwrap();
                let exported =
                    |name: &str| sum_of(&body, &format!("lumen_exporter_exported_total{{exporter=\"{name}\"}}"));
                let dropped = |name: &str| sum_of(&body, &format!("lumen_exporter_dropped_total{{exporter=\"{name}\""));
                run.file = (exported("static"), dropped("static"));
                run.otlp = (exported("otlp"), dropped("otlp"));
                run.missed = sum_of(&body, "lumen_lost_events_total{consumer=\"exporter\"");
            }
            runs[i].push(run);
            observer.stop().unwrap();
            drop(pins);
            for entry in std::fs::read_dir(logs.path()).unwrap().flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    runs
}

/// Rounds of the metrics comparison, each an observer without metrics and
/// one with, and how long each is driven.
const METRICS_ROUNDS: usize = 5;
const METRICS_SECS: u64 = 4;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    pin_to_cpu(0);
    let mut tb = lumen_testbed::Testbed::new().expect("run as root");
    let node = tb.add_node("ingest").unwrap();
    let dir = std::env::temp_dir().join(format!("lumen-bench-ingest-{}", tb.prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    // The generator's "endpoint" is the node's lo: BPF_PROG_TEST_RUN runs
    // packets as if on it. Its egress allows only UDP 9, so the generated
    // TCP packets are dropped and every one is reported.
    std::fs::write(
        dir.join("endpoints.yaml"),
        "endpoints:\n  - name: gen\n    labels: {app: gen}\n    interface: lo\n    ips: [10.0.0.1]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("policy.yaml"),
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: gen-out}\nspec:\n  endpointSelector: {matchLabels: {app: gen}}\n  egress:\n    - toPorts: [{ports: [{port: \"9\", protocol: UDP}]}]\n",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let packet = test_run::tcp_packet(80, 0x02);
    if std::env::var_os("LUMEN_BENCH_EXPORT_ONLY").is_some() {
        let runs = export_rounds(&tb, &node, &dir, &rt, &packet);
        let _ = std::fs::remove_dir_all(&dir);
        println!("{runs:#?}");
        return;
    }

    let (observer, cfg) = start_observer(&tb, &node, &dir, None);
    let pin_dir = cfg.pin_dir();
    let pins = Pins(pin_dir.clone());
    let results = with_generator(&node, &pin_dir, |prog| {
        let mut out = Vec::new();
        for (label, per_tick, secs) in [
            ("sustained 500,000 events/s", 5_000, 5),
            ("as fast as one core generates", 0, 3),
        ] {
            let k0 = counters::event_counters(&pin_dir).unwrap();
            let s0 = seen_flows(&rt, &cfg.socket);
            let start = Instant::now();
            if per_tick > 0 {
                drive(prog, &packet, per_tick, Duration::from_secs(secs));
            } else {
                let deadline = Instant::now() + Duration::from_secs(secs);
                while Instant::now() < deadline {
                    test_run::test_run(prog, &packet, 20_000);
                }
            }
            let elapsed = start.elapsed();
            std::thread::sleep(Duration::from_millis(500));
            let k1 = counters::event_counters(&pin_dir).unwrap();
            let s1 = seen_flows(&rt, &cfg.socket);
            let emitted = k1.emitted - k0.emitted;
            out.push((
                label,
                emitted as f64 / elapsed.as_secs_f64(),
                emitted,
                k1.lost - k0.lost,
                s1 - s0,
            ));
        }
        out
    });
    observer.stop().unwrap();
    drop(pins);

    // The observer's CPU per event at 500,000 events/s, with every flow
    // metric and without, observers taking turns.
    let mut cpu_per_event: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..METRICS_ROUNDS {
        for (i, on) in [false, true].into_iter().enumerate() {
            let address = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let metrics = on.then_some((EVERY_FLOW_METRIC, address));
            let (observer, cfg) = start_observer(&tb, &node, &dir, metrics);
            let pin_dir = cfg.pin_dir();
            let pins = Pins(pin_dir.clone());
            let (cpu, emitted) = with_generator(&node, &pin_dir, |prog| {
                let k0 = counters::event_counters(&pin_dir).unwrap();
                let cpu0 = observer_cpu();
                drive(prog, &packet, 5_000, Duration::from_secs(METRICS_SECS));
                // Until the observer has stored every event.
                let k1 = counters::event_counters(&pin_dir).unwrap();
                let deadline = Instant::now() + Duration::from_secs(10);
                while seen_flows(&rt, &cfg.socket) < k1.emitted && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                assert_eq!(k1.lost - k0.lost, 0, "no event lost");
                (observer_cpu() - cpu0, k1.emitted - k0.emitted)
            });
            if on {
                // Served in the node's namespace, where the observer runs. A
                // scrape's own packets on lo are flows too (forwarded ones):
                // the generator's are the drops.
                let drops = || lumen_testbed::in_netns(&node.netns, || drops_counted(address)).unwrap();
                let deadline = Instant::now() + Duration::from_secs(10);
                while drops() < emitted && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                assert_eq!(drops(), emitted, "the metrics counted every drop once");
            }
            cpu_per_event[i].push(cpu.as_nanos() as f64 / emitted as f64);
            observer.stop().unwrap();
            drop(pins);
        }
    }
    let exports = export_rounds(&tb, &node, &dir, &rt, &packet);
    let _ = std::fs::remove_dir_all(&dir);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off, on) = (median(&mut cpu_per_event[0]), median(&mut cpu_per_event[1]));

    let [export_off, export_on] = &exports;
    let total = |runs: &[ExportRun], f: &dyn Fn(&ExportRun) -> u64| runs.iter().map(f).sum::<u64>();
    let mut export_table = String::from(
        "| observer | 500,000 events/s: generated, lost in the kernel, stored | unpaced: generated (events/s), lost in the kernel, stored | flow log: lines written, dropped | OTLP: log records accepted, dropped | missed by the export's feed |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for (label, runs) in [("export off", export_off), ("flow log file and OTLP export", export_on)] {
        let rate = runs.iter().map(|r| r.unpaced_rate).sum::<f64>() / runs.len() as f64;
        let _ = writeln!(
            export_table,
            "| {label} | {} / {} / {} | {} ({:.2} M/s) / {} / {} | {} / {} | {} / {} | {} |",
            total(runs, &|r| r.sustained.0),
            total(runs, &|r| r.sustained.1),
            total(runs, &|r| r.sustained.2),
            total(runs, &|r| r.unpaced.0),
            rate / 1e6,
            total(runs, &|r| r.unpaced.1),
            total(runs, &|r| r.unpaced.2),
            total(runs, &|r| r.file.0),
            total(runs, &|r| r.file.1),
            total(runs, &|r| r.otlp.0),
            total(runs, &|r| r.otlp.1),
            total(runs, &|r| r.missed),
        );
    }
    // The share of what was generated that the observer stored.
    let kept = |runs: &[ExportRun], of: &dyn Fn(&ExportRun) -> (u64, u64, u64)| {
        total(runs, &|r| of(r).2) as f64 / total(runs, &|r| of(r).0) as f64
    };
    let sustained_ratio = kept(export_on, &|r| r.sustained) / kept(export_off, &|r| r.sustained);
    let unpaced_ratio = kept(export_on, &|r| r.unpaced) / kept(export_off, &|r| r.unpaced);

    let mut table = String::from(
        "| load | generated (events/s) | events | lost in the kernel | stored |\n|---|---:|---:|---:|---:|\n",
    );
    for (label, rate, emitted, lost, stored) in &results {
        let _ = writeln!(table, "| {label} | {rate:.0} | {emitted} | {lost} | {stored} |");
    }
    let sustained = &results[0];
    let section = format!(
        "## Observer ingest: kernel events to stored flows\n\n\
         Command: `cargo bench -p lumen-observer --bench ingest` (as root). The real datapath program, driven \
         with BPF_PROG_TEST_RUN on CPU 0 (a TCP SYN its policy drops, so every run writes an event), fills the \
         node's pinned ring buffer (16 MiB); the real observer drains it on CPU 1 into the flow store. \
         \"Stored\" is the observer's seen_flows over gRPC.\n\n{table}\n\
         Zero loss at 500,000 events/s sustained: **{}** ({} lost of {}). Unpaced, the generating core is the \
         limit: the observer stored {} of {} events ({:.2} M/s) on the other core; budget ≥ 1 M/s: **{}**.\n\n\
         **Flow metrics in this pipeline.** The observer's CPU time (every thread of the process but the \
         generator's; its core is CPU 1) per event while the generator drives 500,000 events/s for {METRICS_SECS} s, \
         an observer without metrics and one with every flow metric (`flow`, `drop`, `tcp`, `port-distribution`, \
         `icmp`, `flows-to-world:any-drop;port`, `policy`, each with `sourceContext=pod;destinationContext=pod`) \
         taking turns, {METRICS_ROUNDS} of each, median; each run checks that no event was lost and, with \
         metrics, that `hubble_drop_total` counted every generated event once.\n\n\
         | observer | CPU per event | events/s one core takes (1 / CPU per event) |\n|---|---:|---:|\n\
         | metrics off | {off:.0} ns | {:.1} M |\n\
         | every flow metric, pod contexts | {on:.0} ns | {:.1} M |\n\n\
         Ratio of the two rates, metrics on / off: {:.3} (budget ≥ 0.9: **{}**).\n\n\
         **Flow export in this pipeline.** Observers without export and with a flow log file (`--export-file-path` \
         on tmpfs, default rotation: 10 MB, 5 backups) and OTLP (`--otlp-endpoint`: every flow as a log record, \
         and the metrics every second, over gRPC to the test receiver built from the official protos, which runs \
         on the generator's core) take turns, {EXPORT_ROUNDS} of each; each is driven at 500,000 events/s for \
         {EXPORT_SECS} s, then unpaced for {UNPACED_SECS} s (totals over the rounds). The export's feed builds \
         each flow on a thread of its own, and only if an exporter's queue has room; the exporters' threads run \
         10 nicer than the observer, so what they cannot keep up with is dropped at their queues and counted \
         (`lumen_exporter_dropped_total`), and flows the feed was too slow to read are counted as lost to it \
         (`lumen_lost_events_total{{consumer=\"exporter\"}}`). Stored counts every flow, the OTLP requests' own \
         packets on lo too.\n\n{export_table}\n\
         Flows through the observer, export on / off (the share of generated events stored): {sustained_ratio:.3} \
         at 500,000 events/s and {unpaced_ratio:.3} unpaced (budget ≥ 0.9: **{}**). Here one core generates and \
         the other runs the observer and every exporter, so the exporters take what that core has left; their \
         own rates are measured alone (*Flow metrics: cost per flow*, file export; *OTLP log export*).\n",
        if sustained.3 == 0 && sustained.4 == sustained.2 {
            "met"
        } else {
            "NOT met"
        },
        sustained.3,
        sustained.2,
        results[1].4,
        results[1].2,
        results[1].4 as f64 / results[1].2 as f64 * results[1].1 / 1e6,
        if results[1].4 as f64 / results[1].2 as f64 * results[1].1 >= 1e6 {
            "met"
        } else {
            "NOT met"
        },
        1e3 / off,
        1e3 / on,
        off / on,
        if off / on >= 0.9 { "met" } else { "missed" },
        if sustained_ratio.min(unpaced_ratio) >= 0.9 {
            "met"
        } else {
            "missed"
        },
    );
    benchmarks_md::update_benchmarks("ingest", &section);
    println!("{section}");
}
