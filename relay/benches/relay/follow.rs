//! (3) Follow: latency from the flow store to the client at steady rates,
//! and the relay at full rate.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lumen_observer::hub::Hub;
use lumen_proto::observer::GetFlowsRequest;

use crate::cluster::{record, summaries, wall_ns, Node};
use crate::numbers::{count, median, mib, min_max, quantile, verdict};
use crate::threads::{cpu_ns, mark_bench_thread, relay_heap_mark, relay_heap_peak_since};
use crate::{row, BUDGET_FLOWS_PER_S, BUDGET_P99_MS, NODES, PER_NODE};

pub struct Follow {
    rate: usize,
    seconds: f64,
    sent: usize,
    received: usize,
    lost: u64,
    /// Flow store to client, ms, sorted.
    latency_ms: Vec<f64>,
    /// Flows received per second of the run (first push to last flow).
    delivered_per_s: f64,
    relay_heap_peak: usize,
    relay_cpu_ns_per_flow: f64,
}

/// A follow stream through the relay while a producer stores `rate` flows/s
/// (spread over the nodes) for `seconds`, each stamped with the wall clock
/// at the moment it is stored.
pub async fn follow(relay: SocketAddr, nodes: &[Node], rate: usize, seconds: f64) -> Follow {
    let req = GetFlowsRequest {
        follow: true,
        ..Default::default()
    };
    let mut stream = summaries(relay, req).await;
    match stream.message().await.unwrap() {
        Some(r) if r.flow.is_none() && r.lost_events.is_none() => assert!(r.node_name.starts_with("node-")),
        other => panic!("expected the nodes' status first, got {other:?}"),
    }
    let per_node = (rate as f64 * seconds) as usize / NODES;
    let sent = per_node * NODES;
    let hubs: Vec<Arc<Hub>> = nodes.iter().map(|n| n.hub.clone()).collect();
    let heap = relay_heap_mark();
    let relay_cpu = cpu_ns(true);
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            mark_bench_thread();
            let mut stored = 0;
            while stored < per_node && !stop.load(Relaxed) {
                let due = ((rate as f64 / NODES as f64) * start.elapsed().as_secs_f64()) as usize;
                let due = due.min(per_node);
                for hub in hubs.iter().filter(|_| due > stored) {
                    let now = wall_ns();
                    hub.push((stored..due).map(|k| record(k as u64, now)));
                }
                stored = stored.max(due);
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let (mut received, mut lost, mut latency_ms, mut last) = (0, 0, Vec::with_capacity(sent), start);
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds + 30.0);
    while received < sent {
        let Ok(r) = tokio::time::timeout_at(deadline, stream.message()).await else {
            break;
        };
        let r = r.unwrap().expect("the follow stream goes on");
        if r.flow.is_some() {
            latency_ms.push((wall_ns() as i128 - r.time_ns()) as f64 / 1e6);
            received += 1;
            last = Instant::now();
        }
        lost += r.lost();
    }
    stop.store(true, Relaxed);
    producer.join().unwrap();
    latency_ms.sort_by(f64::total_cmp);
    Follow {
        rate,
        seconds,
        sent,
        received,
        lost,
        latency_ms,
        delivered_per_s: received as f64 / last.duration_since(start).as_secs_f64(),
        relay_heap_peak: relay_heap_peak_since(heap),
        relay_cpu_ns_per_flow: (cpu_ns(true) - relay_cpu) as f64 / received.max(1) as f64,
    }
}

impl Follow {
    pub fn rows(&self) -> String {
        let (p50, p99, max) = (
            quantile(&self.latency_ms, 0.5),
            quantile(&self.latency_ms, 0.99),
            quantile(&self.latency_ms, 1.0),
        );
        let all = self.received == self.sent;
        if self.rate <= 100_000 {
            return row(
                &format!(
                    "follow latency, flow store → client, {} flows/s ({}/s per node, {:.0} s, {} of {} flows received, {} reported lost): p50 / p99 / max",
                    count(self.rate),
                    count(self.rate / NODES),
                    self.seconds,
                    count(self.received),
                    count(self.sent),
                    self.lost
                ),
                &format!("{p50:.1} / {p99:.1} / {max:.1} ms"),
                &format!("p99 ≤ 100 ms: {}", verdict(p99 <= BUDGET_P99_MS && all)),
            );
        }
        [
            row(
                &format!(
                    "follow at full rate: {} flows/s offered for {:.0} s ({} flows), read until all arrived",
                    count(self.rate),
                    self.seconds,
                    count(self.sent)
                ),
                &format!(
                    "{:.0} k flows/s delivered (what the 8 observers and the producer on CPU 0 make); {} received, {} reported lost; latency p50 / p99 {p50:.0} / {p99:.0} ms; relay CPU {:.0} ns per flow → {:.0} k flows/s on one core",
                    self.delivered_per_s / 1e3,
                    count(self.received),
                    self.lost,
                    self.relay_cpu_ns_per_flow,
                    1e6 / self.relay_cpu_ns_per_flow
                ),
                &format!(
                    "≥ 1,000 k/s on one core: {}",
                    verdict(1e9 / self.relay_cpu_ns_per_flow >= BUDGET_FLOWS_PER_S && all)
                ),
            ),
            row("relay heap peak, follow at full rate", &format!("{:.1} MiB", mib(self.relay_heap_peak)), "none set"),
        ]
        .concat()
    }
}

