//! `/metrics` over HTTP: the flow metrics, Hubble's
//! `hubble_lost_events_total` and Lumen's own counters, in Prometheus'
//! text format. The loss series are read from the same counters that
//! `ServerStatus` and the stream's lost events report: one accounting.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
pub(super) use lumen_metrics::exposition::family;
use lumen_metrics::exposition::metric;
use lumen_metrics::Registry;
use lumen_rpc::telemetry::Sample;
use prometheus::proto::{Metric, MetricFamily, MetricType};
use tokio::sync::watch;

use super::node::{self, Node};
use crate::hub::Hub;
use crate::telemetry::Telemetry;

/// Prometheus' text format, version 0.0.4.
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
struct Scrape {
    registry: Arc<Registry>,
    hub: Arc<Hub>,
    node: Option<Arc<Node>>,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    hub: Arc<Hub>,
    node: Option<Arc<Node>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape { registry, hub, node });
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::warn!(error = %e, "metrics server failed");
    }
}

async fn scrape(State(s): State<Scrape>) -> impl IntoResponse {
    // The datapath's maps and /proc are read with blocking system calls.
    let body = tokio::task::spawn_blocking(move || render(&s.registry, &s.hub, s.node.as_deref()))
        .await
        .unwrap_or_default();
    ([(CONTENT_TYPE, TEXT)], body)
}

/// Everything `/metrics` shows, families sorted by name; `node` adds the
/// datapath's and the policy's metrics.
pub fn render(registry: &Registry, hub: &Hub, node: Option<&Node>) -> String {
    lumen_metrics::encode(&families(Some(registry), hub, node))
}

/// The families of [`render`] (without `registry`, Lumen's own only),
/// sorted by name: what OTLP metric export sends too.
pub fn families(registry: Option<&Registry>, hub: &Hub, node: Option<&Node>) -> Vec<MetricFamily> {
    let telemetry = hub.telemetry();
    let mut families = registry.map(Registry::gather).unwrap_or_default();
    families.extend(own(telemetry.snapshot()));
    families.push(hubble_lost_events(telemetry));
    families.extend(node::process_families());
    if let Some(node) = node {
        families.extend(node.families(hub));
    }
    families.sort_by(|a, b| a.name().cmp(b.name()));
    families
}

pub(super) fn counter(labels: Vec<(&str, String)>, value: u64) -> Metric {
    metric(labels, MetricType::COUNTER, value as f64)
}

/// Lumen's counters, a family per name.
fn own(samples: Vec<Sample>) -> Vec<MetricFamily> {
    let mut out: Vec<MetricFamily> = Vec::new();
    for s in samples {
        let m = counter(s.labels, s.value);
        match out.iter_mut().find(|f| f.name() == s.name) {
            Some(f) => f.mut_metric().push(m),
            None => out.push(family(s.name, s.help, MetricType::COUNTER, vec![m])),
        }
    }
    out
}

/// Hubble's lost events by its source names: the kernel ring buffer, and
/// the flow store (Hubble's ring buffer) lapping an Observer API client.
/// Lumen has no events queue between the two; that series stays at zero.
fn hubble_lost_events(t: &Telemetry) -> MetricFamily {
    let source = |s: &str, n: u64| counter(vec![("source", s.to_string())], n);
    family(
        "hubble_lost_events_total",
        "Number of lost events",
        MetricType::COUNTER,
        vec![
            source("hubble_ring_buffer", t.lost_store.get()),
            source("observer_events_queue", 0),
            source("perf_event_ring_buffer", t.lost_kernel.get()),
        ],
    )
}
