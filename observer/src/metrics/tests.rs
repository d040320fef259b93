//! The metrics of one observer without a kernel: records pushed into a
//! hub, counted by the consumer, served over HTTP; the config file
//! watched; pods that go expiring.

use std::time::{Duration, Instant};

use lumen_probes::abi;
use lumen_proto::flow::Flow;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn denied(dport: u16) -> abi::Event {
    let mut ev = abi::Event {
        family: 4,
        proto: 6,
        dport,
        tcp_flags: 0x02,
        verdict: abi::VERDICT_DROPPED,
        drop_reason: abi::DROP_POLICY_DENIED,
        direction: abi::DIR_INGRESS,
        ..Default::default()
    };
    ev.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
    ev.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
    ev
}

fn options(metrics: &str) -> MetricsOptions {
    MetricsOptions {
        metrics: Some(metrics.into()),
        listen_address: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    }
}

/// `GET /metrics` over HTTP/1.0: the body.
async fn get(address: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_of_the_hub_are_counted_and_served_with_the_loss_counters() {
    let hub = Hub::new("n1", 64);
    let (stop, shutdown) = watch::channel(false);
    let prepared = Prepared::new(&options("drop:destinationContext=ip flow"))
        .unwrap()
        .unwrap();
    let metrics = prepared.start(&hub, shutdown).await.unwrap();
    hub.kernel_lost(3);
    hub.push([denied(80), denied(80), denied(81)]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metrics.registry().series() < 2 {
        assert!(Instant::now() < deadline, "flows not counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body = get(metrics.address()).await;
    let lines: Vec<&str> = body.lines().filter(|l| l.starts_with("hubble_")).collect();
    assert_eq!(
        lines,
        [
            r#"hubble_drop_total{destination="10.0.0.2",protocol="TCP",reason="POLICY_DENIED"} 3"#,
            r#"hubble_flows_processed_total{protocol="TCP",subtype="",type="Drop",verdict="DROPPED"} 3"#,
            r#"hubble_lost_events_total{source="hubble_ring_buffer"} 0"#,
            r#"hubble_lost_events_total{source="observer_events_queue"} 0"#,
            r#"hubble_lost_events_total{source="perf_event_ring_buffer"} 3"#,
        ],
        "{body}"
    );
    for line in [
        r#"lumen_lost_events_total{stage="kernel_ring_buffer"} 3"#,
        r#"lumen_lost_events_total{consumer="metrics",stage="flow_store"} 0"#,
        r#"lumen_metrics_series_refused_total{metric="hubble_drop_total"} 0"#,
        r#"lumen_metrics_config_reloads_total{result="rejected"} 0"#,
        "# TYPE hubble_drop_total counter",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
    }
    stop.send(true).unwrap();
    metrics.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn flows_the_store_overwrote_before_they_were_counted_are_lost_to_the_metrics() {
    let hub = Hub::new("n1", 2);
    let registry = Arc::new(Registry::default());
    registry.configure(&MetricsConfig::parse_flag("drop")).unwrap();
    let sub = hub.follow();
    hub.push((0..5).map(|_| denied(80)));
    hub.close();
    count(sub, registry.clone()).await;
    assert_eq!(hub.telemetry().lost_metrics.get(), 3);
    assert!(registry
        .render()
        .contains("hubble_drop_total{protocol=\"TCP\",reason=\"POLICY_DENIED\"} 2\n"));
}

#[test]
fn nothing_starts_without_metrics_or_an_address_and_both_configs_are_refused() {
    assert!(Prepared::new(&MetricsOptions::default()).unwrap().is_none());
    let listen_only = MetricsOptions {
        listen_address: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    assert!(Prepared::new(&listen_only).unwrap().is_some());
    let default_port = Prepared::new(&MetricsOptions {
        metrics: Some("drop".into()),
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    assert_eq!(default_port.address(), "0.0.0.0:9965".parse().unwrap());
    let both = MetricsOptions {
        metrics: Some("drop".into()),
        config_file: Some("m.yaml".into()),
        ..Default::default()
    };
    assert_eq!(
        Prepared::new(&both).err().unwrap().to_string(),
        "--metrics and --metrics-config cannot be used together: configure the metrics in one of them"
    );
    let bad = MetricsOptions {
        metrics: Some("drop:sourceContext=pods".into()),
        ..Default::default()
    };
    assert!(Prepared::new(&bad)
        .err()
        .unwrap()
        .to_string()
        .starts_with("--metrics: metric \"drop\": option sourceContext: \"pods\" is not a context"));
    assert_eq!(parse_listen_address(":9965"), Ok("0.0.0.0:9965".parse().unwrap()));
    assert_eq!(parse_listen_address("[::1]:80"), Ok("[::1]:80".parse().unwrap()));
    assert_eq!(
        parse_listen_address("9965"),
        Err("\"9965\" is not HOST:PORT or :PORT".to_string())
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_changed_config_file_applies_and_a_bad_change_leaves_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.yaml");
    std::fs::write(&path, "metrics:\n- name: drop\n").unwrap();
    let options = MetricsOptions {
        config_file: Some(path.clone()),
        listen_address: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let prepared = Prepared::new(&options).unwrap().unwrap();
    let (registry, hub) = (prepared.registry.clone(), Hub::new("n1", 8));
    let mut file = watcher::ConfigFile::new(path.clone(), prepared.stamp);
    let reloads = |result| hub.telemetry().metrics_config_reloads.get(result);
    file.reload_if_changed(&registry, &hub).await;
    assert_eq!((registry.metrics(), reloads("applied")), (vec!["drop".to_string()], 0));

    // Written anew (another inode, as a ConfigMap update does).
    let write = |text: &str| {
        let tmp = dir.path().join("next.yaml");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    write("metrics:\n- name: drop\n- name: tcp\n");
    file.reload_if_changed(&registry, &hub).await;
    assert_eq!(
        (registry.metrics(), reloads("applied")),
        (vec!["drop".into(), "tcp".into()], 1)
    );

    write("metrics:\n- name: drop\n  contextOptions:\n  - name: sourceContext\n    values: [pods]\n");
    file.reload_if_changed(&registry, &hub).await;
    file.reload_if_changed(&registry, &hub).await;
    assert_eq!(
        (registry.metrics(), reloads("rejected")),
        (vec!["drop".into(), "tcp".into()], 1)
    );

    std::fs::remove_file(&path).unwrap();
    file.reload_if_changed(&registry, &hub).await;
    assert_eq!((registry.metrics().len(), reloads("rejected")), (2, 2));
}

#[tokio::test(flavor = "current_thread")]
async fn pods_that_go_are_told_to_the_registry_at_once() {
    use crate::parser::{EndpointMeta, Snapshot};
    let hub = Hub::new("n1", 8);
    let snap = |pods: &[&str]| {
        let mut s = Snapshot::default();
        for (i, p) in pods.iter().enumerate() {
            let meta = EndpointMeta {
                id: i as u32 + 1,
                namespace: "default".into(),
                pod_name: p.to_string(),
                ..Default::default()
            };
            s.endpoints_by_id.insert(meta.id, Arc::new(meta));
        }
        s
    };
    let registry = Arc::new(Registry::new(lumen_metrics::Settings {
        grace_period: Duration::from_secs(60),
        ..Default::default()
    }));
    registry
        .configure(&MetricsConfig::parse_flag("flow:sourceContext=pod"))
        .unwrap();
    let from = |pod: &str| Flow {
        source: Some(lumen_proto::flow::Endpoint {
            namespace: "default".into(),
            pod_name: pod.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    registry.process([&from("web"), &from("late")]);
    let (_stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(watcher::run(
        registry.clone(),
        hub.clone(),
        None,
        hub.endpoints_gone(),
        shutdown,
    ));
    // Added and deleted between two ticks: still told.
    let t0 = Instant::now();
    hub.publish(snap(&["web", "late"]));
    hub.publish(snap(&["web"]));
    // Let the watcher take them (no tick passes: a second is far off).
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    assert_eq!(registry.expire(t0 + Duration::from_secs(59)), 0);
    assert_eq!(registry.expire(t0 + Duration::from_secs(61)), 1);
    assert_eq!(registry.series(), 1);
    task.abort();
}

/// Records that differ in their source port, time or length are counted
/// alike unless a filter reads the source port; with a CEL filter, which
/// may read anything, each flow is built and counted alone. Either way the
/// counts are those of the flows one by one.
#[tokio::test(flavor = "current_thread")]
async fn records_are_counted_alike_only_as_far_as_the_filters_allow() {
    let hub = Hub::new("n1", 64);
    let registry = Registry::default();
    let config = |yaml: &str| MetricsConfig::parse_yaml(yaml).unwrap();
    registry
        .configure(&config(
            "metrics:\n- name: drop\n  includeFilters:\n  - source_port: [\"1000\"]\n- name: flow\n",
        ))
        .unwrap();
    let from = |sport: u16, time: u64, dport: u16| abi::Event {
        sport,
        timestamp_ns: time,
        pkt_len: 40 + time as u32,
        ..denied(dport)
    };
    let mut sub = hub.follow();
    let mut counter = FlowCounter::default();
    hub.push([
        from(1000, 1, 80),
        from(2000, 2, 80),
        from(1000, 3, 80),
        from(2000, 4, 81),
        from(1000, 5, 81),
    ]);
    assert_eq!(counter.next(&mut sub, &registry).await, Some(5));
    let lines = |r: &Registry| -> Vec<String> {
        r.render()
            .lines()
            .filter(|l| l.starts_with("hubble_"))
            .map(String::from)
            .collect()
    };
    assert_eq!(
        lines(&registry),
        [
            r#"hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 3"#,
            r#"hubble_flows_processed_total{protocol="TCP",subtype="",type="Drop",verdict="DROPPED"} 5"#,
        ]
    );
    // Counted alike: the source port made two shapes per destination port.
    assert_eq!(counter.shapes(), 4);

    registry
        .configure(&config(
            "metrics:\n- name: drop\n  includeFilters:\n  - experimental: {cel_expression: [\"_flow.l4.TCP.source_port == 2000u\"]}\n",
        ))
        .unwrap();
    hub.push([from(1000, 6, 80), from(2000, 7, 80), from(2000, 8, 82)]);
    assert_eq!(counter.next(&mut sub, &registry).await, Some(3));
    assert_eq!(
        lines(&registry),
        [r#"hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 5"#]
    );

    registry.configure(&MetricsConfig::parse_flag("drop")).unwrap();
    hub.push((0..10).map(|i| from(3000 + i, u64::from(i), 80)));
    assert_eq!(counter.next(&mut sub, &registry).await, Some(10));
    assert_eq!(
        lines(&registry),
        [r#"hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 15"#]
    );
    // Ten records of one shape; the memo was started anew by the change.
    assert_eq!(counter.shapes(), 1);
}

#[test]
fn the_bytes_metric_is_the_one_otlp_sends_as_network_flow_io() {
    assert_eq!(lumen_metrics::FLOW_IO, lumen_export::otlp::FLOW_IO_FAMILY);
    assert_eq!(lumen_export::otlp::FLOW_IO, "network.flow.io");
}
