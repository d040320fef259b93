//! What the hub's consumers cost the observer: the flow pipeline (ring
//! buffer records decoded and stored, then read by the consumers) with
//! every flow metric and pod contexts on, and with a flow log file
//! exporting every flow, against the same pipeline with them off, in one
//! run; the time and size of a `/metrics` scrape holding 10,000 series.
//! Results go to BENCHMARKS.md.
//!
//! Run: `cargo bench -p lumen-observer --bench consumers` (no root needed;
//! `LUMEN_BENCH_EXPORT_ONLY=1` runs only the follower and the flow export
//! and prints them).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lumen_export::{DropReason, Exporters, FlowLogConfig};
use lumen_metrics::{MetricsConfig, Registry, Settings};
use lumen_observer::hub::{Hub, Notice, Subscription};
use lumen_observer::parser::{EndpointMeta, Snapshot};
use lumen_observer::store::FlowStore;
use lumen_observer::{decode, metrics};
use lumen_probes::abi;

/// As the `lumen-observer` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/benchmarks_md.rs"]
mod benchmarks_md;
#[path = "support/every_flow_metric.rs"]
mod every_flow_metric;
#[path = "support/machine.rs"]
mod machine;
#[path = "support/records.rs"]
mod records;
use every_flow_metric::EVERY_FLOW_METRIC;

const FLOWS: usize = 1_000_000;
/// Records decoded and pushed at a time, as the reader does; the consumers
/// read each batch before the next, so the hub's cache of built flows
/// (4,096) always holds what a second consumer asks for, and the store
/// never overwrites what a consumer has not read.
const BATCH: usize = 1024;
const RUNS: usize = 5;
/// CPU time of every thread of this process (the flow log's writer too).
fn process_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The CPU time so far of this process's thread named `name` (from its
/// `schedstat`), if it runs.
fn named_thread_cpu(name: &str) -> Option<Duration> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            return Some(Duration::from_nanos(stat.split(' ').next()?.parse().ok()?));
        }
    }
    None
}

fn registry(metrics: &str) -> Arc<Registry> {
    let registry = Registry::new(Settings {
        max_series: 20_000,
        ..Settings::default()
    });
    registry.configure(&MetricsConfig::parse_flag(metrics)).unwrap();
    Arc::new(registry)
}

/// Who reads the hub's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pipeline {
    /// Nobody: metrics off, no client (records are stored, no flow built).
    Stored,
    /// Metrics on: records counted by shape.
    Metrics,
    /// Metrics on, the records of 16 connections interleaved one by one,
    /// so that no record has the shape of the one before.
    MetricsInterleaved,
    /// A follower that builds every flow (as a relay's stream or an
    /// exporter does), metrics off.
    Follower,
    /// That follower, and metrics sharing the flows it built.
    FollowerAndMetrics,
    /// The flow export's follower (building every flow) offering each to a
    /// flow log file, whose own thread writes the lines.
    Export,
}

/// Reads `n` flows from `sub`; `each` gets each batch of notices.
async fn read(
    sub: &mut Subscription,
    n: usize,
    notices: &mut Vec<Notice>,
    mut each: impl FnMut(&Subscription, &mut Vec<Notice>),
) {
    let mut read = 0;
    while read < n {
        assert!(sub.next(notices).await);
        read += notices.iter().filter(|n| matches!(n, Notice::Flow(_))).count();
        each(sub, notices);
        notices.clear();
    }
}

/// What one run of a pipeline took and counted.
struct Run {
    /// The thread's CPU time; for [`Pipeline::Export`] the process's,
    /// writer included, until every line is written.
    cpu: Duration,
    /// The flows the metrics counted (their `hubble_flows_processed_total`)
    /// or the lines the flow log wrote.
    counted: u64,
    /// For [`Pipeline::Export`]: the CPU time of the flow log's own thread.
    writer: Duration,
}

/// The flow log's thread (`export-` and the exporter's name).
const WRITER: &str = "export-bench";

