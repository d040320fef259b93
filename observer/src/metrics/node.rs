//! Lumen's own node metrics, read at scrape time: the datapath's per-CPU
//! packet and event counters (summed over CPUs, as `lumen status` reads
//! them), the process, and the policy revision and apply durations.
//!
//! Reading never changes a count: the event counters' `lost` is left to
//! the reader, which reports it once into the loss accounting.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lumen_probes::abi;
use prometheus::core::Collector;
use prometheus::proto::{Counter, Gauge, Metric, MetricFamily, MetricType};
use prometheus::{Histogram, HistogramOpts};

use super::http::{counter, family};
use super::process;
use crate::counters;
use crate::hub::Hub;

/// The policy side, shared by the node state (which writes it) and the
/// scrape (which reads it).
#[derive(Debug)]
pub struct PolicyMetrics {
    revision: AtomicU64,
    apply_seconds: Histogram,
}

impl Default for PolicyMetrics {
    fn default() -> PolicyMetrics {
        let opts = HistogramOpts::new(
            "lumen_policy_apply_duration_seconds",
            "Time to apply or delete policies through the control API, from the request to the datapath's commit (rejected requests too)",
        )
        // From a few policies (milliseconds) to thousands of endpoints × rules.
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        PolicyMetrics {
            revision: AtomicU64::new(0),
            apply_seconds: Histogram::with_opts(opts).expect("valid histogram options"),
        }
    }
}

impl PolicyMetrics {
    /// The datapath committed policy revision `revision`.
    pub fn set_revision(&self, revision: u32) {
        self.revision.store(u64::from(revision), Ordering::Relaxed);
    }

    /// A policy apply or delete took `took`.
    pub fn observe_apply(&self, took: Duration) {
        self.apply_seconds.observe(took.as_secs_f64());
    }

    fn families(&self) -> Vec<MetricFamily> {
        let mut g = Gauge::default();
        g.set_value(self.revision.load(Ordering::Relaxed) as f64);
        let mut m = Metric::default();
        m.set_gauge(g);
        let mut out = vec![family(
            "lumen_policy_revision",
            "The policy revision the datapath decides under; bumped by every policy or endpoint change",
            MetricType::GAUGE,
            vec![m],
        )];
        out.extend(self.apply_seconds.collect());
        out
    }
}

/// Where the node's own metrics come from.
#[derive(Clone, Debug)]
pub struct Node {
    pub pin_dir: PathBuf,
    pub policy: Arc<PolicyMetrics>,
    pub ring_buffer_bytes: u32,
}

/// Hubble's `TrafficDirection` names.
fn direction(d: u8) -> &'static str {
    match d {
        abi::DIR_INGRESS => "INGRESS",
        abi::DIR_EGRESS => "EGRESS",
        _ => "TRAFFIC_DIRECTION_UNKNOWN",
    }
}

/// Hubble's `Verdict` names.
fn verdict(v: u8) -> &'static str {
    match v {
        abi::VERDICT_FORWARDED => "FORWARDED",
        abi::VERDICT_DROPPED => "DROPPED",
        abi::VERDICT_AUDIT => "AUDIT",
        _ => "VERDICT_UNKNOWN",
    }
}

fn gauge(name: &str, help: &str, value: f64) -> MetricFamily {
    family(
        name,
        help,
        MetricType::GAUGE,
        vec![lumen_metrics::exposition::metric(vec![], MetricType::GAUGE, value)],
    )
}