/// The follow path with nothing in front of it to wait for: the replaying
/// nodes answer a follow stream with their whole recorded answer at once
/// (then keep it open), so the relay's sort window is full throughout and
/// the relay, not the nodes, sets the rate.
pub struct Saturated {
    received: usize,
    /// Flows whose time is earlier than the one before (the window is
    /// bounded: a node far behind the others may come out of order).
    out_of_order: usize,
    /// First flow to last, flows per second.
    flows_per_s: Vec<f64>,
    relay_cpu_ns_per_flow: Vec<f64>,
    relay_heap_peak: usize,
}

pub async fn follow_saturated(relay: SocketAddr, runs: usize) -> Saturated {
    let expected = NODES * PER_NODE;
    let mut s = Saturated {
        received: 0,
        out_of_order: 0,
        flows_per_s: Vec::new(),
        relay_cpu_ns_per_flow: Vec::new(),
        relay_heap_peak: 0,
    };
    for _ in 0..runs {
        let heap = relay_heap_mark();
        let req = GetFlowsRequest {
            follow: true,
            ..Default::default()
        };
        let relay_cpu = cpu_ns(true);
        let mut stream = summaries(relay, req).await;
        let (mut received, mut first, mut last_time) = (0, None, 0i128);
        while received < expected {
            let r = tokio::time::timeout(Duration::from_secs(30), stream.message())
                .await
                .expect("the replaying nodes' flows keep coming")
                .unwrap()
                .expect("the follow stream goes on");
            if r.flow.is_some() {
                first.get_or_insert_with(Instant::now);
                s.out_of_order += usize::from(r.time_ns() < last_time);
                last_time = r.time_ns();
                received += 1;
            }
        }
        let wall = first.expect("flows arrived").elapsed().as_secs_f64();
        s.flows_per_s.push(received as f64 / wall);
        s.relay_cpu_ns_per_flow
            .push((cpu_ns(true) - relay_cpu) as f64 / received as f64);
        s.relay_heap_peak = s.relay_heap_peak.max(relay_heap_peak_since(heap));
        s.received += received;
        drop(stream);
        // The relay notices the client left and closes the nodes' streams.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s
}

impl Saturated {
    pub fn relay_ns_per_flow(&self) -> f64 {
        median(&self.relay_cpu_ns_per_flow)
    }

    pub fn rows(&self) -> String {
        let rate = median(&self.flows_per_s);
        let (lo, hi) = min_max(&self.flows_per_s);
        let cpu = median(&self.relay_cpu_ns_per_flow);
        let runs = self.flows_per_s.len();
        [
            row(
                &format!(
                    "follow, saturated: 8 nodes (replaying) → relay → client, a follow stream that starts with {} flows waiting at the nodes, first flow to last, wall clock",
                    count(NODES * PER_NODE)
                ),
                &format!(
                    "{:.0} k/s (median of {runs}; min {:.0} k, max {:.0} k); {} of {} flows out of time order",
                    rate / 1e3,
                    lo / 1e3,
                    hi / 1e3,
                    self.out_of_order,
                    count(self.received)
                ),
                &format!("≥ 1,000 k/s on one core: {}", verdict(rate >= BUDGET_FLOWS_PER_S)),
            ),
            row(
                "the relay's CPU time per flow in those runs (all its threads) → its one-core ceiling",
                &format!("{cpu:.0} ns → {:.0} k flows/s", 1e6 / cpu),
                &format!("≥ 1,000 k/s: {}", verdict(1e9 / cpu >= BUDGET_FLOWS_PER_S)),
            ),
            row(
                "relay heap peak, follow saturated",
                &format!("{:.1} MiB", mib(self.relay_heap_peak)),
                "none set",
            ),
        ]
        .concat()
    }
}
