//! CEL expressions (`experimental.cel_expression`), with Hubble's semantics:
//! `_flow` is the `flow.Flow`, names resolve in the container `flow`, unset
//! messages read as their defaults, and the expressions of a filter OR.

use lumen_proto::flow::flow_filter::Experimental;
use lumen_proto::observer::GetFlowsRequest;
use lumen_proto::tonic::{Code, Status};

use super::*;
use crate::{CelError, FilterError};

const ALL: &[&str] = &[
    "tcp",
    "tcp_reply",
    "udp",
    "icmpv4",
    "icmpv6",
    "drop",
    "http",
    "dns",
    "empty",
];

fn cel(expressions: &[&str]) -> FlowFilter {
    FlowFilter {
        experimental: Some(Experimental {
            cel_expression: strings(expressions),
        }),
        ..Default::default()
    }
}

#[track_caller]
fn keeps_cel(expression: &str, want: &[&str]) {
    keeps(cel(&[expression]), want);
}

#[track_caller]
fn error(expression: &str) -> String {
    compile(&[cel(&[expression])], &[])
        .expect_err("expression should not compile")
        .to_string()
}

fn to_port(protocol: &str, port: u32) -> Flow {
    let p = match protocol {
        "tcp" => Protocol::Tcp(Tcp {
            source_port: 40000,
            destination_port: port,
            flags: None,
        }),
        _ => Protocol::Udp(Udp {
            source_port: 40000,
            destination_port: port,
        }),
    };
    Flow {
        l4: l4(p),
        ..Default::default()
    }
}

#[test]
fn hubble_documentation_example() {
    let set = compile(
        &[cel(&[
            "_flow.l4.TCP.destination_port == 80 || _flow.l4.UDP.destination_port == 53",
        ])],
        &[],
    )
    .unwrap();
    assert!(set.matches(&to_port("tcp", 80)));
    assert!(set.matches(&to_port("udp", 53)));
    assert!(!set.matches(&to_port("tcp", 53)));
    assert!(!set.matches(&to_port("udp", 80)));
    assert!(!set.matches(&Flow::default()));
    // uint literals, as Hubble's own tests write them, and `has()` on the oneof.
    keeps_cel(
        "has(_flow.l4.TCP) && _flow.l4.TCP.destination_port == uint(8080)",
        &["tcp", "drop"],
    );
    keeps_cel("_flow.l4.UDP.destination_port == 53u", &["udp", "dns"]);
}

#[test]
fn verdict_is_an_int_and_enum_names_resolve_in_package_flow() {
    keeps_cel("_flow.verdict == Verdict.DROPPED", &["drop"]);
    keeps_cel("_flow.verdict == flow.Verdict.DROPPED", &["drop"]);
    keeps_cel("_flow.verdict == 2", &["drop"]);
    keeps_cel(
        "_flow.verdict == Verdict.FORWARDED || _flow.verdict == Verdict.TRANSLATED",
        &["tcp", "tcp_reply", "udp", "icmpv4", "icmpv6", "http", "dns"],
    );
    keeps_cel("_flow.verdict != Verdict.FORWARDED", &["drop", "empty"]);
    keeps_cel("_flow.drop_reason_desc == DropReason.POLICY_DENIED", &["drop"]);
}

#[test]
fn string_fields() {
    keeps_cel("_flow.source.pod_name.startsWith(\"front\")", FRONTEND_SRC);
    keeps_cel(
        "_flow.source.namespace == \"default\"",
        &["tcp", "tcp_reply", "udp", "icmpv4", "drop", "http", "dns"],
    );
    keeps_cel("_flow.IP.source == \"10.0.1.5\"", FRONTEND_SRC);
    keeps_cel("_flow.IP.destination.matches(\"^10\\\\.96\\\\.\")", &["udp", "dns"]);
    keeps_cel("_flow.node_name.endsWith(\"/node-1\")", &["icmpv6"]);
}

