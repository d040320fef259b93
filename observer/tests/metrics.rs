//! `/metrics` end to end: the real datapath, real namespaces, the real
//! `lumen-observer` binary, and exact counts for known traffic. Needs
//! root: run `scripts/test.sh`.
//!
//! The traffic is TCP SYNs sent with a raw socket, one per source port, so
//! that each is exactly one new connection (no retransmission, no reply)
//! and the counts they imply are exact.

mod support;

use std::time::{Duration, Instant};

use lumen_observer::endpoint::EndpointSpec;
use support::*;

const FRONTEND: &[(&str, &str)] = &[("app", "frontend")];
const BACKEND: &[(&str, &str)] = &[("app", "backend")];
const OTHER: &[(&str, &str)] = &[("app", "other")];

/// Where the observer serves `/metrics`, inside its node's namespace (each
/// test has its own, so the port is free).
const PORT: u16 = 19965;

fn three_pods() -> Cluster {
    cluster(&[("frontend", FRONTEND), ("backend", BACKEND), ("other", OTHER)])
}

fn listen() -> Vec<String> {
    vec!["--metrics-listen-address".into(), format!("127.0.0.1:{PORT}")]
}

/// The body of `GET /metrics`, fetched from inside the node's namespace.
fn scrape(c: &Cluster) -> String {
    c.scrape(PORT)
}

