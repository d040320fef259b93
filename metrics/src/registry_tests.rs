//! Configuration, reconfiguration, the series cap and the expiry of a
//! deleted pod's series, seen through the exposition.

use std::time::{Duration, Instant};

use lumen_proto::flow::{DropReason, FlowFilter};

use super::*;
use crate::fixtures::*;
use crate::{MetricConfig, FLOW_IO};

fn denied(port: u32) -> Flow {
    dropped(tcp(flow(), port, "SYN"), DropReason::PolicyDenied)
}

#[test]
fn the_exposition_is_prometheus_text_with_help_type_and_the_refusal_counter() {
    let r = registry("drop flow");
    r.process([&denied(80), &denied(80), &denied(81)]);
    assert_eq!(
        r.render(),
        "# HELP hubble_drop_total Number of drops\n\
         # TYPE hubble_drop_total counter\n\
         hubble_drop_total{protocol=\"TCP\",reason=\"POLICY_DENIED\"} 3\n\
         # HELP hubble_flows_processed_total Total number of flows processed\n\
         # TYPE hubble_flows_processed_total counter\n\
         hubble_flows_processed_total{protocol=\"TCP\",subtype=\"\",type=\"Drop\",verdict=\"DROPPED\"} 3\n\
         # HELP lumen_metrics_series_refused_total New label sets a flow metric did not add because it had its \
         maximum of series (--metrics-max-series)\n\
         # TYPE lumen_metrics_series_refused_total counter\n\
         lumen_metrics_series_refused_total{metric=\"hubble_drop_total\"} 0\n\
         lumen_metrics_series_refused_total{metric=\"hubble_flows_processed_total\"} 0\n"
    );
}

#[test]
fn label_sets_beyond_max_series_are_refused_and_counted() {
    let r = Registry::new(Settings {
        max_series: 2,
        ..Settings::default()
    });
    r.configure(&MetricsConfig::parse_flag("drop:destinationContext=ip"))
        .unwrap();
    let to = |ip: &str| {
        let mut f = denied(80);
        f.ip.as_mut().unwrap().destination = ip.into();
        f
    };
    for ip in ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.2"] {
        r.process([&to(ip)]);
    }
    assert_eq!(
        lines(&r),
        [
            r#"hubble_drop_total{destination="10.0.0.2",protocol="TCP",reason="POLICY_DENIED"} 2"#,
            r#"hubble_drop_total{destination="10.0.0.3",protocol="TCP",reason="POLICY_DENIED"} 1"#,
        ]
    );
    assert!(r
        .render()
        .contains("lumen_metrics_series_refused_total{metric=\"hubble_drop_total\"} 2\n"));
    assert_eq!(r.series(), 2);
}

#[test]
fn a_deleted_pods_series_go_after_the_grace_period_and_only_they() {
    let r = registry(
        "drop:sourceContext=pod;destinationContext=pod \
         flow:labelsContext=destination_namespace,destination_pod \
         tcp:sourceContext=pod-name port-distribution",
    );
    let mut from_api = tcp(flow(), 80, "SYN");
    from_api.source = Some(pod("default", "api", "api"));
    r.process([&denied(80), &tcp(flow(), 80, "SYN"), &from_api]);
    let before = lines(&r);
    assert_eq!(before.len(), 6, "{before:#?}");
    let t0 = Instant::now();
    r.endpoint_deleted("default", "db", t0);
    r.endpoint_deleted("default", "api", t0 + Duration::from_secs(30));
    assert_eq!(r.expire(t0 + Duration::from_secs(59)), 0);
    assert_eq!(lines(&r), before);
    // db's: the drop (as destination) and both flow series (by labels);
    // pod-name and port-distribution cannot name a pod, so they stay.
    assert_eq!(r.expire(t0 + Duration::from_secs(60)), 3);
    assert_eq!(
        lines(&r),
        [
            r#"hubble_port_distribution_total{port="80",protocol="TCP"} 2"#,
            r#"hubble_tcp_flags_total{family="IPv4",flag="SYN",source="api"} 1"#,
            r#"hubble_tcp_flags_total{family="IPv4",flag="SYN",source="web"} 1"#,
        ]
    );
    // A flow after the expiry starts the series anew.
    r.process([&denied(80)]);
    assert!(lines(&r).contains(
        &r#"hubble_drop_total{destination="default/db",protocol="TCP",reason="POLICY_DENIED",source="default/web"} 1"#
            .to_string()
    ));
    assert_eq!(
        r.expire(t0 + Duration::from_secs(90)),
        0,
        "api named no pod-labelled series"
    );
}

