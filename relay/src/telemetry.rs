//! The relay's own events and counters (see [`lumen_rpc::telemetry`]):
//! each failed connection, retry, reconnect, disconnect and broken node
//! stream is one event, which counts and logs (rate-limited per peer)
//! together. The pool owns the registry.

use std::time::Duration;

use lumen_proto::tonic::Status;
use lumen_rpc::telemetry::{Counter, CounterVec, InternalEvent, LogLimit, Sample};

/// A node that stays down fails every retry; its failures log at most this
/// often (the counters still count each).
const PEER_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The relay's counters. Per-peer series are labelled with the peer's
/// address, the pool's key for it, and go when the peer leaves the pool.
#[derive(Debug)]
pub struct Telemetry {
    pub peer_connect_failures: CounterVec,
    pub peer_retries: CounterVec,
    pub peer_reconnects: CounterVec,
    pub peer_disconnects: CounterVec,
    /// Streams of flows from a node that broke while a client read them.
    pub node_stream_errors: CounterVec,
    pub peer_discovery_errors: Counter,
    log: Logs,
}

#[derive(Debug)]
struct Logs {
    connect: LogLimit,
    retry: LogLimit,
    reconnect: LogLimit,
    disconnect: LogLimit,
    stream: LogLimit,
    discovery: LogLimit,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        let per_peer = |name, help| CounterVec::new(name, help, "peer");
        Telemetry {
            peer_connect_failures: per_peer(
                "lumen_relay_peer_connect_failures_total",
                "Attempts to connect to a node's observer that failed",
            ),
            peer_retries: per_peer(
                "lumen_relay_peer_retries_total",
                "Connection attempts to a node scheduled after a failure or a disconnect",
            ),
            peer_reconnects: per_peer(
                "lumen_relay_peer_reconnects_total",
                "Connections to a node made again after it had been connected",
            ),
            peer_disconnects: per_peer(
                "lumen_relay_peer_disconnects_total",
                "Connected nodes that stopped answering",
            ),
            node_stream_errors: per_peer(
                "lumen_relay_node_stream_errors_total",
                "Flow streams from a node that failed or broke while a client read them",
            ),
            peer_discovery_errors: Counter::new(
                "lumen_relay_peer_discovery_errors_total",
                "Interruptions of the peer service that tells the relay the cluster's nodes",
                &[],
            ),
            log: Logs {
                connect: LogLimit::new(PEER_LOG_INTERVAL),
                retry: LogLimit::new(PEER_LOG_INTERVAL),
                reconnect: LogLimit::default(),
                disconnect: LogLimit::default(),
                stream: LogLimit::default(),
                discovery: LogLimit::new(PEER_LOG_INTERVAL),
            },
        }
    }
}

impl Telemetry {
    /// Every counter's series, for a metrics endpoint.
    pub fn snapshot(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        for v in [
            &self.peer_connect_failures,
            &self.peer_retries,
            &self.peer_reconnects,
            &self.peer_disconnects,
            &self.node_stream_errors,
        ] {
            out.extend(v.samples());
        }
        out.push(self.peer_discovery_errors.sample());
        out
    }

    /// Drops a peer's series: it left the cluster.
    pub fn forget_peer(&self, peer: &str) {
        for v in [
            &self.peer_connect_failures,
            &self.peer_retries,
            &self.peer_reconnects,
            &self.peer_disconnects,
            &self.node_stream_errors,
        ] {
            v.remove(peer);
        }
    }
}

/// Connecting to a node's observer (or asking it who it is) failed.
pub struct PeerConnectFailed<'a> {
    pub peer: &'a str,
    pub reason: &'a str,
}

impl InternalEvent for PeerConnectFailed<'_> {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        to.peer_connect_failures.add(self.peer, 1);
        if let Some(occurrences) = to.log.connect.check(self.peer) {
            tracing::warn!(
                peer = self.peer,
                error = self.reason,
                occurrences,
                "node unavailable; retrying"
            );
        }
    }
}

/// The next connection attempt to a node is due in `wait`.
pub struct PeerRetryScheduled<'a> {
    pub peer: &'a str,
    pub wait: Duration,
}