fn run(records: &[Vec<u8>], pipeline: Pipeline, scratch: &Path) -> Run {
    // The observer's default store, full before the run (as it is after its
    // first seconds), so that every record stored overwrites the oldest.
    let hub = Hub::new("bench", FlowStore::DEFAULT_CAPACITY);
    hub.publish(records::snapshot());
    for chunk in records[..FlowStore::DEFAULT_CAPACITY].chunks(BATCH) {
        hub.push(chunk.iter().map(|r| decode::header(r).unwrap()));
    }
    let registry = registry(EVERY_FLOW_METRIC);
    let exporters = Exporters::new("bench").with_queue_capacity(records.len() + 1);
    let log = scratch.join("flows.log");
    if pipeline == Pipeline::Export {
        let mut config = FlowLogConfig::new("bench", &log);
        config.file_max_bytes = u64::MAX;
        exporters.start_static(config).unwrap();
    }
    let writer_before = named_thread_cpu(WRITER).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let (thread, process) = rt.block_on(async {
        let mut follower = hub.follow();
        let mut counter = hub.follow();
        let mut notices = Vec::new();
        let mut flow_counter = metrics::FlowCounter::default();
        let mut batch = Vec::with_capacity(BATCH);
        let (thread, process) = (thread_cpu(), process_cpu());
        for chunk in records.chunks(BATCH) {
            batch.extend(chunk.iter().map(|r| decode::header(r).unwrap()));
            hub.push(batch.drain(..));
            match pipeline {
                Pipeline::Follower | Pipeline::FollowerAndMetrics => {
                    read(&mut follower, chunk.len(), &mut notices, |sub, notices| {
                        for n in notices.iter() {
                            if let Notice::Flow(f) = n {
                                std::hint::black_box(sub.flow(f));
                            }
                        }
                    })
                    .await
                }
                Pipeline::Export => {
                    read(&mut follower, chunk.len(), &mut notices, |sub, notices| {
                        for n in notices.iter() {
                            if let Notice::Flow(f) = n {
                                exporters.offer_flow(&sub.flow(f));
                            }
                        }
                    })
                    .await
                }
                Pipeline::Stored | Pipeline::Metrics | Pipeline::MetricsInterleaved => {}
            }
            if matches!(
                pipeline,
                Pipeline::Metrics | Pipeline::MetricsInterleaved | Pipeline::FollowerAndMetrics
            ) {
                let mut read = 0;
                while read < chunk.len() {
                    read += flow_counter.next(&mut counter, &registry).await.unwrap();
                }
            }
        }
        (thread_cpu() - thread, process)
    });
    if pipeline == Pipeline::Export {
        while exporters.stats().exporters[0].exported < records.len() as u64 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let writer = named_thread_cpu(WRITER).expect("the flow log's thread runs") - writer_before;
        let stats = exporters.stats();
        exporters.shutdown();
        let took = process_cpu() - process;
        let exporter = &stats.exporters[0];
        assert_eq!(
            exporter.dropped(DropReason::QueueFull) + exporter.dropped(DropReason::WriteError),
            0
        );
        let lines = std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&log).unwrap())).count();
        std::fs::remove_file(&log).unwrap();
        return Run {
            cpu: took,
            counted: lines as u64,
            writer,
        };
    }
    Run {
        cpu: thread,
        counted: processed(&metrics::render(&registry, &hub, None)),
        writer: Duration::ZERO,
    }
}