#[test]
fn filters_choose_the_flows_a_metric_counts() {
    let config = MetricsConfig::parse_yaml(
        r#"
metrics:
- name: drop
  includeFilters:
  - destination_port: ["80", "81"]
  excludeFilters:
  - destination_port: ["81"]
"#,
    )
    .unwrap();
    let r = Registry::default();
    r.configure(&config).unwrap();
    r.process([&denied(80), &denied(81), &denied(82)]);
    assert_eq!(
        lines(&r),
        [r#"hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 1"#]
    );
}

#[test]
fn reconfiguring_keeps_unchanged_metrics_and_an_invalid_config_changes_nothing() {
    let r = registry("drop flow:sourceContext=pod");
    r.process([&denied(80)]);
    // drop's filters change (it keeps its series), flow's options change
    // (it starts anew), tcp is new.
    let mut next = MetricsConfig::parse_flag("drop flow:sourceContext=namespace tcp");
    next.metrics[0].exclude_filters = vec![FlowFilter {
        destination_port: vec!["80".into()],
        ..Default::default()
    }];
    r.configure(&next).unwrap();
    r.process([&denied(80), &denied(81)]);
    assert_eq!(
        lines(&r),
        [
            r#"hubble_drop_total{protocol="TCP",reason="POLICY_DENIED"} 2"#,
            r#"hubble_flows_processed_total{protocol="TCP",source="default",subtype="",type="Drop",verdict="DROPPED"} 2"#,
        ]
    );
    assert_eq!(r.metrics(), ["drop", "flow", "tcp"]);
    let bad = MetricsConfig::parse_flag("drop flow:sourceContext=pods");
    assert_eq!(
        r.configure(&bad).unwrap_err().to_string(),
        "metric \"flow\": option sourceContext: \"pods\" is not a context; use identity, namespace, pod, pod-name, \
         dns, ip, reserved-identity, workload, workload-name or app, several separated by | (the first that is not \
         empty is used)"
    );
    assert_eq!(r.metrics(), ["drop", "flow", "tcp"]);
    r.configure(&MetricsConfig::default()).unwrap();
    assert_eq!(lines(&r), Vec::<String>::new());
}

#[test]
fn configuration_errors_name_the_metric_and_the_option() {
    let err = |text: &str| {
        Registry::default()
            .configure(&MetricsConfig::parse_flag(text))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("drops"),
        "metric \"drops\" does not exist; the metrics are flow, drop, tcp, port-distribution, icmp, flows-to-world, \
         policy, flow-io, dns, http, httpV2, kafka"
    );
    assert_eq!(
        err("drop drop:sourceContext=pod"),
        "metric \"drop\" is configured twice"
    );
    assert_eq!(
        err("http httpV2"),
        "metric \"http\" conflicts with metric \"httpV2\" (the same series names): configure one of them"
    );
    assert_eq!(
        err("drop:any-drop"),
        "metric \"drop\": unknown option \"any-drop\"; this metric takes sourceContext, destinationContext, their \
         Egress and Ingress forms and labelsContext"
    );
    assert_eq!(
        err("flows-to-world:syn_only"),
        "metric \"flows-to-world\": unknown option \"syn_only\"; this metric takes sourceContext, destinationContext, \
         their Egress and Ingress forms and labelsContext, and any-drop, port, syn-only"
    );
    assert_eq!(
        err("flows-to-world:port=443"),
        "metric \"flows-to-world\": option port takes no value, got \"443\""
    );
    assert_eq!(
        err("drop:sourceContext=pod;SourceContext=ip"),
        "metric \"drop\": option \"SourceContext\" is given twice"
    );
    let filter = MetricConfig {
        name: "drop".into(),
        include_filters: vec![FlowFilter {
            source_ip: vec!["10.0.0.0/33".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let config = MetricsConfig { metrics: vec![filter] };
    assert_eq!(
        Registry::default().configure(&config).unwrap_err().to_string(),
        "metric \"drop\": includeFilters[0]: invalid CIDR \"10.0.0.0/33\" in source_ip: prefix length out of range"
    );
}

/// Flows counted alike by a shape (here: an index into `flows`) count as
/// the same flows counted one by one.
#[test]
fn flows_counted_alike_count_as_flows_counted_one_by_one() {
    let metrics = "drop:sourceContext=pod;destinationContext=ip flow tcp:destinationContext=pod \
                   port-distribution policy flows-to-world:any-drop;port flow-io:destinationContext=ip";
    let settings = Settings {
        max_series: 3,
        packet_bytes: true,
        ..Settings::default()
    };
    let (one_by_one, alike) = (Registry::new(settings), Registry::new(settings));
    for r in [&one_by_one, &alike] {
        r.configure(&MetricsConfig::parse_flag(metrics)).unwrap();
    }
    let to = |ip: &str, port: u32| {
        let mut f = denied(port);
        f.ip.as_mut().unwrap().destination = ip.into();
        f
    };
    let flows = [
        denied(80),
        tcp(flow(), 443, "SYN"),
        to("10.0.0.7", 81),
        to("10.0.0.8", 82),
        to("10.0.0.9", 83),
    ];
    // Shapes in batches, each with how many flows of it; the cap of 3
    // series refuses the last destination in `drop`.
    let batches: [&[(usize, u64)]; 3] = [&[(0, 5), (1, 2)], &[(2, 1), (0, 1), (3, 4)], &[(4, 3), (1, 1)]];
    let mut memo = Alike::default();
    let mut built = Vec::new();
    // The bytes of each flow's packet.
    let bytes = [54, 74, 1514, 60, 40];
    for batch in batches {
        for &(i, n) in batch {
            one_by_one.process_sized(std::iter::repeat_n((&flows[i], Some(bytes[i])), n as usize));
        }
        let counts = batch.iter().map(|&(i, n)| {
            let counts = Counts {
                flows: n,
                bytes: n * bytes[i],
            };
            (i, counts)
        });
        alike.process_alike(&mut memo, counts, |i| {
            built.push(*i);
            flows[*i].clone()
        });
    }
    assert_eq!(alike.render(), one_by_one.render());
    assert!(alike
        .render()
        .contains("lumen_metrics_series_refused_total{metric=\"hubble_drop_total\"} 3\n"));
    // 6 × 54 bytes to 10.0.0.2, 3 × 74 to 10.0.0.3 (forwarded), 1514 to
    // 10.0.0.7; the last two destinations refused.
    let rendered = alike.render();
    let io: Vec<&str> = rendered.lines().filter(|l| l.starts_with(FLOW_IO)).collect();
    assert_eq!(
        io,
        [
            r#"lumen_flow_io_bytes_total{destination="10.0.0.2",direction="ingress",protocol="TCP",verdict="DROPPED"} 324"#,
            r#"lumen_flow_io_bytes_total{destination="10.0.0.2",direction="ingress",protocol="TCP",verdict="FORWARDED"} 222"#,
            r#"lumen_flow_io_bytes_total{destination="10.0.0.7",direction="ingress",protocol="TCP",verdict="DROPPED"} 1514"#,
        ]
    );
    // One flow built per shape, however many flows and batches had it.
    assert_eq!(built, [0, 1, 2, 3, 4]);
    assert_eq!(memo.len(), 5);
}

/// What the memo knows is forgotten when series go or the metrics change:
/// a flow after either is counted where a flow counted one by one would be.
#[test]
fn a_memo_is_void_once_series_go_or_the_metrics_change() {
    let r = Registry::new(Settings {
        max_series: 1,
        ..Settings::default()
    });
    r.configure(&MetricsConfig::parse_flag("drop:destinationContext=pod"))
        .unwrap();
    let mut memo = Alike::default();
    let flows = [denied(80), {
        let mut f = denied(80);
        f.destination = Some(pod("default", "api", "api"));
        f
    }];
    let mut builds = 0;
    let mut count = |memo: &mut Alike<usize>, groups: &[(usize, u64)]| {
        let counts = groups.iter().map(|&(i, flows)| (i, Counts { flows, bytes: 0 }));
        r.process_alike(memo, counts, |i| {
            builds += 1;
            flows[*i].clone()
        })
    };
    count(&mut memo, &[(0, 2), (1, 1)]);
    // db's series took the one place: api's was refused.
    assert_eq!(
        lines(&r),
        [r#"hubble_drop_total{destination="default/db",protocol="TCP",reason="POLICY_DENIED"} 2"#]
    );
    let t0 = Instant::now();
    r.endpoint_deleted("default", "db", t0);
    assert_eq!(r.expire(t0 + DEFAULT_GRACE_PERIOD), 1);
    // With db's series gone, api's has room: the memo's refusal is forgotten.
    count(&mut memo, &[(1, 3)]);
    assert_eq!(
        lines(&r),
        [r#"hubble_drop_total{destination="default/api",protocol="TCP",reason="POLICY_DENIED"} 3"#]
    );
    r.configure(&MetricsConfig::parse_flag("drop:destinationContext=namespace"))
        .unwrap();
    count(&mut memo, &[(1, 1)]);
    assert_eq!(
        lines(&r),
        [r#"hubble_drop_total{destination="default",protocol="TCP",reason="POLICY_DENIED"} 1"#]
    );
    assert_eq!(builds, 4);
    assert!(r
        .render()
        .contains("lumen_metrics_series_refused_total{metric=\"hubble_drop_total\"} 1\n"));
}

#[test]
fn what_the_filters_read_decides_whether_flows_can_be_counted_alike() {
    let r = registry("drop flow");
    assert_eq!(r.reads(), Reads::default());
    let config = MetricsConfig::parse_yaml(
        r#"
metrics:
- name: drop
  includeFilters:
  - source_port: ["40000"]
- name: flow
  excludeFilters:
  - experimental: {cel_expression: ["_flow.verdict == Verdict.DROPPED"]}
"#,
    )
    .unwrap();
    r.configure(&config).unwrap();
    assert_eq!(
        r.reads(),
        Reads {
            source_port: true,
            per_flow: true
        }
    );
}

#[test]
fn flow_io_counts_the_bytes_of_packets_where_they_are_known() {
    let r = Registry::new(Settings {
        packet_bytes: true,
        ..Settings::default()
    });
    r.configure(&MetricsConfig::parse_flag("flow-io:sourceContext=pod"))
        .unwrap();
    let mut sent = tcp(flow(), 80, "SYN");
    sent.traffic_direction = lumen_proto::flow::TrafficDirection::Egress as i32;
    r.process_sized([
        (&denied(80), Some(54)),
        (&denied(81), Some(54)),
        (&sent, Some(74)),
        // Bytes not known: not counted (nor made up).
        (&denied(80), None),
    ]);
    r.process([&denied(80)]);
    let io: Vec<String> = r
        .render()
        .lines()
        .filter(|l| l.starts_with(FLOW_IO))
        .map(str::to_string)
        .collect();
    assert_eq!(
        io,
        [
            r#"lumen_flow_io_bytes_total{direction="egress",protocol="TCP",source="default/web",verdict="FORWARDED"} 74"#,
            r#"lumen_flow_io_bytes_total{direction="ingress",protocol="TCP",source="default/web",verdict="DROPPED"} 108"#,
        ]
    );

    // A relay's flows carry no bytes: it refuses the metric, and keeps its own.
    let relay = registry("flow");
    let err = relay.configure(&MetricsConfig::parse_flag("flow flow-io")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "metric \"flow-io\" counts the bytes of packets, which only an observer sees (flows carry no byte count): \
         configure it on the observers"
    );
    relay.process([&denied(80)]);
    assert_eq!(lines(&relay).len(), 1);
}