/// The TCP series of `family`: IPv6 neighbour discovery between the pods
/// may add others at any time.
fn tcp_series(body: &str, family: &str) -> Vec<String> {
    series(body, family)
        .into_iter()
        .filter(|l| l.contains(r#"protocol="TCP""#))
        .collect()
}

/// Scrapes until `done` holds of the body (5 s at most), and returns it.
fn scrape_until(c: &Cluster, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = scrape(c);
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what}; /metrics:\n{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` SYNs from `from` to the backend's port 8080, which ALLOW_HTTP denies.
fn denied_syns(c: &Cluster, from: &str, first_port: u16, n: u16) {
    let backend = c.pod("backend").ipv4;
    for sport in first_port..first_port + n {
        send_syn(c.pod(from), backend, sport, 8080);
    }
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn denied_syns_are_counted_exactly_in_hubbles_metrics_with_context_labels() {
    let mut c = three_pods();
    let mut args = listen();
    args.extend([
        "--metrics".to_string(),
        "drop:sourceContext=pod;destinationContext=pod flow port-distribution policy \
         tcp:labelsContext=source_pod,destination_pod"
            .to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.start_observer(ALLOW_HTTP, &args);
    denied_syns(&c, "frontend", 41_000, 5);

    let drop = r#"hubble_drop_total{destination="default/backend",protocol="TCP",reason="POLICY_DENIED",source="default/frontend"} 5"#;
    let body = scrape_until(&c, "five denied SYNs counted", has(drop));
    assert_eq!(series(&body, "hubble_drop_total"), [drop]);
    // Each SYN left the frontend (forwarded: the sender is not policed) and
    // was dropped at the backend.
    assert_eq!(
        tcp_series(&body, "hubble_flows_processed_total"),
        [
            r#"hubble_flows_processed_total{protocol="TCP",subtype="",type="Drop",verdict="DROPPED"} 5"#,
            r#"hubble_flows_processed_total{protocol="TCP",subtype="from-endpoint",type="Trace",verdict="FORWARDED"} 5"#,
        ]
    );
    assert_eq!(
        tcp_series(&body, "hubble_port_distribution_total"),
        [r#"hubble_port_distribution_total{port="8080",protocol="TCP"} 5"#]
    );
    assert_eq!(
        series(&body, "hubble_policy_verdicts_total"),
        [r#"hubble_policy_verdicts_total{action="dropped",direction="ingress",match="none"} 5"#]
    );
    assert_eq!(
        series(&body, "hubble_tcp_flags_total"),
        [r#"hubble_tcp_flags_total{destination_pod="backend",family="IPv4",flag="SYN",source_pod="frontend"} 5"#]
    );
    for line in [
        r#"hubble_lost_events_total{source="perf_event_ring_buffer"} 0"#,
        r#"lumen_lost_events_total{consumer="metrics",stage="flow_store"} 0"#,
        r#"lumen_metrics_series_refused_total{metric="hubble_drop_total"} 0"#,
        "# TYPE hubble_drop_total counter",
    ] {
        assert!(has(line)(&body), "{line} in\n{body}");
    }
}

const DROPS_TO_8080: &str = "\
metrics:
- name: drop
  includeFilters:
  - destination_port: [\"8080\"]
";

const DROPS_BY_PEER_AND_FLOWS: &str = "\
metrics:
- name: drop
  contextOptions:
  - name: sourceContext
    values: [pod]
  includeFilters:
  - destination_port: [\"8080\"]
- name: flow
  includeFilters:
  - destination_port: [\"8080\"]
";

/// Replaces the file whole, as a ConfigMap update does.
fn write_config(c: &Cluster, text: &str) {
    let tmp = c.dir.join("metrics.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, c.dir.join("metrics.yaml")).unwrap();
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn the_metrics_file_applies_while_running_and_a_bad_change_keeps_the_previous_one() {
    let mut c = three_pods();
    write_config(&c, DROPS_TO_8080);
    let file = c.dir.join("metrics.yaml").display().to_string();
    let mut args = listen();
    args.extend(["--metrics-config".to_string(), file]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.start_observer(ALLOW_HTTP, &args);

    denied_syns(&c, "frontend", 42_000, 3);
    let drop = r#"hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 3"#;
    scrape_until(&c, "three drops", has(drop));

    // drop gets a source label (a new series), flow is added.
    write_config(&c, DROPS_BY_PEER_AND_FLOWS);
    scrape_until(
        &c,
        "the new file applied",
        has(r#"lumen_metrics_config_reloads_total{result="applied"} 1"#),
    );
    denied_syns(&c, "other", 42_100, 2);
    let by_peer = r#"hubble_drop_total{protocol="TCP",reason="POLICY_DENIED",source="default/other"} 2"#;
    let body = scrape_until(&c, "two drops by peer", has(by_peer));
    assert_eq!(series(&body, "hubble_drop_total"), [by_peer]);
    assert_eq!(
        series(&body, "hubble_flows_processed_total"),
        [
            r#"hubble_flows_processed_total{protocol="TCP",subtype="",type="Drop",verdict="DROPPED"} 2"#,
            r#"hubble_flows_processed_total{protocol="TCP",subtype="from-endpoint",type="Trace",verdict="FORWARDED"} 2"#,
        ]
    );

    // An unknown context: logged, counted, and the running config stays.
    write_config(&c, &DROPS_BY_PEER_AND_FLOWS.replace("[pod]", "[pods]"));
    scrape_until(
        &c,
        "the bad file rejected",
        has(r#"lumen_metrics_config_reloads_total{result="rejected"} 1"#),
    );
    denied_syns(&c, "other", 42_200, 1);
    let body = scrape_until(
        &c,
        "the previous config still counting",
        has(r#"hubble_drop_total{protocol="TCP",reason="POLICY_DENIED",source="default/other"} 3"#),
    );
    assert!(has(r#"lumen_metrics_config_reloads_total{result="applied"} 1"#)(&body));
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn a_deleted_pods_series_go_after_the_grace_period_and_the_cap_refuses_new_ones() {
    let mut c = three_pods();
    let late =
        c.tb.add_pod(
            &c.node,
            lumen_testbed::PodSpec::new("late", "default", "10.0.0.9".parse().unwrap()).label("app", "late"),
        )
        .unwrap();
    let mut args = listen();
    args.extend(
        [
            "--metrics",
            "drop:sourceContext=pod",
            "--metrics-grace-period",
            "2s",
            "--metrics-max-series",
            "2",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.start_observer(ALLOW_HTTP, &args);
    let spec = EndpointSpec {
        name: "late".into(),
        namespace: "default".into(),
        labels: [("app".to_string(), "late".to_string())].into(),
        interface: Some(late.host_ifname.clone()),
        ips: vec!["10.0.0.9".parse().unwrap()],
        ports: vec![],
    };
    let Response::Endpoint { .. } = c.call(Request::AddEndpoint { endpoint: spec }).unwrap() else {
        panic!("add failed")
    };
    let from = |pod: &str, n: u64| {
        format!(r#"hubble_drop_total{{protocol="TCP",reason="POLICY_DENIED",source="default/{pod}"}} {n}"#)
    };
    denied_syns(&c, "frontend", 43_000, 1);
    scrape_until(&c, "frontend's drop", has(&from("frontend", 1)));
    send_syn(&late, c.pod("backend").ipv4, 43_100, 8080);
    scrape_until(&c, "late's drop", has(&from("late", 1)));
    // The cap is 2 series: other's is refused, and counted.
    denied_syns(&c, "other", 43_200, 1);
    let body = scrape_until(
        &c,
        "other's label set refused",
        has(r#"lumen_metrics_series_refused_total{metric="hubble_drop_total"} 1"#),
    );
    assert_eq!(
        series(&body, "hubble_drop_total"),
        [from("frontend", 1), from("late", 1)]
    );

    let deleted = c.call(Request::DeleteEndpoint {
        namespace: "default".into(),
        name: "late".into(),
    });
    assert_eq!(deleted.unwrap(), Response::Ok);
    let gone = Instant::now();
    // Still there within the grace period…
    assert!(has(&from("late", 1))(&scrape(&c)));
    // …and gone after it (2 s, plus up to a second to sweep).
    let body = scrape_until(&c, "late's series expired", |b| !has(&from("late", 1))(b));
    assert!(
        gone.elapsed() >= Duration::from_secs(2),
        "expired after {:?}",
        gone.elapsed()
    );
    assert_eq!(series(&body, "hubble_drop_total"), [from("frontend", 1)]);
    // The room it left takes a new label set.
    denied_syns(&c, "other", 43_300, 1);
    let body = scrape_until(&c, "other's drop", has(&from("other", 1)));
    assert_eq!(
        series(&body, "hubble_drop_total"),
        [from("frontend", 1), from("other", 1)]
    );
}

/// The value of the series `name` (a family name with its labels, as
/// printed), if `/metrics` has it.
fn value(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The loss series: what a scrape must never move.
fn losses(body: &str) -> Vec<String> {
    let mut v = series(body, "lumen_lost_events_total");
    v.extend(series(body, "hubble_lost_events_total"));
    v
}

const ALLOW_8080: &str = "\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: allow-8080
spec:
  endpointSelector:
    matchLabels: {app: backend}
  ingress:
    - fromEndpoints:
        - matchLabels: {app: frontend}
      toPorts:
        - ports: [{port: \"8080\", protocol: TCP}]
";

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn datapath_counters_policy_revision_and_apply_durations_have_exact_values() {
    let mut c = three_pods();
    let args = listen();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.start_observer(ALLOW_HTTP, &args);

    let body = scrape(&c);
    // A fresh datapath at revision 0; the initial policy is its first commit.
    assert!(has("lumen_policy_revision 1")(&body), "{body}");
    assert!(has("lumen_policy_apply_duration_seconds_count 0")(&body), "{body}");
    assert!(
        has("# TYPE lumen_policy_apply_duration_seconds histogram")(&body),
        "{body}"
    );

    // Dropped where the policy is: at the backend, on the way into it.
    denied_syns(&c, "frontend", 44_000, 5);
    let dropped = r#"lumen_datapath_packets_total{direction="INGRESS",verdict="DROPPED"} 5"#;
    let body = scrape_until(&c, "five drops in the datapath counters", has(dropped));
    let drops = |family: &str| -> Vec<String> {
        series(&body, family)
            .into_iter()
            .filter(|l| l.contains(r#"verdict="DROPPED""#))
            .collect()
    };
    assert_eq!(
        drops("lumen_datapath_packets_total"),
        [
            dropped,
            r#"lumen_datapath_packets_total{direction="EGRESS",verdict="DROPPED"} 0"#,
        ]
    );
    // Each SYN is 54 bytes at the endpoint's interface: Ethernet 14, IPv4 20, TCP 20.
    assert_eq!(
        drops("lumen_datapath_bytes_total"),
        [
            r#"lumen_datapath_bytes_total{direction="INGRESS",verdict="DROPPED"} 270"#,
            r#"lumen_datapath_bytes_total{direction="EGRESS",verdict="DROPPED"} 0"#,
        ]
    );
    // The same five by reason, as Cilium's cilium_drop_count_total: every
    // reason the datapath has, in both directions.
    let by_reason = series(&body, "lumen_drop_count_total");
    assert_eq!(by_reason.len(), 12, "{by_reason:?}");
    assert!(
        by_reason.contains(&r#"lumen_drop_count_total{direction="INGRESS",reason="POLICY_DENIED"} 5"#.to_string()),
        "{by_reason:?}"
    );
    assert_eq!(
        by_reason.iter().filter(|l| !l.ends_with(" 0")).count(),
        1,
        "only the policy drops: {by_reason:?}"
    );
    // Nothing lost: every event the datapath emitted is read.
    let body = scrape_until(&c, "every emitted event read", |b| {
        let emitted = value(b, "lumen_events_emitted_total");
        emitted.is_some_and(|e| e >= 10.0) && emitted == value(b, "lumen_events_read_total")
    });

    // Scraping reads the counters and moves no loss counter.
    let again = scrape(&c);
    assert_eq!(losses(&again), losses(&body));
    assert!(
        has(r#"lumen_lost_events_total{stage="kernel_ring_buffer"} 0"#)(&again),
        "{again}"
    );
    // Read to the end, and the maps' sizes as the datapath declares them.
    assert!(has("lumen_ring_buffer_fill_bytes 0")(&again), "{again}");
    assert_eq!(
        series(&again, "lumen_map_capacity"),
        [
            r#"lumen_map_capacity{map="conntrack"} 262144"#,
            r#"lumen_map_capacity{map="ipcache"} 65536"#,
            r#"lumen_map_capacity{map="policy"} 262144"#,
        ]
    );
    // Conntrack: each SYN opened a connection where it left the frontend
    // (its egress is not policed); the backend dropped it before any entry.
    // Ipcache: the three pods' IPv4 and IPv6 addresses and the node's own
    // (host). Policy: the one port the backend allows.
    assert_eq!(
        series(&again, "lumen_map_entries"),
        [
            r#"lumen_map_entries{map="conntrack"} 5"#,
            r#"lumen_map_entries{map="ipcache"} 7"#,
            r#"lumen_map_entries{map="policy"} 1"#,
        ]
    );

    // Process metrics, from /proc of the observer.
    for name in [
        "process_open_fds",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    ] {
        assert!(value(&again, name).is_some_and(|v| v > 0.0), "{name} in\n{again}");
    }
    assert!(value(&again, "process_cpu_seconds_total").is_some(), "{again}");

    // An apply and a delete: two observations, and a commit each.
    let documents = vec![PolicyDocument {
        source: "metrics.yaml".into(),
        yaml: ALLOW_8080.into(),
    }];
    assert_eq!(c.call(Request::ApplyPolicies { documents }).unwrap(), Response::Ok);
    let body = scrape(&c);
    assert!(has("lumen_policy_apply_duration_seconds_count 1")(&body), "{body}");
    assert!(has("lumen_policy_revision 2")(&body), "{body}");
    let keys = vec!["CiliumNetworkPolicy/default/allow-8080".to_string()];
    assert_eq!(c.call(Request::DeletePolicies { keys }).unwrap(), Response::Ok);
    let body = scrape(&c);
    assert!(has("lumen_policy_apply_duration_seconds_count 2")(&body), "{body}");
    assert!(
        has(r#"lumen_policy_apply_duration_seconds_bucket{le="+Inf"} 2"#)(&body),
        "{body}"
    );
    assert!(has("lumen_policy_revision 3")(&body), "{body}");
    // No packet was dropped meanwhile.
    assert!(has(dropped)(&body), "{body}");
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn ring_buffer_fill_is_what_the_stopped_reader_has_not_read() {
    let mut c = three_pods();
    let args = listen();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    c.start_observer(ALLOW_HTTP, &args);
    scrape_until(
        &c,
        "the ring buffer read to the end",
        has("lumen_ring_buffer_fill_bytes 0"),
    );

    // The observer stopped (SIGSTOP): the datapath writes, nobody reads.
    let pid = c.observer_pid() as i32;
    // SAFETY: signalling the child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let pin_dir = c.pin_dir();
    let emitted = || lumen_observer::counters::event_counters(&pin_dir).unwrap().emitted;
    let fill = || lumen_observer::counters::ring_buffer_fill(&pin_dir).unwrap();
    let (emitted_before, fill_before) = (emitted(), fill());
    denied_syns(&c, "frontend", 45_000, 5);
    let (emitted_after, fill_after) = (emitted(), fill());
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);

    // Each SYN is an event where it leaves the frontend and one where the
    // backend's policy drops it; each record is an 8-byte header and the
    // event (no packet bytes captured), padded to 8.
    assert!(
        emitted_after - emitted_before >= 10,
        "{emitted_before} → {emitted_after}"
    );
    let record = (8 + std::mem::size_of::<lumen_probes::abi::Event>()).next_multiple_of(8) as u64;
    assert_eq!(
        fill_after.pending - fill_before.pending,
        (emitted_after - emitted_before) * record
    );
    assert_eq!(fill_after.capacity, 4 << 20);
    // Resumed, it reads them all.
    scrape_until(&c, "the backlog read", has("lumen_ring_buffer_fill_bytes 0"));
}
