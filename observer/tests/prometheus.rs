//! The Grafana dashboards in `dashboards/` against a real Prometheus: every
//! PromQL expression in them must parse and return data once Prometheus
//! has scraped an observer that saw known traffic. A dashboard that queries
//! a metric Lumen does not emit, or groups by a label it does not put on
//! that metric, fails here.
//!
//! The end-to-end test needs root and Debian's `prometheus` package: run
//! `scripts/setup.sh`, then `scripts/test.sh`.

#[path = "../benches/support/every_flow_metric.rs"]
mod every_flow_metric;
#[path = "support/prometheus.rs"]
mod prometheus_support;
use every_flow_metric::EVERY_FLOW_METRIC;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use prometheus_support::*;
use serde_json::Value;
use support::*;

const FRONTEND: &[(&str, &str)] = &[("app", "frontend")];
const BACKEND: &[(&str, &str)] = &[("app", "backend")];
const OTHER: &[(&str, &str)] = &[("app", "other")];

/// Ports inside the node's own network namespace, so they are free.
const METRICS_PORT: u16 = 19965;
const PROMETHEUS_PORT: u16 = 19090;

/// Every `datasource` reference anywhere in `value`, with its JSON path.
fn datasources(value: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{path}.{k}");
                if k == "datasource" {
                    out.push((here.clone(), v.clone()));
                }
                datasources(v, &here, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                datasources(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_dashboard_takes_its_prometheus_from_a_variable_and_names_no_datasource_uid() {
    let all = dashboards();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "lumen-cluster-overview.json",
            "lumen-health.json",
            "lumen-network.json",
            "lumen-policy-verdicts.json"
        ]
    );
    for (name, d) in &all {
        let variables = d["templating"]["list"].as_array().expect("templating.list");
        let datasource = variables
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{name}: no datasource variable"));
        assert_eq!(datasource["type"], "datasource", "{name}");
        assert_eq!(datasource["query"], "prometheus", "{name}");
        assert!(
            d.get("__inputs").is_none(),
            "{name}: __inputs ties the import to a datasource"
        );
        assert!(d["uid"].as_str().is_some_and(|u| u == name.trim_end_matches(".json")));

        let mut refs = Vec::new();
        datasources(d, "", &mut refs);
        for (path, ds) in refs {
            // The built-in annotation query is Grafana's own, not Prometheus.
            if ds["type"] == "grafana" {
                continue;
            }
            assert_eq!(ds["type"], "prometheus", "{name}{path}");
            assert_eq!(ds["uid"], "${datasource}", "{name}{path}: a hard-coded datasource");
        }

        let queries = queries(d);
        assert!(!queries.is_empty(), "{name}: no queries");
        for (panel, expr) in queries {
            let sent = substitute(&expr);
            assert!(
                !sent.contains('$'),
                "{name} / {panel}: a variable the test does not know: {expr}"
            );
        }
    }
}

/// Traffic that gives every flow metric data: an allowed connection
/// (frontend → backend:80), a denied one (other → backend:80), a
/// connection to an address outside the cluster (frontend → world) and
/// pings (frontend → other).
fn known_traffic(c: &Cluster) {
    let backend_http = c.addr("backend", false, 80);
    c.pod("frontend")
        .tcp_request(backend_http, b"hello", LONG)
        .expect("frontend reaches backend:80");
    assert!(
        c.pod("other").tcp_connect(backend_http, SHORT).is_err(),
        "ALLOW_HTTP lets other reach the backend"
    );
    c.pod("frontend")
        .tcp_request(c.addr("world", false, 80), b"hello", LONG)
        .expect("frontend reaches the world");
    let ping = c.pod("frontend").ping(c.pod("other").ipv4.into(), 2, LONG).unwrap();
    assert_eq!(ping.received, 2, "{ping:?}");
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn every_dashboard_query_parses_and_returns_data_from_a_real_prometheus() {
    use lumen_testbed::PodSpec;
    let pod = |name: &str, n: u8, labels: &[(&str, &str)]| {
        labels.iter().fold(
            PodSpec::new(name, "default", std::net::Ipv4Addr::new(10, 0, 0, n)),
            |spec, (k, v)| spec.label(k, v),
        )
    };
    let mut c = cluster_of(vec![
        pod("frontend", 1, FRONTEND),
        pod("backend", 2, BACKEND),
        pod("other", 3, OTHER),
        // Not an endpoint and outside the pod range: reserved:world.
        PodSpec::new("world", "default", std::net::Ipv4Addr::new(198, 51, 100, 10)),
    ]);
    c.unguarded = ["world".to_string()].into();
    c.write_endpoints();
    let listen = format!("127.0.0.1:{METRICS_PORT}");
    c.start_observer(
        ALLOW_HTTP,
        &["--metrics", EVERY_FLOW_METRIC, "--metrics-listen-address", &listen],
    );
    let _servers = [
        c.pod("backend").tcp_echo_server(80).unwrap(),
        c.pod("world").tcp_echo_server(80).unwrap(),
    ];
    known_traffic(&c);

    let started = Instant::now();
    let metrics = SocketAddr::from(([127, 0, 0, 1], METRICS_PORT));
    let listen = SocketAddr::from(([127, 0, 0, 1], PROMETHEUS_PORT));
    let prometheus = Prometheus::start(&[("lumen-observer", metrics)], listen, Some(&c.node));
    // The relay's panels are the relay's test's (relay/tests/prometheus.rs).
    let all = dashboard_queries(|expr| !reads_relay(expr));
    let failures = prometheus.failures(&all, Instant::now() + Duration::from_secs(20));
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed:\n{}\nup: {}",
        failures.len(),
        all.len(),
        failures.join("\n"),
        prometheus.query("up")["data"]
    );
    eprintln!(
        "{} dashboard queries answered with data {:?} after Prometheus started",
        all.len(),
        started.elapsed()
    );
}
