//! Every `FilterError` variant, with the exact message a user sees.

use lumen_proto::flow::{flow_filter::Experimental, EventTypeFilter, FlowFilter};

use super::*;
use crate::FilterError;

fn err(filter: FlowFilter) -> FilterError {
    compile(&[filter], &[]).expect_err("filter should not compile")
}

fn s(v: &str) -> Vec<String> {
    vec![v.to_string()]
}

#[test]
fn messages() {
    let cases: Vec<(FlowFilter, &str)> = vec![
        (
            FlowFilter { source_ip: s("10.0.0.256"), ..Default::default() },
            "invalid IP address \"10.0.0.256\" in source_ip",
        ),
        (
            FlowFilter { source_ip_xlated: s("fd00::zz"), ..Default::default() },
            "invalid IP address \"fd00::zz\" in source_ip_xlated",
        ),
        (
            FlowFilter { destination_ip: s("10.0.0.0/33"), ..Default::default() },
            "invalid CIDR \"10.0.0.0/33\" in destination_ip: prefix length out of range",
        ),
        (
            FlowFilter { destination_ip: s("10.0.0/8"), ..Default::default() },
            "invalid CIDR \"10.0.0/8\" in destination_ip: invalid address",
        ),
        (
            FlowFilter { source_ip: s("fd00::/x"), ..Default::default() },
            "invalid CIDR \"fd00::/x\" in source_ip: invalid prefix length",
        ),
        (
            FlowFilter { source_pod: s(""), ..Default::default() },
            "invalid source_pod filter \"\": expected [namespace/][name-prefix]",
        ),
        (
            FlowFilter { destination_pod: s("a/b/c"), ..Default::default() },
            "invalid destination_pod filter \"a/b/c\": expected [namespace/][name-prefix]",
        ),
        (
            FlowFilter { destination_service: s(""), ..Default::default() },
            "invalid destination_service filter \"\": expected [namespace/][name-prefix]",
        ),
        (
            FlowFilter { source_label: s("app in ("), ..Default::default() },
            "invalid label selector \"app in (\" in source_label: unexpected end of selector, \
             expected a value, ',' or ')'",
        ),
        (
            FlowFilter { destination_label: s("=x"), ..Default::default() },
            "invalid label selector \"=x\" in destination_label: found \"=\", expected a label key or '!'",
        ),
        (
            FlowFilter { node_labels: s("a b"), ..Default::default() },
            "invalid label selector \"a b\" in node_labels: found \"b\", \
             expected an operator (=, ==, !=, in, notin, <, >), ',' or end of selector",
        ),
        (
            FlowFilter { source_port: s("+80"), ..Default::default() },
            "invalid port \"+80\" in source_port: not a decimal number",
        ),
        (
            FlowFilter { destination_port: s("65536"), ..Default::default() },
            "invalid port \"65536\" in destination_port: out of range 0-65535",
        ),
        (
            FlowFilter { protocol: s("quic"), ..Default::default() },
            "unknown protocol \"quic\" in protocol: \
             expected one of tcp, udp, sctp, icmp, icmpv4, icmpv6, dns, http, kafka",
        ),
        (
            FlowFilter { node_name: s("a/b/c"), ..Default::default() },
            "invalid pattern \"a/b/c\" in node_name: too many slashes, expected [cluster/]node",
        ),
        (
            FlowFilter { source_fqdn: s("*.exa mple.com"), ..Default::default() },
            "invalid pattern \"*.exa mple.com\" in source_fqdn: \
             invalid character ' ', expected a-z, 0-9, '-', '_', '.' or '*'",
        ),
        (
            FlowFilter { dns_query: s("(api"), ..Default::default() },
            "invalid regular expression \"(api\" in dns_query: regex parse error:\n    (api\n    ^\nerror: unclosed group",
        ),
        (
            FlowFilter { http_status_code: s("600"), ..Default::default() },
            "invalid HTTP status code \"600\" in http_status_code: \
             expected a code such as 404 or a prefix such as 5+ or 40+",
        ),
        (
            FlowFilter { source_cluster_name: s(""), ..Default::default() },
            "empty value in source_cluster_name",
        ),
        (
            FlowFilter {
                http_path: s("^/api"),
                event_type: vec![EventTypeFilter { r#type: monitor_type::TRACE, ..Default::default() }],
                ..Default::default()
            },
            "filtering by http_path requires the event_type filter to include L7 events (type 129)",
        ),
        (
            FlowFilter {
                experimental: Some(Experimental { cel_expression: s("_flow.verdict == \"2\"") }),
                ..Default::default()
            },
            "invalid CEL expression \"_flow.verdict == \\\"2\\\"\" at 1:15: \
             found no matching overload for '_==_' applied to '(int, string)'",
        ),
    ];
    for (filter, msg) in cases {
        assert_eq!(err(filter.clone()).to_string(), msg, "{}", describe(&filter));
    }
}

#[test]
fn variants_carry_field_and_value() {
    assert_eq!(
        err(FlowFilter {
            destination_ip: s("10.0.0.0/33"),
            ..Default::default()
        }),
        FilterError::InvalidCidr {
            field: "destination_ip",
            value: "10.0.0.0/33".into(),
            reason: "prefix length out of range"
        }
    );
    assert_eq!(
        err(FlowFilter {
            source_label: s("=x"),
            ..Default::default()
        }),
        FilterError::InvalidLabelSelector {
            field: "source_label",
            value: "=x".into(),
            reason: crate::SelectorError::Unexpected {
                found: "=".into(),
                expected: "a label key or '!'"
            },
        }
    );
    assert_eq!(
        err(FlowFilter {
            destination_fqdn: s(""),
            ..Default::default()
        }),
        FilterError::InvalidPattern {
            field: "destination_fqdn",
            value: String::new(),
            reason: crate::PatternError::Empty
        }
    );
    assert_eq!(
        err(FlowFilter {
            http_method: s("GET"),
            event_type: vec![EventTypeFilter {
                r#type: monitor_type::DROP,
                ..Default::default()
            }],
            ..Default::default()
        }),
        FilterError::RequiresL7EventType { field: "http_method" }
    );
    // An empty `cel_expression` list is not a populated field.
    assert!(compile(
        &[FlowFilter {
            experimental: Some(Experimental::default()),
            ..Default::default()
        }],
        &[]
    )
    .is_ok());
}
