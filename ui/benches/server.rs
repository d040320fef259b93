//! lumen-ui's server side, measured in process: flows aggregated per
//! second on one core (each response stored in the ring and folded into the
//! default view: all namespaces, workloads), with and without decoding it
//! from the bytes the relay sends; the memory the server holds with 500
//! workloads and 5,000 edges and a full ring; and the time to build the map
//! the browser gets. Results go to BENCHMARKS.md.
//!
//! Run: `cargo bench -p lumen-ui --bench server` (no root needed).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lumen_model::Unit;
use lumen_proto::flow::{layer4, Endpoint, Flow, IpVersion, Layer4, Tcp, Verdict};
use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use lumen_proto::prost::Message;
use lumen_proto::prost_types::Timestamp;
use lumen_ui::hub::{Hub, ViewKey};
use lumen_ui::query::ViewQuery;

#[path = "../../observer/benches/support/benchmarks_md.rs"]
mod benchmarks_md;
#[path = "../../observer/benches/support/machine.rs"]
mod machine;

const WORKLOADS: usize = 500;
const EDGES: usize = 5_000;
const FLOWS: usize = 1_000_000;
/// lumen-ui's default `--ring`.
const RING: usize = lumen_ui::DEFAULT_RING;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn endpoint(w: usize) -> Endpoint {
    let namespace = format!("ns{}", w % 5);
    Endpoint {
        id: w as u32 + 1,
        identity: 10_000 + w as u32,
        labels: vec![
            format!("k8s:app=workload-{w}"),
            format!("k8s:io.kubernetes.pod.namespace={namespace}"),
        ],
        pod_name: format!("workload-{w}-{:05x}", w * 7919 % 65_536),
        namespace,
        ..Default::default()
    }
}

/// Flow `i`: on edge `i % EDGES` (workload s to s + 1 + i / 500 mod 500:
/// 5,000 distinct pairs), one a second per edge, every 50th dropped.
fn response(i: usize, start: u64) -> GetFlowsResponse {
    let e = i % EDGES;
    let (s, d) = (e % WORKLOADS, (e % WORKLOADS + 1 + e / WORKLOADS) % WORKLOADS);
    let time = Some(Timestamp {
        seconds: (start + (i / EDGES) as u64) as i64,
        nanos: (i % EDGES) as i32 * 100,
    });
    let flow = Flow {
        time,
        verdict: if i.is_multiple_of(50) {
            Verdict::Dropped
        } else {
            Verdict::Forwarded
        } as i32,
        ip: Some(lumen_proto::flow::Ip {
            source: format!("10.{}.{}.{}", s / 250, s % 250, 1),
            destination: format!("10.{}.{}.{}", d / 250, d % 250, 1),
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(layer4::Protocol::Tcp(Tcp {
                source_port: 30_000 + (i % 20_000) as u32,
                destination_port: 8080,
                flags: None,
            })),
        }),
        source: Some(endpoint(s)),
        destination: Some(endpoint(d)),
        node_name: format!("node{}", s % 3),
        ..Default::default()
    };
    GetFlowsResponse {
        node_name: flow.node_name.clone(),
        time,
        response_types: Some(ResponseTypes::Flow(flow)),
    }
}

/// RSS growth of a fresh process (this benchmark, run with `--memory`)
/// that feeds `flows` flows into a hub with a ring of `ring`: freed memory
/// of another measurement cannot hide any of it.
fn held_in_own_process(ring: usize, flows: usize) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--memory", &ring.to_string(), &flows.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
}

/// `--memory RING FLOWS`: prints the RSS growth of feeding the hub.
fn memory(ring: usize, flows: usize) {
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 600;
    let key = ViewKey {
        filter: String::new(),
        unit: Unit::Workload,
        last: None,
    };
    let before = rss_bytes();
    let mut hub = Hub::new(ring);
    hub.view(&key).unwrap();
    for i in 0..flows {
        hub.respond(response(i, start));
    }
    println!("{}", rss_bytes().saturating_sub(before));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(at) = args.iter().position(|a| a == "--memory") {
        memory(args[at + 1].parse().unwrap(), args[at + 2].parse().unwrap());
        return;
    }
    let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - 600;
    let encoded: Vec<Vec<u8>> = (0..FLOWS).map(|i| response(i, start).encode_to_vec()).collect();
    let key = ViewKey {
        filter: String::new(),
        unit: Unit::Workload,
        last: None,
    };

    // Decoding alone, to take from the total below.
    let cpu = thread_cpu();
    for bytes in &encoded {
        std::hint::black_box(GetFlowsResponse::decode(bytes.as_slice()).unwrap());
    }
    let decode_cpu = thread_cpu() - cpu;

    let mut hub = Hub::new(RING);
    hub.view(&key).unwrap();
    let cpu = thread_cpu();
    for bytes in &encoded {
        hub.respond(GetFlowsResponse::decode(bytes.as_slice()).unwrap());
    }
    let total = thread_cpu() - cpu;
    let held = held_in_own_process(RING, FLOWS);
    let small = held_in_own_process(5_000, EDGES * 20);
    let aggregate = total.saturating_sub(decode_cpu);

    let now = UNIX_EPOCH + Duration::from_secs(start + (FLOWS / EDGES) as u64);
    let query = ViewQuery {
        unit: Unit::Workload,
        limit: 100,
        ..Default::default()
    };
    let view = hub.view(&key).unwrap();
    let t = std::time::Instant::now();
    let map = lumen_ui::map::build(view, &query, now);
    let build = t.elapsed();
    let nodes = map.nodes.len();
    let edges = map.edges.len();

    let rate = |d: Duration| FLOWS as f64 / d.as_secs_f64() / 1e6;
    let mut section = String::new();
    writeln!(section, "## Web UI server: aggregation and memory\n").unwrap();
    writeln!(
        section,
        "Command: `cargo bench -p lumen-ui --bench server` ({}, kernel {}). {FLOWS} flows between {WORKLOADS} workloads in 5 namespaces on {EDGES} distinct edges (every 50th dropped), fed on one thread into lumen-ui's hub as its link does: each response kept in the ring (--ring {RING}) and folded into the default view (all namespaces, workloads). CPU time of the thread.\n",
        machine::cpu_model(),
        machine::kernel()
    )
    .unwrap();
    writeln!(section, "| measure | result | budget |").unwrap();
    writeln!(section, "|---|---:|---|").unwrap();
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    writeln!(
        section,
        "| flows aggregated per second, one core (decoded responses in: the decoding-only pass's time taken off) | {:.2} M | ≥ 1 M/s: **{}** |",
        rate(aggregate),
        verdict(rate(aggregate) >= 1.0)
    )
    .unwrap();
    writeln!(
        section,
        "| the same, decoding each response from the relay's bytes first | {:.2} M | |",
        rate(total)
    )
    .unwrap();
    writeln!(
        section,
        "| memory held: full ring of {RING} responses, {nodes} workloads and {edges} edges on the map (RSS growth of a fresh process fed {FLOWS} flows) | {:.0} MiB | ≤ 100 MiB: **{}** |",
        held as f64 / (1 << 20) as f64,
        verdict(held <= 100 << 20)
    )
    .unwrap();
    writeln!(
        section,
        "| the same with `--ring 5000` (views and map; {} flows) | {:.0} MiB | |",
        EDGES * 20,
        small as f64 / (1 << 20) as f64
    )
    .unwrap();
    writeln!(
        section,
        "| the map of that view, built for the browser | {:.1} ms | |",
        build.as_secs_f64() * 1e3
    )
    .unwrap();
    print!("{section}");
    benchmarks_md::update_benchmarks("ui-server", &section);
}
