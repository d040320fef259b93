//! (1) Merge throughput end to end: one non-follow `GetFlows` of everything
//! the nodes hold, through the relay.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::GetFlowsRequest;

use crate::cluster::{connect, summaries};
use crate::numbers::{count, median, mib, min_max, verdict};
use crate::threads::{cpu_ns, relay_heap_mark, relay_heap_peak_since, status_kib, COUNTING, RELAY_LIVE};
use crate::{row, BUDGET_FLOWS_PER_S, NODES, PER_NODE, REAL, THROUGHPUT_RUNS};

#[derive(Default)]
pub struct Throughput {
    /// Where the nodes' answers come from.
    source: &'static str,
    flows_per_s: Vec<f64>,
    first_flow_ms: Vec<f64>,
    relay_cpu_ns_per_flow: Vec<f64>,
    /// CPU time over wall time: the relay's threads, the benchmark's.
    relay_cpu_share: Vec<f64>,
    bench_cpu_share: Vec<f64>,
    relay_heap_peak: usize,
    relay_heap_at_rest: usize,
    rss_kib: (usize, usize),
}

pub async fn throughput(relay: SocketAddr, source: &'static str) -> Throughput {
    let mut t = Throughput {
        source,
        relay_heap_at_rest: RELAY_LIVE.load(Relaxed).max(0) as usize,
        ..Default::default()
    };
    let rss_before = status_kib("VmRSS:");
    // The timed runs, then one more with the relay's heap counted.
    for run in 0..=THROUGHPUT_RUNS {
        let timed = run < THROUGHPUT_RUNS;
        COUNTING.store(!timed, Relaxed);
        let heap = relay_heap_mark();
        let (relay_cpu, bench_cpu) = (cpu_ns(true), cpu_ns(false));
        let start = Instant::now();
        let mut stream = summaries(relay, GetFlowsRequest::default()).await;
        let (mut flows, mut first, mut last, mut in_order) = (0usize, None, 0i128, true);
        while let Some(r) = stream.message().await.unwrap() {
            if r.flow.is_some() {
                first.get_or_insert_with(|| start.elapsed());
                let at = r.time_ns();
                in_order &= at >= last;
                last = at;
                flows += 1;
            }
        }
        let wall = start.elapsed().as_nanos() as f64;
        assert_eq!(flows, NODES * PER_NODE, "every stored flow comes through the relay");
        assert!(in_order, "the relay's answer is in time order");
        if !timed {
            t.relay_heap_peak = relay_heap_peak_since(heap);
            break;
        }
        let (relay_cpu, bench_cpu) = ((cpu_ns(true) - relay_cpu) as f64, (cpu_ns(false) - bench_cpu) as f64);
        t.flows_per_s.push(flows as f64 / wall * 1e9);
        t.first_flow_ms.push(first.unwrap_or_default().as_secs_f64() * 1e3);
        t.relay_cpu_ns_per_flow.push(relay_cpu / flows as f64);
        t.relay_cpu_share.push(relay_cpu / wall);
        t.bench_cpu_share.push(bench_cpu / wall);
    }
    t.rss_kib = (rss_before, status_kib("VmRSS:"));
    t
}

/// Every flow through the relay is a whole flow as the node built it.
pub async fn check_integrity(relay: SocketAddr) {
    let mut c = connect(relay).await;
    let request = GetFlowsRequest {
        number: 1_000,
        ..Default::default()
    };
    let mut s = c.get_flows(request).await.unwrap().into_inner();
    let mut flows = 0;
    while let Some(r) = s.message().await.unwrap() {
        if let Some(ResponseTypes::Flow(f)) = r.response_types {
            assert!(r.node_name.starts_with("node-"));
            assert_eq!(f.node_name, r.node_name);
            assert_eq!(f.source.unwrap().pod_name, "frontend-7d9f8b6c5-x2k4q");
            flows += 1;
        }
    }
    assert_eq!(flows, 1_000);
}

impl Throughput {
    pub fn relay_ns_per_flow(&self) -> f64 {
        median(&self.relay_cpu_ns_per_flow)
    }

    pub fn rows(&self) -> String {
        let total = NODES * PER_NODE;
        let rate = median(&self.flows_per_s);
        let (lo, hi) = min_max(&self.flows_per_s);
        let cpu = median(&self.relay_cpu_ns_per_flow);
        let mut rows = vec![
            row(
                &format!("merged flows/s, 8 nodes ({}) → relay → client over gRPC on TCP (non-follow `GetFlows` of all {} flows), wall clock", self.source, count(total)),
                &format!("{:.0} k/s (median of {THROUGHPUT_RUNS}; min {:.0} k, max {:.0} k)", rate / 1e3, lo / 1e3, hi / 1e3),
                &if self.source == REAL {
                    // The whole chain's rate, set by whichever CPU is full.
                    format!(
                        "none for the chain: CPU 0 (observers, client) is {:.0} % busy, the relay's {:.0} %; the relay's budget is the next row",
                        median(&self.bench_cpu_share) * 100.0,
                        median(&self.relay_cpu_share) * 100.0
                    )
                } else {
                    format!("≥ 1,000 k/s on one core: {}", verdict(rate >= BUDGET_FLOWS_PER_S))
                },
            ),
            row(
                &format!(
                    "the relay's CPU time per merged flow in those runs (all its threads; its CPU {:.0} % busy; the nodes and the client took {:.0} ns per flow on the other, {:.0} % busy) → its one-core ceiling",
                    median(&self.relay_cpu_share) * 100.0,
                    median(&self.bench_cpu_share) / rate * 1e9,
                    median(&self.bench_cpu_share) * 100.0
                ),
                &format!("{cpu:.0} ns → {:.0} k flows/s", 1e6 / cpu),
                &format!("≥ 1,000 k/s: {}", verdict(1e9 / cpu >= BUDGET_FLOWS_PER_S)),
            ),
            row("time to the first flow of that answer", &format!("{:.0} ms (median)", median(&self.first_flow_ms)), "none set"),
            row(
                &format!("relay heap peak, non-follow answer of {} flows", count(total)),
                &format!(
                    "{:.1} MiB (batches in flight, whatever the answer's size; {:.1} MiB with 8 nodes connected and no query)",
                    mib(self.relay_heap_peak),
                    mib(self.relay_heap_at_rest)
                ),
                "none set",
            ),
        ];
        if self.source == REAL {
            rows.push(row(
                &format!(
                    "process RSS (8 observers holding {} flows each, relay, client) before / after those runs",
                    count(PER_NODE)
                ),
                &format!(
                    "{:.0} / {:.0} MiB",
                    self.rss_kib.0 as f64 / 1024.0,
                    self.rss_kib.1 as f64 / 1024.0
                ),
                "",
            ));
        }
        rows.concat()
    }
}
