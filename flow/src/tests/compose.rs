//! How fields, filters and the two lists combine.

use lumen_proto::flow::FlowFilter;

use super::*;
use crate::{CompiledFilter, FlowFilterSet};

fn kept(set: &FlowFilterSet) -> Vec<&'static str> {
    samples()
        .into_iter()
        .filter(|(_, f)| set.matches(f))
        .map(|(n, _)| n)
        .collect()
}

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

fn protocol(p: &str) -> FlowFilter {
    FlowFilter {
        protocol: vec![p.into()],
        ..Default::default()
    }
}

#[test]
fn no_filters_keep_everything() {
    let set = compile(&[], &[]).unwrap();
    assert!(set.is_empty());
    assert_eq!(kept(&set), ALL);
    assert_eq!(kept(&FlowFilterSet::default()), ALL);
}

#[test]
fn an_empty_filter_matches_everything() {
    let set = compile(&[FlowFilter::default()], &[]).unwrap();
    assert!(!set.is_empty());
    assert_eq!(kept(&set), ALL);
    assert!(CompiledFilter::new(&FlowFilter::default()).unwrap().is_empty());
    // ... so as a blacklist entry it removes everything.
    assert_eq!(
        kept(&compile(&[], &[FlowFilter::default()]).unwrap()),
        Vec::<&str>::new()
    );
}

#[test]
fn fields_of_one_filter_and() {
    let f = FlowFilter {
        source_pod: vec!["frontend".into()],
        protocol: vec!["udp".into()],
        ..Default::default()
    };
    assert_eq!(kept(&compile(&[f], &[]).unwrap()), ["udp", "dns"]);
    let f = FlowFilter {
        source_label: vec!["app=frontend".into()],
        destination_port: vec!["8080".into()],
        verdict: vec![Verdict::Forwarded as i32],
        ..Default::default()
    };
    assert_eq!(kept(&compile(&[f], &[]).unwrap()), ["tcp"]);
}

#[test]
fn values_of_one_field_or() {
    let f = FlowFilter {
        protocol: vec!["icmpv4".into(), "udp".into()],
        ..Default::default()
    };
    assert_eq!(kept(&compile(&[f], &[]).unwrap()), ["udp", "icmpv4", "dns"]);
}

#[test]
fn whitelist_filters_or() {
    let verdict = FlowFilter {
        verdict: vec![Verdict::Dropped as i32],
        ..Default::default()
    };
    let set = compile(&[protocol("icmp"), verdict], &[]).unwrap();
    assert_eq!(kept(&set), ["icmpv4", "icmpv6", "drop"]);
}

#[test]
fn blacklist_filters_nor() {
    let set = compile(&[], &[protocol("tcp"), protocol("udp")]).unwrap();
    assert_eq!(kept(&set), ["icmpv4", "icmpv6", "empty"]);
}

#[test]
fn whitelist_then_blacklist() {
    let frontend = FlowFilter {
        source_label: vec!["app=frontend".into()],
        ..Default::default()
    };
    let dropped = FlowFilter {
        verdict: vec![Verdict::Dropped as i32],
        ..Default::default()
    };
    let set = compile(&[frontend], &[dropped]).unwrap();
    assert_eq!(kept(&set), ["tcp", "udp", "icmpv4", "dns"]);
}

#[test]
fn an_error_in_either_list_fails_compilation() {
    let bad = FlowFilter {
        source_port: vec!["http".into()],
        ..Default::default()
    };
    let err = crate::FilterError::InvalidPort {
        field: "source_port",
        value: "http".into(),
        reason: "not a decimal number",
    };
    assert_eq!(compile(std::slice::from_ref(&bad), &[]).unwrap_err(), err);
    assert_eq!(compile(&[protocol("tcp")], &[bad]).unwrap_err(), err);
}