#[test]
fn repeated_fields_are_lists() {
    keeps_cel("\"k8s:app=frontend\" in _flow.source.labels", FRONTEND_SRC);
    keeps_cel("'reserved:world' in _flow.destination.labels", &["icmpv4"]);
    keeps_cel(
        "_flow.source.workloads.exists(w, w.kind == \"Deployment\" && w.name == \"frontend\")",
        FRONTEND_SRC,
    );
    keeps_cel("size(_flow.node_labels) == 2", &["udp", "dns"]);
    // `all` over an empty list holds, as for the empty flow.
    keeps_cel("_flow.source.labels.all(l, l.startsWith(\"k8s:\"))", ALL);

    let web = Flow {
        source: Some(pod("shop", "web-0", "web", 777)),
        ..Default::default()
    };
    let set = compile(&[cel(&["\"k8s:app=web\" in _flow.source.labels"])], &[]).unwrap();
    assert!(set.matches(&web));
    assert!(!set.matches(&tcp()));
}

#[test]
fn unset_messages_read_as_their_defaults() {
    // No panic and no match for a field under an unset message...
    keeps_cel("_flow.l7.http.code == 404", &["http"]);
    keeps_cel("_flow.l7.dns.query == \"api.example.com.\"", &["dns"]);
    let set = compile(&[cel(&["_flow.source.pod_name == \"frontend-5f7d\""])], &[]).unwrap();
    assert!(!set.matches(&Flow::default()));
    // ... because it reads as the default, as in Hubble (cel-go).
    keeps_cel("_flow.destination.pod_name == \"\"", &["icmpv4", "empty"]);
    keeps_cel("_flow.l4.ICMPv4.type == 8u", &["icmpv4"]);
    // has() tells set from unset.
    keeps_cel("has(_flow.l4.TCP)", &["tcp", "tcp_reply", "drop", "http"]);
    keeps_cel("has(_flow.l7)", &["http", "dns"]);
    keeps_cel("!has(_flow.source)", &["empty"]);
    keeps_cel(
        "has(_flow.destination.pod_name)",
        &["tcp", "tcp_reply", "udp", "icmpv6", "drop", "http", "dns"],
    );
}

#[test]
fn well_known_types() {
    // BoolValue: the bool when set, null when not.
    keeps_cel("_flow.is_reply == true", &["tcp_reply", "icmpv6", "http"]);
    keeps_cel("_flow.is_reply == false", &["tcp", "udp", "dns"]);
    keeps_cel("_flow.is_reply == null", &["icmpv4", "drop", "empty"]);
    // Timestamp: a CEL timestamp; unset reads as the epoch.
    keeps_cel(
        "_flow.time > timestamp(\"2023-01-01T00:00:00Z\")",
        &["tcp", "tcp_reply", "drop", "http"],
    );
    keeps_cel(
        "_flow.time == timestamp(\"1970-01-01T00:00:00Z\")",
        &["udp", "icmpv4", "icmpv6", "dns", "empty"],
    );
    keeps_cel(
        "_flow.time.getFullYear() == 2023",
        &["tcp", "tcp_reply", "drop", "http"],
    );
}

#[test]
fn expressions_of_one_filter_or_and_an_error_stops_them() {
    keeps(
        cel(&["_flow.verdict == Verdict.DROPPED", "has(_flow.l4.UDP)"]),
        &["udp", "drop", "dns"],
    );
    // Hubble stops at the first expression that fails to evaluate (here an
    // index out of range) and rejects the flow, whatever the next ones say.
    keeps(cel(&["_flow.source.labels[5] == \"x\"", "true"]), &[]);
    keeps(cel(&["true", "_flow.source.labels[5] == \"x\""]), ALL);
}

#[test]
fn combines_with_other_fields_and_lists() {
    // AND with another field of the same filter.
    keeps(
        FlowFilter {
            verdict: vec![Verdict::Forwarded as i32],
            ..cel(&["_flow.IP.source == \"10.0.1.5\""])
        },
        &["tcp", "udp", "icmpv4", "dns"],
    );
    // OR with another filter of the whitelist.
    let set = compile(
        &[
            cel(&["has(_flow.l7)"]),
            FlowFilter {
                protocol: vec!["icmp".into()],
                ..Default::default()
            },
        ],
        &[],
    )
    .unwrap();
    let got: Vec<&str> = samples()
        .into_iter()
        .filter(|(_, f)| set.matches(f))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(got, ["icmpv4", "icmpv6", "http", "dns"]);
    // In the blacklist.
    let set = compile(&[], &[cel(&["has(_flow.l7) || _flow.verdict == Verdict.DROPPED"])]).unwrap();
    let got: Vec<&str> = samples()
        .into_iter()
        .filter(|(_, f)| set.matches(f))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(got, ["tcp", "tcp_reply", "udp", "icmpv4", "icmpv6", "empty"]);
}

