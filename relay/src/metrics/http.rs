//! `/metrics` over HTTP in Prometheus' text format. The families are built
//! as the observer's `metrics/http.rs` builds them (the few helpers are
//! copied rather than shared: the relay does not depend on the observer).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use lumen_metrics::exposition::{family, metric};
use lumen_rpc::telemetry::Sample;
use prometheus::proto::{MetricFamily, MetricType};
use tokio::sync::watch;

use super::{connection_status, RelayMetrics};
use crate::pool::{Peers, Pool};

/// Prometheus' text format, version 0.0.4.
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `/metrics` on `listener` until `shutdown` turns true.
/// `outputs`: the flow export, whose counters are served too.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pool: Arc<Pool>,
    outputs: Option<Arc<lumen_export::Outputs>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Router::new().route("/metrics", get(scrape)).with_state((pool, outputs));
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::warn!(error = %e, "metrics server failed");
    }
}

async fn scrape(State((pool, outputs)): State<(Arc<Pool>, Option<Arc<lumen_export::Outputs>>)>) -> impl IntoResponse {
    let mut samples = pool.telemetry().snapshot();
    samples.extend(outputs.iter().flat_map(|o| o.samples()));
    let text = render(&pool.peers(), pool.metrics(), samples);
    ([(CONTENT_TYPE, TEXT)], text)
}

/// Everything `/metrics` shows, families sorted by name: the node states
/// as they are now, the relay's flow metrics and its telemetry `samples`.
pub fn render(peers: &Peers, metrics: &RelayMetrics, samples: Vec<Sample>) -> String {
    let gauge = |labels, value: i64| metric(labels, MetricType::GAUGE, value as f64);
    let mut families = vec![
        family(
            "hubble_relay_pool_peer_connection_status",
            "Measures the connectivity status of all peers by counting the number of peers for each given connection status.",
            MetricType::GAUGE,
            connection_status(peers)
                .into_iter()
                .map(|(status, n)| gauge(vec![("status", status.to_string())], n as i64))
                .collect(),
        ),
        family(
            metrics.sort_buffer_flows.name,
            metrics.sort_buffer_flows.help,
            MetricType::GAUGE,
            vec![gauge(vec![], metrics.sort_buffer_flows.get())],
        ),
        family(
            metrics.clients.name,
            metrics.clients.help,
            MetricType::GAUGE,
            vec![gauge(vec![], metrics.clients.get())],
        ),
    ];
    let mut counters = metrics.flows.samples();
    counters.push(metrics.flows_out_of_order.sample());
    counters.extend(samples);
    for s in counters {
        let m = metric(s.labels, MetricType::COUNTER, s.value as f64);
        match families.iter_mut().find(|f| f.name() == s.name) {
            Some(f) => f.mut_metric().push(m),
            None => families.push(family(s.name, s.help, MetricType::COUNTER, vec![m])),
        }
    }
    families.sort_by(|a, b| a.name().cmp(b.name()));
    encode(&families)
}

fn encode(families: &[MetricFamily]) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(families, &mut out)
        .expect("writing to memory does not fail, and every family has a name, help and a series");
    String::from_utf8(out).expect("the text format is UTF-8")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lumen_proto::flow::{Flow, LostEvent};
    use lumen_proto::observer::get_flows_response::ResponseTypes;
    use lumen_proto::observer::GetFlowsResponse;
    use lumen_proto::relay::NodeState;
    use lumen_rpc::raw::RawFlowsResponse;

    use super::*;
    use crate::pool::{PeerView, NOT_CONNECTED_YET};

    fn peer(name: &str, state: NodeState, error: Option<&str>) -> (String, PeerView) {
        let view = PeerView {
            name: name.into(),
            address: format!("{name}:4244"),
            state,
            version: String::new(),
            error: error.map(Into::into),
            channel: None,
        };
        (view.address.clone(), view)
    }

    fn response(kind: ResponseTypes, node: &str) -> RawFlowsResponse {
        RawFlowsResponse::encode(&GetFlowsResponse {
            node_name: node.into(),
            time: Some(lumen_proto::prost_types::Timestamp { seconds: 1, nanos: 2 }),
            response_types: Some(kind),
        })
    }

    #[test]
    fn renders_every_family_with_exact_values() {
        // A channel cannot be made without a runtime; READY is covered by
        // the in-process tests.
        let peers: Peers = Arc::new(BTreeMap::from([
            peer("a", NodeState::NodeUnavailable, Some(NOT_CONNECTED_YET)),
            peer("b", NodeState::NodeUnavailable, Some("connection refused")),
            peer("c", NodeState::NodeError, Some("TLS with c: bad certificate")),
        ]));
        let metrics = Arc::new(RelayMetrics::default());
        let flow = || response(ResponseTypes::Flow(Flow::default()), "a");
        let lost = response(ResponseTypes::LostEvents(LostEvent::default()), "a");
        metrics.received("a", &[flow(), flow(), lost, flow()]);
        metrics.received("b", &[flow()]);
        let client = metrics.client();
        let telemetry = crate::telemetry::Telemetry::default();
        telemetry.peer_connect_failures.add("b:4244", 2);
        let text = render(&peers, &metrics, telemetry.snapshot());
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "hubble_relay_pool_peer_connection_status{status=\"CONNECTING\"} 1",
                "hubble_relay_pool_peer_connection_status{status=\"IDLE\"} 0",
                "hubble_relay_pool_peer_connection_status{status=\"NIL_CONNECTION\"} 0",
                "hubble_relay_pool_peer_connection_status{status=\"READY\"} 0",
                "hubble_relay_pool_peer_connection_status{status=\"SHUTDOWN\"} 0",
                "hubble_relay_pool_peer_connection_status{status=\"TRANSIENT_FAILURE\"} 2",
                "lumen_relay_clients 1",
                "lumen_relay_flows_out_of_order_total 0",
                "lumen_relay_flows_total{node=\"a\"} 3",
                "lumen_relay_flows_total{node=\"b\"} 1",
                "lumen_relay_peer_connect_failures_total{peer=\"b:4244\"} 2",
                "lumen_relay_peer_discovery_errors_total 0",
                "lumen_relay_sort_buffer_flows 0",
            ]
        );
        assert!(text.contains("# TYPE hubble_relay_pool_peer_connection_status gauge\n"));
        assert!(text.contains("# TYPE lumen_relay_flows_total counter\n"));
        drop(client);
        let text = render(&peers, &metrics, vec![]);
        assert!(text.contains("\nlumen_relay_clients 0\n"), "{text}");
    }

    #[test]
    fn only_flows_count_as_flows() {
        let status = response(
            ResponseTypes::NodeStatus(lumen_proto::relay::NodeStatusEvent::default()),
            "a",
        );
        let flow = response(ResponseTypes::Flow(Flow::default()), "a");
        let lost = response(ResponseTypes::LostEvents(LostEvent::default()), "a");
        assert!(super::super::is_flow(flow.bytes()));
        assert!(!super::super::is_flow(status.bytes()));
        assert!(!super::super::is_flow(lost.bytes()));
        assert!(!super::super::is_flow(&[0x12, 0xff]), "a truncated length is no flow");
    }
}
