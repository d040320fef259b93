//! Flows folded into the model per second on one core (`lumen top` and
//! `lumen-ui` fold every flow of the cluster's stream), and what a snapshot
//! costs. Run: `cargo bench -p lumen-model --bench fold`.
//!
//! The flows are what a relay sends for a cluster of 200 workloads of 5
//! pods each in 10 namespaces: each pod talks to 5 peers on a port, replies
//! flow back, every 50th is a policy drop naming its policy. 200,000
//! distinct flows are built once and replayed five times with advancing
//! times (1,000,000 flows at 100,000 a second of flow time), so building
//! them is not what is timed. Times are the thread's CPU time.

#[path = "../../observer/benches/support/benchmarks_md.rs"]
mod benchmarks_md;
#[path = "../../observer/benches/support/machine.rs"]
mod machine;

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use lumen_model::{Config, Model, Windows};
use lumen_proto::flow::{DropReason, Endpoint, Flow, Ip, Layer4, Policy, Tcp, TcpFlags, TrafficDirection, Verdict};
use lumen_proto::prost_types::Timestamp;

const WORKLOADS: usize = 200;
const PODS: usize = 5;
const DISTINCT: usize = 200_000;
const ROUNDS: usize = 5;
const RATE: u64 = 100_000;

fn endpoint(w: usize, p: usize) -> Endpoint {
    Endpoint {
        id: (w * PODS + p) as u32,
        identity: 10_000 + w as u32,
        cluster_name: "default".into(),
        namespace: format!("ns{}", w % 10),
        labels: vec![
            format!("k8s:app=svc{w}"),
            format!("k8s:io.kubernetes.pod.namespace=ns{}", w % 10),
            "k8s:tier=backend".into(),
        ],
        pod_name: format!("svc{w}-7d9f8b6c5-{p:05}"),
        workloads: vec![lumen_proto::flow::Workload {
            name: format!("svc{w}"),
            kind: "Deployment".into(),
        }],
    }
}

fn ip(w: usize, p: usize) -> String {
    format!("10.{}.{}.{}", w / 250, w % 250, p + 1)
}

fn flow(i: usize) -> Flow {
    let (w, p) = ((i / 7) % WORKLOADS, i % PODS);
    let peer = (w + 1 + i % 5) % WORKLOADS;
    let reply = !i.is_multiple_of(2);
    let dropped = i.is_multiple_of(50);
    let (src, dst) = ((w, p), (peer, (i / 3) % PODS));
    let (src, dst) = if reply { (dst, src) } else { (src, dst) };
    Flow {
        time: None,
        verdict: if dropped { Verdict::Dropped } else { Verdict::Forwarded } as i32,
        drop_reason_desc: if dropped { DropReason::PolicyDenied as i32 } else { 0 },
        ip: Some(Ip {
            source: ip(src.0, src.1),
            destination: ip(dst.0, dst.1),
            ip_version: 1,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(lumen_proto::flow::layer4::Protocol::Tcp(Tcp {
                source_port: if reply { 8080 } else { 40_000 + (i % 20_000) as u32 },
                destination_port: if reply { 40_000 + (i % 20_000) as u32 } else { 8080 },
                flags: Some(TcpFlags {
                    ack: true,
                    ..Default::default()
                }),
            })),
        }),
        source: Some(endpoint(src.0, src.1)),
        destination: Some(endpoint(dst.0, dst.1)),
        node_name: format!("node-{}", w % 3),
        is_reply: Some(reply),
        traffic_direction: TrafficDirection::Egress as i32,
        ingress_denied_by: if dropped {
            vec![Policy {
                name: format!("deny-{peer}"),
                namespace: format!("ns{}", peer % 10),
                kind: "CiliumNetworkPolicy".into(),
                ..Default::default()
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

/// This thread's CPU time: what folding costs on one core, whatever else
/// the machine runs meanwhile.
fn cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut flows: Vec<Flow> = (0..DISTINCT).map(flow).collect();
    let start_ns: u64 = 1_764_000_000_000_000_000;
    let mut model = Model::new(Config::default());
    let mut folded = 0u64;
    let mut spent = Duration::ZERO;
    for round in 0..ROUNDS {
        for (i, f) in flows.iter_mut().enumerate() {
            let n = (round * DISTINCT + i) as u64;
            let ns = start_ns + n * 1_000_000_000 / RATE;
            f.time = Some(Timestamp {
                seconds: (ns / 1_000_000_000) as i64,
                nanos: (ns % 1_000_000_000) as i32,
            });
        }
        let t = cpu();
        for f in &flows {
            model.ingest(f);
        }
        spent += cpu() - t;
        folded += flows.len() as u64;
    }
    let now = UNIX_EPOCH + Duration::from_nanos(start_ns + folded * 1_000_000_000 / RATE);
    let mut snapshots = Vec::new();
    for _ in 0..5 {
        let t = cpu();
        let s = model.snapshot(now, Windows::default());
        snapshots.push(cpu() - t);
        std::hint::black_box(s);
    }
    snapshots.sort();
    let rate = folded as f64 / spent.as_secs_f64();
    let mut rows = String::new();
    let _ = writeln!(
        rows,
        "| flows folded into the model, one core ({folded} flows, {DISTINCT} distinct, default capacities) | {:.2} M/s ({:.0} ns per flow) | ≥ 2 M/s |",
        rate / 1e6,
        spent.as_nanos() as f64 / folded as f64
    );
    let _ = writeln!(
        rows,
        "| a snapshot of every table (what `lumen top` takes up to ten times a second) | {:.1} ms (median of 5) | |",
        snapshots[2].as_secs_f64() * 1e3
    );
    print!("{rows}");
    let section = format!(
        "## Aggregation model (`lumen top`, web UI): folding flows\n\n\
         Command: `cargo bench -p lumen-model --bench fold`.\n\
         Machine: {}, kernel {}.\n\n\
         | measure | result | budget |\n|---|---:|---|\n{rows}\n\
         How it is set up: flows as a relay sends them for 200 workloads of 5 pods in 10 namespaces (labels, \
         workloads, addresses, ports; half are replies, every 50th a policy drop naming its policy), 200,000 distinct \
         flows built once and folded five times with advancing times (100,000 a second of flow time), so that building \
         them is not timed; times are the thread's CPU time.\n",
        machine::cpu_model(),
        machine::kernel(),
    );
    benchmarks_md::update_benchmarks("model", &section);
}