#[test]
fn syntax_errors_name_the_expression_and_position() {
    assert_eq!(
        error("_flow.verdict =="),
        "invalid CEL expression \"_flow.verdict ==\" at 1:17: Syntax error: mismatched input '<EOF>' \
         expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, \
         STRING, BYTES, IDENTIFIER}"
    );
    assert_eq!(
        error(""),
        "invalid CEL expression \"\" at 1:1: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', \
         '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}"
    );
    assert_eq!(
        error("_flow.source.?pod_name == \"x\""),
        "invalid CEL expression \"_flow.source.?pod_name == \\\"x\\\"\" at 1:13: unsupported syntax '.?'"
    );
}

#[test]
fn type_errors_name_the_expression_and_position() {
    let cases = [
        ("_flow.verdict", "at 1:6: got int, expected a bool result"),
        ("_flow", "at 1:1: got flow.Flow, expected a bool result"),
        ("_flow.is_reply", "at 1:6: got wrapper(bool), expected a bool result"),
        (
            "flow.verdict == 2",
            "at 1:1: undeclared reference to 'flow.verdict' (in container 'flow')",
        ),
        (
            "something-invalid",
            "at 1:1: undeclared reference to 'something' (in container 'flow')",
        ),
        (
            "_flow.source.podname == \"x\"",
            "at 1:13: undefined field 'podname' in flow.Endpoint",
        ),
        (
            "\"é\" == _flow.source.podname",
            "at 1:20: undefined field 'podname' in flow.Endpoint",
        ),
        (
            "_flow.verdict == 2 &&\n  _flow.l4.TCP.dport == 80u",
            "at 2:15: undefined field 'dport' in flow.TCP",
        ),
        (
            "_flow.verdict == \"DROPPED\"",
            "at 1:15: found no matching overload for '_==_' applied to '(int, string)'",
        ),
        (
            "_flow.verdict.startsWith(\"F\")",
            "at 1:25: found no matching overload for 'startsWith' applied to 'int.(string)'",
        ),
        (
            "_flow.source.pod_name.size == 1",
            "at 1:22: type 'string' does not support field selection",
        ),
        (
            "lower(_flow.node_name) == \"x\"",
            "at 1:6: undeclared reference to 'lower' (in container 'flow')",
        ),
        (
            "_flow.verdict.exists(v, v == 1)",
            "at 1:6: expression of type 'int' cannot be the range of a comprehension (must be list, map, or dynamic)",
        ),
        (
            "flow.Flow{verdict: 1}.verdict == 1",
            "at 1:10: creating messages (flow.Flow{...}) is not supported",
        ),
    ];
    for (expression, want) in cases {
        assert_eq!(
            error(expression),
            format!("invalid CEL expression {expression:?} {want}"),
        );
    }
}

#[test]
fn the_error_carries_its_parts() {
    let err = compile(&[cel(&["_flow.verdict == 2", "_flow.source.podname == \"x\""])], &[]).unwrap_err();
    assert_eq!(
        err,
        FilterError::InvalidCel {
            expression: "_flow.source.podname == \"x\"".into(),
            line: 1,
            column: 13,
            reason: CelError::UndefinedField {
                message: "flow.Endpoint".into(),
                field: "podname".into(),
            },
        }
    );
}

#[test]
fn a_request_with_a_bad_expression_is_refused() {
    let req = GetFlowsRequest {
        whitelist: vec![cel(&["_flow.verdict =="])],
        ..Default::default()
    };
    let status = Status::from(crate::request::check(&req).err().expect("refused"));
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "invalid filter: invalid CEL expression \"_flow.verdict ==\" at 1:17: Syntax error: mismatched input \
         '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, \
         NUM_UINT, STRING, BYTES, IDENTIFIER}"
    );
    let req = GetFlowsRequest {
        blacklist: vec![cel(&["_flow.verdict"])],
        ..Default::default()
    };
    let status = Status::from(crate::request::check(&req).err().expect("refused"));
    assert_eq!(
        status.message(),
        "invalid filter: invalid CEL expression \"_flow.verdict\" at 1:6: got int, expected a bool result"
    );
}