impl Node {
    pub fn families(&self, hub: &Hub) -> Vec<MetricFamily> {
        let mut out = self.policy.families();
        out.push(gauge(
            "lumen_ring_buffer_bytes",
            "Capacity of the kernel ring buffer events travel in",
            f64::from(self.ring_buffer_bytes),
        ));
        out.push(gauge(
            "lumen_flow_streams",
            "GetFlows streams open now (Observer API clients: the relay, lumen observe and lumen top, Hubble's CLI)",
            hub.telemetry().flow_streams.load(std::sync::atomic::Ordering::Relaxed) as f64,
        ));
        out.push(family(
            "lumen_events_read_total",
            "Events read from the kernel ring buffer and stored as flows",
            MetricType::COUNTER,
            vec![counter(vec![], hub.status().seen_flows)],
        ));
        match counters::ring_buffer_fill(&self.pin_dir) {
            Ok(fill) => out.push(gauge(
                "lumen_ring_buffer_fill_bytes",
                "Bytes in the kernel ring buffer written by the datapath and not yet read by the observer (record headers included)",
                fill.pending as f64,
            )),
            Err(e) => tracing::debug!(error = %e, "ring buffer positions not readable"),
        }
        match counters::map_fill(&self.pin_dir) {
            Ok(maps) => {
                let by_map = |value: fn(&counters::MapFill) -> u64| {
                    maps.iter()
                        .map(|m| {
                            lumen_metrics::exposition::metric(
                                vec![("map", m.map.to_string())],
                                MetricType::GAUGE,
                                value(m) as f64,
                            )
                        })
                        .collect()
                };
                out.push(family(
                    "lumen_map_entries",
                    "Entries in the datapath's conntrack, ipcache and policy maps",
                    MetricType::GAUGE,
                    by_map(|m| m.entries),
                ));
                out.push(family(
                    "lumen_map_capacity",
                    "Entries the datapath's conntrack, ipcache and policy maps hold at most",
                    MetricType::GAUGE,
                    by_map(|m| m.capacity),
                ));
            }
            Err(e) => tracing::debug!(error = %e, "map fill not readable"),
        }
        match counters::event_counters(&self.pin_dir) {
            Ok(c) => out.push(family(
                "lumen_events_emitted_total",
                "Events the datapath tried to write to the ring buffer (those it could not are lumen_lost_events_total{stage=\"kernel_ring_buffer\"})",
                MetricType::COUNTER,
                vec![counter(vec![], c.emitted)],
            )),
            Err(e) => tracing::debug!(error = %e, "event counters not readable"),
        }
        match counters::traffic_counters(&self.pin_dir) {
            Ok(traffic) => {
                let by = |value: fn(&counters::TrafficCount) -> u64| {
                    traffic
                        .iter()
                        .map(|t| {
                            counter(
                                vec![
                                    ("direction", direction(t.direction).to_string()),
                                    ("verdict", verdict(t.verdict).to_string()),
                                ],
                                value(t),
                            )
                        })
                        .collect()
                };
                out.push(family(
                    "lumen_datapath_packets_total",
                    "Packets the datapath saw at endpoints, by direction and verdict (summed over CPUs)",
                    MetricType::COUNTER,
                    by(|t| t.packets),
                ));
                out.push(family(
                    "lumen_datapath_bytes_total",
                    "Bytes the datapath saw at endpoints, by direction and verdict (summed over CPUs)",
                    MetricType::COUNTER,
                    by(|t| t.bytes),
                ));
            }
            Err(e) => tracing::debug!(error = %e, "traffic counters not readable"),
        }
        match counters::drop_counters(&self.pin_dir) {
            Ok(drops) => out.push(family(
                "lumen_drop_count_total",
                "Packets the datapath dropped, by reason (Hubble's names) and direction, as Cilium's cilium_drop_count_total (summed over CPUs)",
                MetricType::COUNTER,
                drops
                    .iter()
                    .map(|d| {
                        let reason = lumen_proto::flow::DropReason::try_from(i32::from(d.reason))
                            .map_or_else(|_| d.reason.to_string(), |r| r.as_str_name().to_string());
                        counter(
                            vec![("direction", direction(d.direction).to_string()), ("reason", reason)],
                            d.packets,
                        )
                    })
                    .collect(),
            )),
            Err(e) => tracing::debug!(error = %e, "drop counters not readable"),
        }
        out
    }
}

/// The process metrics, where `/proc` has them.
pub fn process_families() -> Vec<MetricFamily> {
    let Some(p) = process::read() else {
        return Vec::new();
    };
    vec![
        family(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            MetricType::COUNTER,
            vec![{
                let mut c = Counter::default();
                c.set_value(p.cpu_seconds);
                let mut m = Metric::default();
                m.set_counter(c);
                m
            }],
        ),
        gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            p.open_fds as f64,
        ),
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.resident_bytes as f64,
        ),
        gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            p.start_time_seconds,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_metrics::Registry;

    #[test]
    fn policy_revision_and_apply_durations_are_rendered_and_missing_maps_are_skipped() {
        let policy = Arc::new(PolicyMetrics::default());
        policy.set_revision(7);
        policy.observe_apply(Duration::from_millis(3));
        policy.observe_apply(Duration::from_millis(200));
        let node = Node {
            pin_dir: PathBuf::from("/nonexistent/lumen-pins"),
            policy,
            ring_buffer_bytes: 1 << 20,
        };
        let hub = Hub::new("n1", 8);
        let body = super::super::render(&Registry::default(), &hub, Some(&node));
        for line in [
            "# TYPE lumen_policy_revision gauge",
            "lumen_policy_revision 7",
            "# TYPE lumen_policy_apply_duration_seconds histogram",
            r#"lumen_policy_apply_duration_seconds_bucket{le="0.0025"} 0"#,
            r#"lumen_policy_apply_duration_seconds_bucket{le="0.005"} 1"#,
            r#"lumen_policy_apply_duration_seconds_bucket{le="0.25"} 2"#,
            "lumen_policy_apply_duration_seconds_count 2",
            "lumen_ring_buffer_bytes 1048576",
            "lumen_flow_streams 0",
            "lumen_events_read_total 0",
            "# TYPE process_cpu_seconds_total counter",
            "# TYPE process_resident_memory_bytes gauge",
        ] {
            assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
        }
        // Without the pinned maps there is nothing to read, and nothing made up.
        assert!(!body.contains("lumen_datapath_packets_total"), "{body}");
        assert!(!body.contains("lumen_events_emitted_total"), "{body}");
    }
}
