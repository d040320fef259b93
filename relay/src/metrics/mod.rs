//! The relay's Prometheus metrics (`--metrics-listen-address`, Hubble
//! relay's port 9966 by convention): Hubble relay's
//! `hubble_relay_pool_peer_connection_status`, Lumen's flow and stream
//! gauges and counters, and the relay's telemetry counters, on `/metrics`.
//!
//! Off unless asked for, so that relays side by side (tests, `lumen demo`)
//! do not contend for the port.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use lumen_proto::relay::NodeState;
use lumen_rpc::raw::RawFlowsResponse;
use lumen_rpc::telemetry::{Counter, CounterVec};

use crate::merge::SortBuffer;
use crate::pool::Peers;

mod http;

pub use http::{render, serve};

/// Hubble relay's metrics port, for a `:PORT`-less deployment to use.
pub const DEFAULT_PORT: u16 = 9966;

pub use lumen_metrics::exposition::parse_listen_address;

/// A value that goes up and down: shares of it are added and taken back by
/// whoever holds them (a stream, a sort buffer).
#[derive(Debug)]
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    value: AtomicI64,
}

impl Gauge {
    pub const fn new(name: &'static str, help: &'static str) -> Gauge {
        Gauge {
            name,
            help,
            value: AtomicI64::new(0),
        }
    }

    pub fn add(&self, n: i64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// What the relay's streams move, beside the telemetry events: counted
/// where flows pass, read at scrape time.
#[derive(Debug)]
pub struct RelayMetrics {
    /// Flows received, by the name of the node that sent them.
    pub flows: CounterVec,
    /// Responses a follow stream's sort buffer let go after a later one.
    pub flows_out_of_order: Counter,
    pub sort_buffer_flows: Gauge,
    pub clients: Gauge,
}

impl Default for RelayMetrics {
    fn default() -> RelayMetrics {
        RelayMetrics {
            flows: CounterVec::new(
                "lumen_relay_flows_total",
                "Flows the relay received from each node",
                "node",
            ),
            flows_out_of_order: Counter::new(
                "lumen_relay_flows_out_of_order_total",
                "Flows a follow stream passed on earlier in time than one it had already sent, because the sort window was full or they came later than the window",
                &[],
            ),
            sort_buffer_flows: Gauge::new(
                "lumen_relay_sort_buffer_flows",
                "Flows waiting in the follow streams' sort buffers",
            ),
            clients: Gauge::new("lumen_relay_clients", "Open GetFlows streams"),
        }
    }
}

impl RelayMetrics {
    /// Counts the flows among a node's responses (lost events are not).
    pub fn received(&self, node: &str, responses: &[RawFlowsResponse]) {
        let n = responses.iter().filter(|r| is_flow(r.bytes())).count();
        if n > 0 {
            self.flows.add(node, n as u64);
        }
    }

    /// One open GetFlows stream, until the guard goes.
    pub fn client(self: &Arc<Self>) -> ClientGuard {
        self.clients.add(1);
        ClientGuard(self.clone())
    }
}

/// Holds one count of [`RelayMetrics::clients`].
#[derive(Debug)]
pub struct ClientGuard(Arc<RelayMetrics>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.add(-1);
    }
}

/// One follow stream's share of the sort-buffer gauge and the out-of-order
/// counter: brought up to date once per batch, taken back when it goes.
pub struct BufferShare {
    metrics: Arc<RelayMetrics>,
    held: usize,
    late: u64,
}

impl BufferShare {
    pub fn new(metrics: Arc<RelayMetrics>) -> BufferShare {
        BufferShare {
            metrics,
            held: 0,
            late: 0,
        }
    }

    pub fn update(&mut self, buffer: &SortBuffer) {
        let held = buffer.len();
        if held != self.held {
            self.metrics.sort_buffer_flows.add(held as i64 - self.held as i64);
            self.held = held;
        }
        let late = buffer.late();
        if late != self.late {
            self.metrics.flows_out_of_order.add(late - self.late);
            self.late = late;
        }
    }
}

impl Drop for BufferShare {
    fn drop(&mut self) {
        self.metrics.sort_buffer_flows.add(-(self.held as i64));
    }
}

/// Whether an encoded `GetFlowsResponse` holds a flow (field 1), read from
/// its top-level keys: what a field holds is skipped, not decoded, so the
/// pass-through stays a pass-through.
pub fn is_flow(mut bytes: &[u8]) -> bool {
    use lumen_proto::prost::encoding::decode_varint;
    while !bytes.is_empty() {
        let Ok(key) = decode_varint(&mut bytes) else {
            return false;
        };
        let skip = match key & 7 {
            0 => match decode_varint(&mut bytes) {
                Ok(_) => 0,
                Err(_) => return false,
            },
            1 => 8,
            2 if key >> 3 == 1 => return true,
            2 => match decode_varint(&mut bytes) {
                Ok(n) => n as usize,
                Err(_) => return false,
            },
            5 => 4,
            _ => return false,
        };
        let Some(rest) = bytes.get(skip..) else { return false };
        bytes = rest;
    }
    false
}

/// Hubble relay's `status` label values: gRPC's connectivity states, and
/// Hubble's own for a peer without a connection object.
pub const STATUSES: [&str; 6] = [
    "CONNECTING",
    "IDLE",
    "NIL_CONNECTION",
    "READY",
    "SHUTDOWN",
    "TRANSIENT_FAILURE",
];

/// The `status` Hubble relay would report for a node in Lumen's pool:
///
/// * connected (`NODE_CONNECTED`, a channel) → `READY`;
/// * not yet tried (the pool's first attempt is under way) → `CONNECTING`;
/// * down or refusing us (`NODE_UNAVAILABLE`, `NODE_ERROR` such as a TLS
///   failure), waiting for the next attempt → `TRANSIENT_FAILURE`, as gRPC
///   reports a channel between failed attempts.
///
/// `IDLE`, `SHUTDOWN` and `NIL_CONNECTION` stay 0 but are exported, as
/// Hubble exports all six: the pool keeps no idle channels, drops a node
/// that leaves at once, and has a connection task for every node.
pub fn connection_status(peers: &Peers) -> [(&'static str, u64); 6] {
    let mut counts = STATUSES.map(|s| (s, 0));
    for p in peers.values() {
        let status = match (p.state, &p.channel) {
            (NodeState::NodeConnected, Some(_)) => "READY",
            _ if p.error.as_deref() == Some(crate::pool::NOT_CONNECTED_YET) => "CONNECTING",
            _ => "TRANSIENT_FAILURE",
        };
        if let Some(c) = counts.iter_mut().find(|(s, _)| *s == status) {
            c.1 += 1;
        }
    }
    counts
}
