//! OTLP log export into the test receiver (export/tests/otlp/receiver.py,
//! built from the official protos): records per second from the first
//! offer until the collector has accepted every one, over gRPC and over
//! HTTP/protobuf with gzip, and the exporter's own CPU time per record
//! (this process; the receiver is another). Results go to BENCHMARKS.md.
//!
//! Run: `cargo bench -p lumen-export --bench otlp` (after scripts/setup.sh,
//! which makes the receiver's Python venv).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lumen_export::otlp::{Compression, Protocol, Target};
use lumen_export::{Otlp, OtlpService, OtlpSettings};

#[path = "../../observer/benches/support/benchmarks_md.rs"]
mod benchmarks_md;
#[path = "../tests/otlp/flows.rs"]
#[allow(dead_code)]
mod flows;
#[path = "../tests/otlp/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../../observer/benches/support/machine.rs"]
mod machine;

const RECORDS: u64 = 100_000;

fn process_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall time and this process's CPU time to get `RECORDS` flows accepted.
fn run(target: Target) -> (Duration, Duration) {
    let settings = OtlpSettings {
        logs: Some(target),
        metrics: None,
        queue_size: RECORDS as usize,
        retry_max_elapsed: Duration::from_secs(60),
        cluster_name: Some("bench".into()),
    };
    let service = OtlpService {
        service_name: "lumen-observer".into(),
        node_name: "node1".into(),
    };
    let mut otlp = Otlp::start(&settings, &service, None).unwrap();
    let flow = Arc::new(flows::dropped());
    let (wall, cpu) = (Instant::now(), process_cpu());
    for _ in 0..RECORDS {
        otlp.offer_flow(&flow);
    }
    loop {
        let logs = otlp.stats().logs.unwrap();
        assert_eq!(logs.dropped_queue_full + logs.dropped_write_error, 0, "{logs:?}");
        if logs.exported == RECORDS {
            break;
        }
        assert!(wall.elapsed() < Duration::from_secs(600), "{logs:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = (wall.elapsed(), process_cpu() - cpu);
    otlp.shutdown();
    took
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let receiver = harness::Receiver::start_counting();
    let grpc = Target {
        endpoint: receiver.grpc_endpoint(),
        protocol: Protocol::Grpc,
        headers: Vec::new(),
        compression: Compression::None,
        ca_file: None,
        timeout: Duration::from_secs(30),
    };
    let http = Target {
        endpoint: receiver.http_endpoint("/v1/logs"),
        protocol: Protocol::HttpProtobuf,
        compression: Compression::Gzip,
        ..grpc.clone()
    };
    let mut section = String::new();
    writeln!(section, "## OTLP log export into the test receiver\n").unwrap();
    writeln!(
        section,
        "Command: `cargo bench -p lumen-export --bench otlp` ({}, kernel {}). {RECORDS} flows (a policy drop with pod endpoints, labels and policies) offered to the OTLP log exporter as fast as it takes them, into the Python receiver built from the official OpenTelemetry protos (it decodes each request, counts its records and writes the count: `--count-only`); wall time from the first offer until the collector accepted the last record, none dropped. The exporter's CPU is this process's (its queue thread and the SDK's one-thread runtime); the receiver's is not counted.\n",
        machine::cpu_model(),
        machine::kernel()
    )
    .unwrap();
    writeln!(
        section,
        "| transport | records/s into the receiver | exporter CPU per record |"
    )
    .unwrap();
    writeln!(section, "|---|---:|---:|").unwrap();
    for (name, target) in [("gRPC", grpc), ("HTTP/protobuf, gzip", http)] {
        let (wall, cpu) = run(target);
        writeln!(
            section,
            "| {name} | {:.0} k | {:.1} µs |",
            RECORDS as f64 / wall.as_secs_f64() / 1e3,
            cpu.as_secs_f64() * 1e6 / RECORDS as f64
        )
        .unwrap();
    }
    print!("{section}");
    benchmarks_md::update_benchmarks("otlp", &section);
}
