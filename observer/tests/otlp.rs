//! OTLP export end to end: the real datapath and `lumen-observer` on the
//! testbed send their flows, loss notices and flow metrics to a real OTLP
//! receiver built from the official OpenTelemetry protos (Python, grpcio;
//! export/tests/otlp/receiver.py), started in the node's namespace. Needs
//! root and the receiver's venv: run `scripts/test.sh`.

#[allow(dead_code)] // the receiver harness of export/tests, only partly used here
#[path = "../../export/tests/otlp/harness.rs"]
mod harness;
mod support;

use std::time::Duration;

use harness::Receiver;
use serde_json::{json, Value};
use support::*;

const FRONTEND: &[(&str, &str)] = &[("app", "frontend")];
const BACKEND: &[(&str, &str)] = &[("app", "backend")];

fn attribute<'r>(record: &'r Value, key: &str) -> Option<&'r Value> {
    record["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn string(s: &str) -> Value {
    json!({ "stringValue": s })
}

fn int(n: u64) -> Value {
    json!({ "intValue": n.to_string() })
}

fn strings(items: &[&str]) -> Value {
    json!({ "arrayValue": { "values": items.iter().map(|s| string(s)).collect::<Vec<_>>() } })
}

/// The value of the metric point of `name` with `attributes` among the
/// metric requests received.
fn metric_point(receiver: &Receiver, name: &str, attributes: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for request in receiver.requests("metrics") {
        for rm in request["request"]["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|m| m["name"] == name)
                {
                    for p in m["sum"]["dataPoints"].as_array().into_iter().flatten() {
                        let has = |(k, v): &(&str, &str)| {
                            p["attributes"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|a| a["key"] == *k && a["value"]["stringValue"] == *v)
                        };
                        if attributes.iter().all(has) {
                            found = p["asDouble"].as_f64().or_else(|| p["asInt"].as_str()?.parse().ok());
                        }
                    }
                }
            }
        }
    }
    found
}

/// The units the metric requests received gave metric `name`.
fn metric_units(receiver: &Receiver, name: &str) -> Vec<String> {
    let mut units: Vec<String> = Vec::new();
    for request in receiver.requests("metrics") {
        for rm in request["request"]["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                let metrics = sm["metrics"].as_array().into_iter().flatten();
                for m in metrics.filter(|m| m["name"] == name) {
                    let unit = m["unit"].as_str().unwrap_or("").to_string();
                    if !units.contains(&unit) {
                        units.push(unit);
                    }
                }
            }
        }
    }
    units
}

