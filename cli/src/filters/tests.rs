use clap::Parser;
use lumen_proto::flow::{
    flow_filter::Experimental, DropReason, EventTypeFilter, FlowFilter, HttpHeader, IpVersion, NetworkInterface,
    TcpFlags, TrafficDirection, Verdict, Workload,
};

use super::*;

#[derive(Debug, Parser)]
struct T {
    #[command(flatten)]
    f: FilterFlags,
}

fn build(args: &[&str]) -> FilterFlags {
    T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
        .unwrap()
        .f
}

fn err(args: &[&str]) -> String {
    T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
        .unwrap_err()
        .to_string()
        .split("\n\n")
        .next()
        .unwrap()
        .trim_end()
        .to_string()
}

fn pods(source: &[&str], destination: &[&str]) -> FlowFilter {
    FlowFilter {
        source_pod: source.iter().map(|s| s.to_string()).collect(),
        destination_pod: destination.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn from_and_to_flags_share_one_filter() {
    let f = build(&[
        "--from-pod",
        "default/front",
        "--to-port",
        "8080",
        "--verdict",
        "dropped",
    ]);
    assert_eq!(
        f.whitelist,
        vec![FlowFilter {
            source_pod: vec!["default/front".into()],
            destination_port: vec!["8080".into()],
            verdict: vec![Verdict::Dropped as i32],
            ..Default::default()
        }]
    );
    assert!(f.blacklist.is_empty());
}

#[test]
fn both_direction_flag_is_source_or_destination() {
    let f = build(&["--pod", "default/web", "--protocol", "tcp"]);
    assert_eq!(
        f.whitelist,
        vec![
            FlowFilter {
                protocol: vec!["tcp".into()],
                ..pods(&["default/web"], &[])
            },
            FlowFilter {
                protocol: vec!["tcp".into()],
                ..pods(&[], &["default/web"])
            },
        ]
    );
    let f = build(&[
        "--ip",
        "10.0.0.0/8",
        "--identity",
        "42",
        "--label",
        "app=x",
        "--port",
        "53",
    ]);
    assert_eq!(
        f.whitelist,
        vec![
            FlowFilter {
                source_ip: vec!["10.0.0.0/8".into()],
                source_identity: vec![42],
                source_label: vec!["app=x".into()],
                source_port: vec!["53".into()],
                ..Default::default()
            },
            FlowFilter {
                destination_ip: vec!["10.0.0.0/8".into()],
                destination_identity: vec![42],
                destination_label: vec!["app=x".into()],
                destination_port: vec!["53".into()],
                ..Default::default()
            },
        ]
    );
    let f = build(&[
        "--fqdn",
        "*.cilium.io",
        "--workload",
        "Deployment/web",
        "--cluster",
        "prod-*",
        "--service",
        "default/api",
    ]);
    let web = Workload {
        kind: "Deployment".into(),
        name: "web".into(),
    };
    assert_eq!(
        f.whitelist,
        vec![
            FlowFilter {
                source_fqdn: vec!["*.cilium.io".into()],
                source_workload: vec![web.clone()],
                source_cluster_name: vec!["prod-*".into()],
                source_service: vec!["default/api".into()],
                ..Default::default()
            },
            FlowFilter {
                destination_fqdn: vec!["*.cilium.io".into()],
                destination_workload: vec![web],
                destination_cluster_name: vec!["prod-*".into()],
                destination_service: vec!["default/api".into()],
                ..Default::default()
            },
        ]
    );
}

#[test]
fn namespaces_apply_to_pods_and_services_as_in_hubble() {
    assert_eq!(
        build(&["-n", "kube-system"]).whitelist,
        vec![pods(&["kube-system/"], &[]), pods(&[], &["kube-system/"])]
    );
    assert_eq!(
        build(&["--from-namespace", "a", "--from-namespace", "b", "--to-pod", "web"]).whitelist,
        vec![pods(&["a/", "b/"], &["web"])]
    );
    assert_eq!(
        build(&["--pod", "web", "--from-namespace", "shop"]).whitelist,
        vec![pods(&["shop/web"], &[]), pods(&["shop/"], &["web"])]
    );
    assert_eq!(
        build(&["--to-service", "api", "--to-namespace", "shop"]).whitelist,
        vec![FlowFilter {
            destination_service: vec!["shop/api".into()],
            ..Default::default()
        }]
    );
    assert_eq!(build(&["-A"]).whitelist, vec![pods(&["/"], &[]), pods(&[], &["/"])]);
    assert_eq!(build(&["--all-namespaces=true"]).whitelist, build(&["-A"]).whitelist);
    assert_eq!(build(&["--to-all-namespaces"]).whitelist, vec![pods(&[], &["/"])]);
    assert_eq!(
        err(&["-n", "kube-system", "--pod", "default/web"]),
        "error: namespace \"kube-system\" does not contain \"default/web\""
    );
    assert_eq!(
        err(&["--from-pod", "default/a", "--from-service", "b"]),
        "error: service \"b\" is not in the namespace of pod \"default/a\""
    );
}

#[test]
fn not_sends_only_the_next_flag_to_the_deny_list() {
    let f = build(&[
        "--from-namespace",
        "default",
        "--not",
        "--verdict",
        "FORWARDED",
        "--type",
        "drop",
        "--not",
        "--to-ip",
        "10.0.0.1",
    ]);
    assert_eq!(
        f.whitelist,
        vec![FlowFilter {
            source_pod: vec!["default/".into()],
            event_type: vec![EventTypeFilter {
                r#type: 1,
                match_sub_type: false,
                sub_type: 0
            }],
            ..Default::default()
        }]
    );
    assert_eq!(
        f.blacklist,
        vec![FlowFilter {
            verdict: vec![Verdict::Forwarded as i32],
            destination_ip: vec!["10.0.0.1".into()],
            ..Default::default()
        }]
    );
    let f = build(&["--not", "--pod", "kube-system/"]);
    assert!(f.whitelist.is_empty());
    assert_eq!(
        f.blacklist,
        vec![pods(&["kube-system/"], &[]), pods(&[], &["kube-system/"])]
    );
}

#[test]
fn enum_like_values_are_parsed_exactly() {
    let f = build(&[
        "--drop-reason",
        "policy_denied",
        "--drop-reason-desc",
        "POLICY_DENY",
        "--traffic-direction",
        "ingress",
        "--tcp-flags",
        "syn,ack",
        "--type",
        "trace:101",
        "-t",
        "trace:from-endpoint",
        "--type",
        "agent:policy-updated",
        "--type",
        "l7",
        "--node-name",
        "node-*",
    ]);
    let event = |r#type, sub_type: Option<i32>| EventTypeFilter {
        r#type,
        match_sub_type: sub_type.is_some(),
        sub_type: sub_type.unwrap_or(0),
    };
    assert_eq!(
        f.whitelist,
        vec![FlowFilter {
            drop_reason_desc: vec![DropReason::PolicyDenied as i32, DropReason::PolicyDeny as i32],
            traffic_direction: vec![TrafficDirection::Ingress as i32],
            tcp_flags: vec![TcpFlags {
                syn: true,
                ack: true,
                ..Default::default()
            }],
            event_type: vec![
                event(4, Some(101)),
                event(4, Some(5)),
                event(130, Some(5)),
                event(129, None)
            ],
            node_name: vec!["node-*".into()],
            ..Default::default()
        }]
    );
}

#[test]
fn every_other_filter_flag_fills_its_field() {
    let f = build(&[
        "--uuid",
        "u-1",
        "--node-label",
        "zone=a",
        "--http-status",
        "5+",
        "--http-method",
        "get",
        "--http-path",
        "/page/\\d+",
        "--http-url",
        "http://x/.*",
        "--http-header",
        "foo:bar:baz",
        "--trace-id",
        "abc",
        "--ip-trace-id",
        "4242",
        "--ip-version",
        "v6",
        "-4",
        "--interface",
        "eth0",
        "--unencrypted",
        "--reply",
        "false",
        "--snat-ip",
        "1.1.1.0/24",
        "--cel-expression",
        "_flow.verdict == 'DROPPED'",
        "--identity",
        "world",
    ]);
    assert_eq!(
        f.whitelist[0],
        FlowFilter {
            uuid: vec!["u-1".into()],
            node_labels: vec!["zone=a".into()],
            http_status_code: vec!["5+".into()],
            http_method: vec!["get".into()],
            http_path: vec!["/page/\\d+".into()],
            http_url: vec!["http://x/.*".into()],
            http_header: vec![HttpHeader {
                key: "foo".into(),
                value: "bar:baz".into()
            }],
            trace_id: vec!["abc".into()],
            ip_trace_id: vec![4242],
            ip_version: vec![IpVersion::IPv6 as i32, IpVersion::IPv4 as i32],
            interface: vec![NetworkInterface {
                name: "eth0".into(),
                ..Default::default()
            }],
            encrypted: vec![false],
            reply: vec![false],
            source_ip_xlated: vec!["1.1.1.0/24".into()],
            experimental: Some(Experimental {
                cel_expression: vec!["_flow.verdict == 'DROPPED'".into()]
            }),
            source_identity: vec![2],
            ..Default::default()
        }
    );
    assert_eq!(f.whitelist[1].destination_identity, vec![2]);
    assert_eq!(build(&["--identity", "0x10"]).whitelist[0].source_identity, vec![16]);
    assert_eq!(build(&["--encrypted"]).whitelist[0].encrypted, vec![true]);
}

#[test]
fn raw_filters_join_the_lists_after_the_flags() {
    let f = build(&[
        "--allowlist",
        r#"{"source_pod":["a/"]} {"destination_pod":["b/"]}"#,
        "--verdict",
        "DROPPED",
        "--denylist",
        r#"{"verdict":["FORWARDED"]}"#,
    ]);
    assert_eq!(
        f.whitelist,
        vec![
            FlowFilter {
                verdict: vec![Verdict::Dropped as i32],
                ..Default::default()
            },
            pods(&["a/"], &[]),
            pods(&[], &["b/"]),
        ]
    );
    assert_eq!(
        f.blacklist,
        vec![FlowFilter {
            verdict: vec![Verdict::Forwarded as i32],
            ..Default::default()
        }]
    );
}

#[test]
fn bad_values_say_what_to_use() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--verdict", "LOST"],
            "invalid value for --verdict: \"LOST\" is not a verdict: use one of FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED",
        ),
        (
            &["--tcp-flags", "SYN,FOO"],
            "invalid value for --tcp-flags: \"FOO\" is not a TCP flag: use a comma-separated list of SYN, ACK, FIN, RST, PSH, URG, ECE, CWR, NS",
        ),
        (&["--from-port", "http"], "invalid value for --from-port: \"http\" is not a port (0-65535)"),
        (
            &["--verdict", "DROPPED", "--not"],
            "--not must come before the filter flag it negates, e.g. --not --verdict DROPPED",
        ),
        (
            &["--not", "--not", "--pod", "x"],
            "--not --not: each --not negates only the filter flag after it (here --pod)",
        ),
        (
            &["--drop-reason-desc", ""],
            "invalid value for --drop-reason-desc: an empty value is not a drop reason: use one of the drop reason names of flow.proto, e.g. POLICY_DENIED, POLICY_DENY, CT_MAP_INSERTION_FAILED",
        ),
        (
            &["--type", "trace:to-moon"],
            "invalid value for --type: \"to-moon\" is not a trace observation point: use one of to-endpoint, to-proxy, to-host, to-stack, to-overlay, from-endpoint, from-proxy, from-host, from-stack, from-overlay, from-network, to-network, from-crypto, to-crypto, or a number",
        ),
        (
            &["--type", "drop:x"],
            "invalid value for --type: \"x\" in \"drop:x\" is not a sub-type: use a number",
        ),
        (
            &["-t", "flows"],
            "invalid value for --type: \"flows\" is not an event type: use one of capture, drop, l7, policy-verdict, trace, trace-sock, agent, debug, or a number",
        ),
        (
            &["--identity", "nobody"],
            "invalid value for --identity: \"nobody\" is not a security identity: use a number (e.g. 12345) or one of host, world, unmanaged, health, init, remote-node, kube-apiserver, ingress, world-ipv4, world-ipv6, overlay-to-encrypt",
        ),
        (
            &["--http-header", "foo"],
            "invalid value for --http-header: \"foo\" is not a header: use KEY:VALUE (e.g. foo:bar)",
        ),
        (
            &["--ip-trace-id", "0"],
            "invalid value for --ip-trace-id: \"0\" is not an IP trace id: use a number above 0",
        ),
        (&["--ip-version", "7"], "invalid value for --ip-version: \"7\" is not an IP version: use v4, v6 or none"),
        (&["--ipv4=v6"], "invalid value for --ipv4: it takes no value (or =v4)"),
        (&["--from-ip", "1.1.1.1", "-n", "x"], "filters --from-ip and --namespace cannot be combined"),
        (&["--label", "a=b", "--to-label", "c=d"], "filters --label and --to-label cannot be combined"),
        (&["--encrypted", "--unencrypted"], "filters --encrypted and --unencrypted cannot be combined"),
        (
            &["--allowlist", "{\"pod\":[]}"],
            "invalid value for --allowlist: not a FlowFilter: unrecognized field name 'pod' (in \"{\\\"pod\\\":[]}\")",
        ),
    ];
    for (args, message) in cases {
        assert_eq!(err(args), format!("error: {message}"), "{args:?}");
    }
    // Conflicts are per list: one side may be negated.
    assert_eq!(build(&["--encrypted", "--not", "--unencrypted"]).blacklist.len(), 1);
}