/// The sum of `hubble_flows_processed_total` in a scrape.
fn processed(body: &str) -> u64 {
    body.lines()
        .filter(|l| l.starts_with("hubble_flows_processed_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A hub whose flows gave `flow:sourceContext=pod;destinationContext=pod`
/// 10,000 series: 100 client pods each talking to 100 server pods.
fn ten_thousand_series() -> (Arc<Hub>, Arc<Registry>) {
    let mut snapshot = Snapshot::default();
    let pod = |net: u8, i: u8, name: String, identity: u32| {
        let meta = Arc::new(EndpointMeta {
            id: identity,
            identity,
            namespace: "default".into(),
            pod_name: name.clone(),
            labels: vec![
                format!("k8s:app={name}"),
                "k8s:io.kubernetes.pod.namespace=default".into(),
            ],
            ..Default::default()
        });
        (Ipv4Addr::new(10, net, 0, i), meta)
    };
    for i in 0..100u8 {
        for (ip, meta) in [
            pod(1, i, format!("client-{i}"), 1000 + u32::from(i)),
            pod(2, i, format!("server-{i}"), 2000 + u32::from(i)),
        ] {
            snapshot.endpoints.insert(ip.into(), meta.clone());
            snapshot.endpoints_by_id.insert(meta.identity, meta);
        }
    }
    let hub = Hub::new("bench", 1 << 14);
    hub.publish(snapshot);
    let registry = registry("flow:sourceContext=pod;destinationContext=pod");
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let mut sub = hub.follow();
        let mut counter = metrics::FlowCounter::default();
        for c in 0..100u8 {
            let records: Vec<abi::Event> = (0..100u8)
                .map(|s| {
                    let mut ev = abi::Event {
                        timestamp_ns: 1_764_000_000_000_000_000,
                        family: 4,
                        proto: 6,
                        direction: abi::DIR_INGRESS,
                        obs_point: abi::OBS_TO_ENDPOINT,
                        verdict: abi::VERDICT_FORWARDED,
                        sport: 40_000,
                        dport: 80,
                        tcp_flags: 0x02,
                        ..Default::default()
                    };
                    ev.saddr[..4].copy_from_slice(&[10, 1, 0, c]);
                    ev.daddr[..4].copy_from_slice(&[10, 2, 0, s]);
                    ev
                })
                .collect();
            hub.push(records);
            let mut read = 0;
            while read < 100 {
                read += counter.next(&mut sub, &registry).await.unwrap();
            }
        }
    });
    assert_eq!(registry.series(), 10_000);
    (hub, registry)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let records: Vec<Vec<u8>> = (0..FLOWS as u64).map(records::record).collect();
    let interleaved: Vec<Vec<u8>> = (0..FLOWS as u64).map(records::interleaved).collect();
    let pipelines = [
        Pipeline::Stored,
        Pipeline::Metrics,
        Pipeline::MetricsInterleaved,
        Pipeline::Follower,
        Pipeline::FollowerAndMetrics,
        Pipeline::Export,
    ];
    // The flow log in memory (tmpfs), so that the disk is not measured.
    let scratch = tempfile::Builder::new()
        .prefix("lumen-bench-export-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); pipelines.len()];
    let mut writer_times = Vec::new();
    // Only the follower and the export, printed (BENCHMARKS.md untouched).
    let export_only = std::env::var_os("LUMEN_BENCH_EXPORT_ONLY").is_some();
    // Interleaved, so that a disturbance hits every pipeline alike.
    for _ in 0..RUNS {
        for (i, &p) in pipelines.iter().enumerate() {
            if export_only && !matches!(p, Pipeline::Follower | Pipeline::Export) {
                times[i].push(Duration::ZERO);
                continue;
            }
            let replayed = if p == Pipeline::MetricsInterleaved {
                &interleaved
            } else {
                &records
            };
            let Run {
                cpu: took,
                counted,
                writer,
            } = run(replayed, p, scratch.path());
            if p == Pipeline::Export {
                writer_times.push(writer);
            }
            let expected = if p != Pipeline::Stored && p != Pipeline::Follower {
                FLOWS as u64
            } else {
                0
            };
            assert_eq!(counted, expected, "{p:?}: every flow counted or written, once");
            times[i].push(took);
        }
    }
    let ns = |i: usize| median(times[i].clone()).as_nanos() as f64 / FLOWS as f64;
    if export_only {
        let writer = median(writer_times).as_nanos() as f64 / FLOWS as f64;
        println!(
            "follower {:.0} ns, with export {:.0} ns, the flow log's thread {writer:.0} ns per flow",
            ns(3),
            ns(5)
        );
        return;
    }
    let (stored, metrics_on, interleaved, follower, both, export) = (ns(0), ns(1), ns(2), ns(3), ns(4), ns(5));
    let rate = |ns: f64| 1e9 / ns / 1e6;
    let writer = median(writer_times).as_nanos() as f64 / FLOWS as f64;

    let (hub, registry) = ten_thousand_series();
    let mut scrapes = Vec::new();
    let mut size = 0;
    for _ in 0..21 {
        let start = Instant::now();
        let body = metrics::render(&registry, &hub, None);
        scrapes.push(start.elapsed());
        size = body.len();
    }
    let scrape = median(scrapes);

    let mut section = String::new();
    writeln!(
        section,
        "## Flow metrics: cost per flow, and a scrape of 10,000 series\n"
    )
    .unwrap();
    writeln!(
        section,
        "Command: `cargo bench -p lumen-observer --bench consumers` ({}, kernel {}; mimalloc, the observer's allocator). {FLOWS} replayed datapath records (as in the pipeline benchmark: 3 pods, every 100th a policy drop, so 99 in 100 records have the shape of the one before) decoded and pushed into the hub's store (the default {} flows, full before the run, so that every record overwrites the oldest) {BATCH} at a time, each batch read by the consumers before the next, all on one thread; its CPU time (CLOCK_THREAD_CPUTIME_ID), median of {RUNS} runs of each pipeline, interleaved. Metrics on: every flow metric (`flow`, `drop`, `tcp`, `port-distribution`, `icmp`, `flows-to-world:any-drop;port`, `policy`), each with `sourceContext=pod;destinationContext=pod`; each run checks that metrics counted every flow exactly once. The metrics read the stored records in place and group them by shape (a record less its time, source port and length, which no metric reads); one flow is built per shape and where it counts is remembered (`lumen_metrics::Registry::process_alike`), so a record costs a comparison with the one before, or a hash lookup. Here the records come from memory, so storing one costs little and the ratio is a strict one; the observer's real pipeline (records from the kernel's ring buffer, with metrics and without) is measured by the ingest benchmark (*Observer ingest*, flow metrics in this pipeline).\n",
        machine::cpu_model(),
        machine::kernel(),
        FlowStore::DEFAULT_CAPACITY
    )
    .unwrap();
    writeln!(
        section,
        "| pipeline | CPU per flow | flows/s on one core | ratio, metrics on / off |"
    )
    .unwrap();
    writeln!(section, "|---|---:|---:|---:|").unwrap();
    writeln!(
        section,
        "| records stored, no consumer (metrics off) | {stored:.0} ns | {:.2} M | |",
        rate(stored)
    )
    .unwrap();
    writeln!(
        section,
        "| records stored, metrics on (counted by shape) | {metrics_on:.0} ns | {:.2} M | {:.3} (budget ≥ 0.9: **{}**) |",
        rate(metrics_on),
        stored / metrics_on,
        if stored / metrics_on >= 0.9 { "met" } else { "missed" }
    )
    .unwrap();
    writeln!(
        section,
        "| the same, the records of 16 connections interleaved (no record has the shape of the one before: a hash lookup each) | {interleaved:.0} ns | {:.2} M | {:.3} |",
        rate(interleaved),
        stored / interleaved,
    )
    .unwrap();
    writeln!(
        section,
        "| records stored, a follower building every flow (a relay's stream, an exporter), metrics off | {follower:.0} ns | {:.2} M | |",
        rate(follower)
    )
    .unwrap();
    writeln!(
        section,
        "| the same follower, metrics on | {both:.0} ns | {:.2} M | {:.3} (budget ≥ 0.9: **{}**) |",
        rate(both),
        follower / both,
        if follower / both >= 0.9 { "met" } else { "missed" }
    )
    .unwrap();
    writeln!(
        section,
        "| records stored, the export's follower offering every flow to a flow log file (no mask or filter; its own thread writes the lines, to tmpfs; CPU of both threads until every line is written) | {export:.0} ns | {:.2} M | {:.3} against a follower with export off (all the CPU export costs; whether it slows the observer is measured in its pipeline: *Observer ingest*) |",
        rate(export),
        follower / export,
    )
    .unwrap();
    writeln!(
        section,
        "\nFile export alone, the flow log's own thread (its CPU time until the last line was written: each flow written as a line of Hubble's JSON straight from the flow by `lumen_flow::jsonpb`, the lines written to the file 256 KiB at a time; the flows written are handed back to the follower's thread, which frees them): {writer:.0} ns per flow, {:.0} k flows/s on one core (budget ≥ 500 k/s: **{}**). Offering each flow to it, and freeing it afterwards, cost the follower {:.0} ns.",
        1e6 / writer,
        if 1e6 / writer >= 500.0 { "met" } else { "missed" },
        export - follower - writer,
    )
    .unwrap();
    writeln!(
        section,
        "\nCounting alone, every metric with pod contexts: {:.0} ns per record by shape ({:.0} ns interleaved); building a flow from its stored record: {:.0} ns.\n",
        metrics_on - stored,
        interleaved - stored,
        follower - stored
    )
    .unwrap();
    writeln!(
        section,
        "Scrape: `flow:sourceContext=pod;destinationContext=pod` holding 10,000 series (100 client pods × 100 server pods), rendered as `/metrics` serves it (the flow metrics and the observer's own counters): {:.1} ms (median of 21), {:.0} KiB.",
        scrape.as_secs_f64() * 1e3,
        size as f64 / 1024.0
    )
    .unwrap();
    print!("{section}");
    benchmarks_md::update_benchmarks("consumers", &section);
}