#[test]
#[ignore = "needs root, a BPF-capable kernel and the OTLP test receiver: run scripts/test.sh"]
fn flows_losses_and_metrics_reach_a_real_otlp_receiver_exactly() {
    let mut c = cluster(&[("frontend", FRONTEND), ("backend", BACKEND)]);
    let receiver = lumen_testbed::in_netns(&c.node.netns, || Receiver::start(false)).unwrap();
    let endpoint = receiver.grpc_endpoint();
    c.start_observer(
        ALLOW_HTTP,
        &[
            "--otlp-endpoint",
            &endpoint,
            "--otlp-metrics-interval",
            "1s",
            "--cluster-name",
            "testbed",
            "--metrics",
            "drop:sourceContext=pod;destinationContext=pod flow-io:sourceContext=pod;destinationContext=pod",
            "--metrics-listen-address",
            "127.0.0.1:19965",
            "--ring-buffer-bytes",
            "4096",
            "--monitor-aggregation",
            "none",
        ],
    );
    let backend = c.pod("backend").ipv4;
    for sport in 46_300..46_303 {
        send_syn(c.pod("frontend"), backend, sport, 8080);
    }
    let is_syn = |r: &Value, verdict: &str| {
        attribute(r, "destination.port") == Some(&int(8080)) && attribute(r, "hubble.verdict") == Some(&string(verdict))
    };
    let records = receiver.wait_for_logs(Duration::from_secs(10), |rs| {
        rs.iter().filter(|r| is_syn(r, "DROPPED")).count() == 3
            && rs.iter().filter(|r| is_syn(r, "FORWARDED")).count() == 3
    });
    // The first SYN's drop at the backend, attribute by attribute.
    let drop = records
        .iter()
        .find(|r| is_syn(r, "DROPPED") && attribute(r, "source.port") == Some(&int(46_300)))
        .unwrap();
    let uuid = attribute(drop, "hubble.flow.uuid")
        .and_then(|v| v["stringValue"].as_str())
        .unwrap();
    assert_eq!((uuid.len(), uuid.matches('-').count()), (36, 4), "{uuid}");
    let labels = |app: &str| {
        strings(&[
            &format!("k8s:app={app}"),
            "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default",
            "k8s:io.kubernetes.pod.namespace=default",
        ])
    };
    let expected = [
        ("source.address", string("10.0.0.1")),
        ("destination.address", string("10.0.0.2")),
        ("network.type", string("ipv4")),
        ("source.port", int(46_300)),
        ("destination.port", int(8080)),
        ("network.transport", string("tcp")),
        ("network.interface.name", string(&c.pod("backend").host_ifname)),
        ("source.k8s.namespace.name", string("default")),
        ("source.k8s.pod.name", string("frontend")),
        ("destination.k8s.namespace.name", string("default")),
        ("destination.k8s.pod.name", string("backend")),
        ("k8s.node.name", string(&c.node_name)),
        ("hubble.flow.uuid", string(uuid)),
        ("hubble.verdict", string("DROPPED")),
        ("hubble.drop_reason", string("POLICY_DENIED")),
        ("hubble.trace_observation_point", string("TO_ENDPOINT")),
        ("hubble.traffic_direction", string("INGRESS")),
        ("hubble.is_reply", json!({ "boolValue": false })),
        ("hubble.event_type", string("Policy denied")),
        ("hubble.source.identity", int(c.identity("frontend"))),
        ("hubble.source.labels", labels("frontend")),
        ("hubble.destination.identity", int(c.identity("backend"))),
        ("hubble.destination.labels", labels("backend")),
        ("hubble.tcp.flags", strings(&["SYN"])),
    ];
    let got: Vec<(&str, &Value)> = drop["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap(), &a["value"]))
        .collect();
    for (key, value) in &expected {
        assert_eq!(attribute(drop, key), Some(value), "attribute {key}");
    }
    assert_eq!(got, expected.iter().map(|(k, v)| (*k, v)).collect::<Vec<_>>());
    assert_eq!(
        (&drop["eventName"], &drop["body"], &drop["severityText"]),
        (&json!("hubble.flow"), &string("TCP Flags: SYN"), &json!("WARN"))
    );
    let resource = |key: &str| {
        drop["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .map(|a| a["value"].clone())
    };
    assert_eq!(resource("service.name"), Some(string("lumen-observer")));
    assert_eq!(resource("k8s.node.name"), Some(string(&c.node_name)));
    assert_eq!(resource("k8s.cluster.name"), Some(string("testbed")));

    // The flow metrics, as OTLP metric points under Hubble's names.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let drops = loop {
        let v = metric_point(
            &receiver,
            "hubble_drop_total",
            &[
                ("source", "default/frontend"),
                ("destination", "default/backend"),
                ("protocol", "TCP"),
            ],
        );
        if v == Some(3.0) || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(drops, Some(3.0));

    // Their bytes as network.flow.io: 3 SYNs of 54 bytes (Ethernet, IPv4
    // and TCP headers), sent by frontend and received (and dropped) at
    // backend.
    let io = |verdict: &str, direction: &str| {
        metric_point(
            &receiver,
            "network.flow.io",
            &[
                ("source", "default/frontend"),
                ("destination", "default/backend"),
                ("protocol", "TCP"),
                ("verdict", verdict),
                ("network.io.direction", direction),
            ],
        )
    };
    assert_eq!(
        (io("FORWARDED", "transmit"), io("DROPPED", "receive")),
        (Some(162.0), Some(162.0))
    );
    assert_eq!(metric_units(&receiver, "network.flow.io"), ["By"]);

    // A burst the 4 KiB ring buffer cannot hold: every event lost in the
    // kernel is in a loss notice, exactly.
    let sent = c
        .pod("frontend")
        .udp_send(c.addr("backend", false, 9), b"x", 20_000)
        .unwrap();
    assert_eq!(sent, 20_000);
    let pin_dir = c.pin_dir();
    let lost_kernel = std::cell::Cell::new(0);
    let records = receiver.wait_for_logs(Duration::from_secs(20), |rs| {
        let notified: u64 = rs
            .iter()
            .filter(|r| r["eventName"] == "hubble.lost_events")
            .filter_map(|r| {
                attribute(r, "hubble.lost_events.count")?["intValue"]
                    .as_str()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        lost_kernel.set(lumen_observer::counters::event_counters(&pin_dir).unwrap().lost);
        lost_kernel.get() > 0 && notified == lost_kernel.get()
    });
    for notice in records.iter().filter(|r| r["eventName"] == "hubble.lost_events") {
        let count = attribute(notice, "hubble.lost_events.count").unwrap().clone();
        let n = count["intValue"].as_str().unwrap();
        assert_eq!(
            notice["attributes"],
            json!([
                { "key": "hubble.lost_events.source", "value": string("PERF_EVENT_RING_BUFFER") },
                { "key": "hubble.lost_events.count", "value": count },
            ])
        );
        assert_eq!(
            notice["body"],
            string(&format!("{n} events lost (PERF_EVENT_RING_BUFFER)"))
        );
    }
}