impl InternalEvent for PeerRetryScheduled<'_> {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        to.peer_retries.add(self.peer, 1);
        if let Some(occurrences) = to.log.retry.check(self.peer) {
            tracing::debug!(peer = self.peer, wait = ?self.wait, occurrences, "node connection retry scheduled");
        }
    }
}

/// A node that had been connected is connected again.
pub struct PeerReconnected<'a> {
    pub peer: &'a str,
}

impl InternalEvent for PeerReconnected<'_> {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        to.peer_reconnects.add(self.peer, 1);
        if let Some(occurrences) = to.log.reconnect.check(self.peer) {
            tracing::info!(peer = self.peer, occurrences, "node reconnected");
        }
    }
}

/// A connected node stopped answering its health check.
pub struct PeerDisconnected<'a> {
    pub peer: &'a str,
    pub reason: &'a str,
}

impl InternalEvent for PeerDisconnected<'_> {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        to.peer_disconnects.add(self.peer, 1);
        if let Some(occurrences) = to.log.disconnect.check(self.peer) {
            tracing::warn!(peer = self.peer, error = self.reason, occurrences, "node disconnected");
        }
    }
}

/// A node's flow stream for a client failed to open or broke.
pub struct NodeStreamBroke<'a> {
    pub peer: &'a str,
    pub reason: &'a Status,
}

impl InternalEvent for NodeStreamBroke<'_> {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        to.node_stream_errors.add(self.peer, 1);
        if let Some(occurrences) = to.log.stream.check(self.peer) {
            tracing::warn!(
                peer = self.peer,
                code = ?self.reason.code(),
                error = self.reason.message(),
                occurrences,
                "node flow stream broke"
            );
        }
    }
}

/// The peer service the relay learns the nodes from failed or ended its
/// stream; the nodes known stay.
pub struct PeerDiscoveryFailed<'a> {
    pub service: &'a str,
    pub reason: &'a str,
}

impl InternalEvent for PeerDiscoveryFailed<'_> {
    type Counters = Telemetry;

    fn emit(&self, to: &Telemetry) {
        to.peer_discovery_errors.add(1);
        if let Some(occurrences) = to.log.discovery.check(self.service) {
            tracing::warn!(
                service = self.service,
                error = self.reason,
                occurrences,
                "peer discovery interrupted; known nodes are kept"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_moves_its_peers_counter_and_a_leaving_peer_takes_its_series() {
        let t = Telemetry::default();
        let (a, b) = ("10.0.0.1:4244", "10.0.0.2:4244");
        for _ in 0..3 {
            PeerConnectFailed {
                peer: a,
                reason: "refused",
            }
            .emit(&t);
            PeerRetryScheduled {
                peer: a,
                wait: Duration::from_millis(200),
            }
            .emit(&t);
        }
        PeerReconnected { peer: a }.emit(&t);
        PeerDisconnected {
            peer: b,
            reason: "gone",
        }
        .emit(&t);
        NodeStreamBroke {
            peer: b,
            reason: &Status::unavailable("reset"),
        }
        .emit(&t);
        PeerDiscoveryFailed {
            service: a,
            reason: "ended",
        }
        .emit(&t);
        let series = |t: &Telemetry| -> Vec<(&'static str, String, u64)> {
            t.snapshot()
                .into_iter()
                .map(|s| {
                    (
                        s.name,
                        s.labels.first().map(|l| l.1.clone()).unwrap_or_default(),
                        s.value,
                    )
                })
                .collect()
        };
        assert_eq!(
            series(&t),
            [
                ("lumen_relay_peer_connect_failures_total", a.to_string(), 3),
                ("lumen_relay_peer_retries_total", a.to_string(), 3),
                ("lumen_relay_peer_reconnects_total", a.to_string(), 1),
                ("lumen_relay_peer_disconnects_total", b.to_string(), 1),
                ("lumen_relay_node_stream_errors_total", b.to_string(), 1),
                ("lumen_relay_peer_discovery_errors_total", String::new(), 1),
            ]
        );
        assert_eq!(
            t.log.connect.lines(),
            1,
            "a peer that stays down logs once per interval"
        );
        t.forget_peer(a);
        assert_eq!(series(&t).len(), 3);
    }
}
