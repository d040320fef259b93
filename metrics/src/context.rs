//! Hubble's context options: the labels every flow metric can add about
//! the two ends of a flow.
//!
//! * `sourceContext` / `destinationContext` add a `source` / `destination`
//!   label; their value is the first non-empty of the identifiers listed
//!   (`pod|ip`). The `…EgressContext` / `…IngressContext` forms take their
//!   place for flows of that traffic direction.
//! * `labelsContext` adds one label per name listed (`source_pod`,
//!   `traffic_direction`, …), always in Hubble's fixed order, empty when
//!   the flow has no value for it.

use std::borrow::Cow;

use lumen_proto::flow::{Endpoint, Flow, TrafficDirection};

use crate::series::Key;
use crate::OptionError;

/// One way of naming an end of a flow (Hubble's `ContextIdentifier`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Identifier {
    /// All identity labels, comma-separated.
    Identity,
    Namespace,
    /// `namespace/pod`.
    Pod,
    /// Deprecated in Hubble: the pod name without its last one or two
    /// generated segments, `namespace/` before it.
    PodShort,
    PodName,
    /// The DNS names known for the address, comma-separated.
    Dns,
    Ip,
    /// `reserved:kube-apiserver` if among the labels, else the first `reserved:` label.
    ReservedIdentity,
    /// `namespace/workload`.
    Workload,
    WorkloadName,
    /// The value of `app.kubernetes.io/name`, `k8s-app` or `app`.
    App,
}

const IDENTIFIERS: &str =
    "identity, namespace, pod, pod-name, dns, ip, reserved-identity, workload, workload-name or app";

impl Identifier {
    fn parse(s: &str) -> Option<Identifier> {
        Some(match s.to_ascii_lowercase().as_str() {
            "identity" => Identifier::Identity,
            "namespace" => Identifier::Namespace,
            "pod" => Identifier::Pod,
            "pod-short" => Identifier::PodShort,
            "pod-name" => Identifier::PodName,
            "dns" => Identifier::Dns,
            "ip" => Identifier::Ip,
            "reserved-identity" => Identifier::ReservedIdentity,
            "workload" => Identifier::Workload,
            "workload-name" => Identifier::WorkloadName,
            "app" => Identifier::App,
            _ => return None,
        })
    }
}

/// What a `labelsContext` label reads of its end of the flow.
#[derive(Clone, Copy, Debug)]
enum Field {
    Ip,
    Pod,
    Namespace,
    Workload,
    App,
}

/// The names `labelsContext` takes, in the order Hubble adds them, with
/// the end (source or not) and field each reads; `traffic_direction` reads
/// the flow's direction.
const LABELS: [(&str, Option<(bool, Field)>); 11] = [
    ("source_ip", Some((true, Field::Ip))),
    ("source_pod", Some((true, Field::Pod))),
    ("source_namespace", Some((true, Field::Namespace))),
    ("source_workload", Some((true, Field::Workload))),
    ("source_app", Some((true, Field::App))),
    ("destination_ip", Some((false, Field::Ip))),
    ("destination_pod", Some((false, Field::Pod))),
    ("destination_namespace", Some((false, Field::Namespace))),
    ("destination_workload", Some((false, Field::Workload))),
    ("destination_app", Some((false, Field::App))),
    ("traffic_direction", None),
];

const LABEL_LIST: &str = "source_ip, source_pod, source_namespace, source_workload, source_app, destination_ip, \
     destination_pod, destination_namespace, destination_workload, destination_app or traffic_direction";

/// The options of one end: a list per traffic direction (empty: not set).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct End {
    any: Vec<Identifier>,
    egress: Vec<Identifier>,
    ingress: Vec<Identifier>,
}

impl End {
    fn is_set(&self) -> bool {
        !(self.any.is_empty() && self.egress.is_empty() && self.ingress.is_empty())
    }

    fn for_direction(&self, direction: i32) -> &[Identifier] {
        match TrafficDirection::try_from(direction) {
            Ok(TrafficDirection::Egress) if !self.egress.is_empty() => &self.egress,
            Ok(TrafficDirection::Ingress) if !self.ingress.is_empty() => &self.ingress,
            _ => &self.any,
        }
    }

    /// Whether a `namespace/pod` value names a pod (its series are the pod's).
    fn names_pods(&self) -> bool {
        [&self.any, &self.egress, &self.ingress]
            .iter()
            .any(|l| l.contains(&Identifier::Pod))
    }
}

/// A metric's context options, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContextOptions {
    source: End,
    destination: End,
    /// Indexes into [`LABELS`], ascending.
    labels: Vec<usize>,
}

impl ContextOptions {
    /// Takes `name=values` if it is a context option: `Ok(false)` if it is
    /// not one (the metric's own options are checked by the caller).
    pub(crate) fn parse_option(&mut self, name: &str, values: &[String]) -> Result<bool, OptionError> {
        let lower = name.to_ascii_lowercase();
        let (end, slot) = match lower.as_str() {
            "sourcecontext" => (&mut self.source, 0),
            "sourceegresscontext" => (&mut self.source, 1),
            "sourceingresscontext" => (&mut self.source, 2),
            "destinationcontext" => (&mut self.destination, 0),
            "destinationegresscontext" => (&mut self.destination, 1),
            "destinationingresscontext" => (&mut self.destination, 2),
            "labelscontext" => {
                self.labels = parse_labels(values)?;
                return Ok(true);
            }
            _ => return Ok(false),
        };
        let list = match slot {
            0 => &mut end.any,
            1 => &mut end.egress,
            _ => &mut end.ingress,
        };
        *list = parse_identifiers(name, values)?;
        Ok(true)
    }

    /// The label names these options add, in Hubble's order.
    pub(crate) fn label_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.labels.iter().map(|i| LABELS[*i].0).collect();
        // Unlike Hubble, which adds the label only for the plain form, an
        // …EgressContext or …IngressContext alone adds it too: otherwise
        // that option would do nothing.
        if self.source.is_set() {
            names.push("source");
        }
        if self.destination.is_set() {
            names.push("destination");
        }
        names
    }

    /// The values of [`ContextOptions::label_names`] for `flow`, written to `key`.
    pub(crate) fn label_values(&self, flow: &Flow, key: &mut Key) {
        for i in &self.labels {
            key.push(label_value(LABELS[*i].1, flow));
        }
        for (end, source) in [(&self.source, true), (&self.destination, false)] {
            if end.is_set() {
                let value = end
                    .for_direction(flow.traffic_direction)
                    .iter()
                    .map(|id| identify(*id, flow, source))
                    .find(|v| !v.is_empty())
                    .unwrap_or(Value::Str(""));
                value.write(key);
            }
        }
    }

    /// Which labels of a series say it belongs to a pod, as Hubble decides
    /// when a pod is deleted: `source`/`destination` holding
    /// `namespace/pod` (the `pod` identifier), or both of `…_namespace`
    /// and `…_pod` of one end. Positions are among
    /// [`ContextOptions::label_names`].
    pub(crate) fn pod_labels(&self) -> Vec<PodLabels> {
        let names = self.label_names();
        let at = |n: &str| names.iter().position(|x| *x == n);
        let mut out = Vec::new();
        for (end, prefix) in [(&self.source, "source"), (&self.destination, "destination")] {
            if end.names_pods() {
                out.push(PodLabels::Joined(at(prefix).expect("the end's label")));
            }
            if let (Some(ns), Some(pod)) = (at(&format!("{prefix}_namespace")), at(&format!("{prefix}_pod"))) {
                out.push(PodLabels::Split { namespace: ns, pod });
            }
        }
        out
    }
}

/// Where a series names a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PodLabels {
    /// One label holding `namespace/pod`.
    Joined(usize),
    /// A namespace label and a pod label.
    Split { namespace: usize, pod: usize },
}

impl PodLabels {
    /// Whether `values` (offset by `skip` labels before the context's)
    /// name the pod `namespace/pod`.
    pub(crate) fn matches(&self, values: &[String], skip: usize, namespace: &str, pod: &str) -> bool {
        match *self {
            PodLabels::Joined(i) => values[skip + i]
                .split_once('/')
                .is_some_and(|(n, p)| n == namespace && p == pod),
            PodLabels::Split { namespace: n, pod: p } => values[skip + n] == namespace && values[skip + p] == pod,
        }
    }
}

fn parse_identifiers(option: &str, values: &[String]) -> Result<Vec<Identifier>, OptionError> {
    let mut out = Vec::new();
    for value in values.iter().flat_map(|v| v.split('|')).filter(|v| !v.is_empty()) {
        out.push(Identifier::parse(value).ok_or_else(|| OptionError::UnknownContext {
            option: option.to_string(),
            value: value.to_string(),
            known: IDENTIFIERS,
        })?);
    }
    if out.is_empty() {
        return Err(OptionError::MissingContext {
            option: option.to_string(),
        });
    }
    Ok(out)
}

fn parse_labels(values: &[String]) -> Result<Vec<usize>, OptionError> {
    let mut out = Vec::new();
    for value in values.iter().flat_map(|v| v.split(',')).filter(|v| !v.is_empty()) {
        let i = LABELS
            .iter()
            .position(|(l, _)| *l == value)
            .ok_or_else(|| OptionError::UnknownLabel {
                label: value.to_string(),
                known: LABEL_LIST,
            })?;
        out.push(i);
    }
    if out.is_empty() {
        return Err(OptionError::MissingLabel);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn end(flow: &Flow, source: bool) -> Option<&Endpoint> {
    if source {
        flow.source.as_ref()
    } else {
        flow.destination.as_ref()
    }
}

fn ip(flow: &Flow, source: bool) -> &str {
    flow.ip
        .as_ref()
        .map_or("", |ip| if source { &ip.source } else { &ip.destination })
}

fn workload_name(ep: Option<&Endpoint>) -> &str {
    ep.and_then(|e| e.workloads.first()).map_or("", |w| &w.name)
}

/// A context value, written without allocating where it can be.
#[derive(Debug)]
enum Value<'f> {
    Str(&'f str),
    /// `namespace/name`, or the name alone outside a namespace.
    Qualified(&'f str, &'f str),
    /// Comma-separated.
    Joined(&'f [String]),
    Owned(String),
}

impl Value<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Value::Str(s) => s.is_empty(),
            Value::Qualified(ns, name) => ns.is_empty() && name.is_empty(),
            Value::Joined(items) => items.len() < 2 && items.iter().all(String::is_empty),
            Value::Owned(s) => s.is_empty(),
        }
    }

    fn write(&self, key: &mut Key) {
        match self {
            Value::Str(s) => key.push(s),
            Value::Qualified("", name) => key.push(name),
            Value::Qualified(ns, name) => key.push_parts(&[ns, "/", name]),
            Value::Joined(items) => key.push_joined(items, ","),
            Value::Owned(s) => key.push(s),
        }
    }
}

fn identify(id: Identifier, flow: &Flow, source: bool) -> Value<'_> {
    let ep = end(flow, source);
    let namespace = ep.map_or("", |e| &e.namespace);
    let pod = ep.map_or("", |e| &e.pod_name);
    let labels = ep.map_or(&[][..], |e| &e.labels);
    match id {
        Identifier::Identity => Value::Joined(labels),
        Identifier::Namespace => Value::Str(namespace),
        Identifier::Pod => Value::Qualified(namespace, pod),
        Identifier::PodShort => match short_pod(pod) {
            Cow::Borrowed(short) => Value::Qualified(namespace, short),
            Cow::Owned(short) if namespace.is_empty() => Value::Owned(short),
            Cow::Owned(short) => Value::Owned(format!("{namespace}/{short}")),
        },
        Identifier::PodName => Value::Str(pod),
        Identifier::Dns if source => Value::Joined(&flow.source_names),
        Identifier::Dns => Value::Joined(&flow.destination_names),
        Identifier::Ip => Value::Str(ip(flow, source)),
        Identifier::ReservedIdentity => Value::Str(reserved_identity(labels)),
        // A pod without a workload has no workload context, namespace or not.
        Identifier::Workload => match workload_name(ep) {
            "" => Value::Str(""),
            name => Value::Qualified(namespace, name),
        },
        Identifier::WorkloadName => Value::Str(workload_name(ep)),
        Identifier::App => Value::Str(app(labels)),
    }
}

fn label_value(reads: Option<(bool, Field)>, flow: &Flow) -> &str {
    let Some((source, field)) = reads else {
        return match TrafficDirection::try_from(flow.traffic_direction) {
            Ok(TrafficDirection::Ingress) => "ingress",
            Ok(TrafficDirection::Egress) => "egress",
            _ => "unknown",
        };
    };
    let ep = end(flow, source);
    match field {
        Field::Ip => ip(flow, source),
        Field::Pod => ep.map_or("", |e| &e.pod_name),
        Field::Namespace => ep.map_or("", |e| &e.namespace),
        Field::Workload => workload_name(ep),
        Field::App => app(ep.map_or(&[][..], |e| &e.labels)),
    }
}

fn reserved_identity(labels: &[String]) -> &str {
    const KUBE_APISERVER: &str = "reserved:kube-apiserver";
    if labels.iter().any(|l| l == KUBE_APISERVER) {
        return KUBE_APISERVER;
    }
    labels.iter().find(|l| l.starts_with("reserved:")).map_or("", |l| l)
}

/// The first non-empty value among the app labels, in label order.
fn app(labels: &[String]) -> &str {
    const KEYS: [&str; 3] = ["k8s:app.kubernetes.io/name=", "k8s:k8s-app=", "k8s:app="];
    labels
        .iter()
        .find_map(|l| KEYS.iter().find_map(|k| l.strip_prefix(k)).filter(|v| !v.is_empty()))
        .unwrap_or("")
}

/// Hubble's `pod-short`: the shortest name the pod name is followed in by
/// one or two `-[a-z0-9]+` segments (`web-7d4f-x2z` is `web`).
fn short_pod(name: &str) -> Cow<'_, str> {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = PATTERN.get_or_init(|| regex::Regex::new("^(.+?)(-[a-z0-9]+){1,2}$").expect("valid pattern"));
    re.replace(name, "${1}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_proto::flow::{Ip, Workload};

    fn options(opts: &[(&str, &str)]) -> ContextOptions {
        let mut c = ContextOptions::default();
        for (k, v) in opts {
            let values: Vec<String> = v.split('|').map(str::to_string).collect();
            assert!(c.parse_option(k, &values).unwrap(), "{k} is a context option");
        }
        c
    }

    fn values(c: &ContextOptions, flow: &Flow) -> Vec<String> {
        let mut key = Key::default();
        c.label_values(flow, &mut key);
        key.values()
    }

    fn pod(namespace: &str, name: &str, labels: &[&str]) -> Option<Endpoint> {
        Some(Endpoint {
            namespace: namespace.into(),
            pod_name: name.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            ..Default::default()
        })
    }

    fn flow() -> Flow {
        let mut source = pod(
            "default",
            "web-7d4f9-x2z8q",
            &["k8s:app=web", "k8s:io.kubernetes.pod.namespace=default"],
        );
        source.as_mut().unwrap().workloads = vec![Workload {
            name: "web".into(),
            kind: "Deployment".into(),
        }];
        Flow {
            ip: Some(Ip {
                source: "10.0.0.1".into(),
                destination: "1.1.1.1".into(),
                ..Default::default()
            }),
            source,
            destination: pod("", "", &["cidr:1.1.1.0/24", "reserved:world"]),
            destination_names: vec!["one.one.one.one".into()],
            traffic_direction: TrafficDirection::Egress as i32,
            ..Default::default()
        }
    }

    #[test]
    fn each_identifier_names_an_end_as_hubble_does() {
        let f = flow();
        let cases = [
            (
                "identity",
                "k8s:app=web,k8s:io.kubernetes.pod.namespace=default",
                "cidr:1.1.1.0/24,reserved:world",
            ),
            ("namespace", "default", ""),
            ("pod", "default/web-7d4f9-x2z8q", ""),
            ("pod-short", "default/web", ""),
            ("pod-name", "web-7d4f9-x2z8q", ""),
            ("dns", "", "one.one.one.one"),
            ("ip", "10.0.0.1", "1.1.1.1"),
            ("reserved-identity", "", "reserved:world"),
            ("workload", "default/web", ""),
            ("workload-name", "web", ""),
            ("app", "web", ""),
        ];
        for (id, source, destination) in cases {
            let c = options(&[("sourceContext", id), ("destinationContext", id)]);
            assert_eq!(c.label_names(), ["source", "destination"]);
            assert_eq!(values(&c, &f), [source, destination], "{id}");
        }
    }

    #[test]
    fn the_first_non_empty_fallback_is_used_and_direction_forms_take_precedence() {
        let f = flow();
        let c = options(&[("destinationContext", "pod|dns|ip"), ("SourceContext", "dns|namespace")]);
        assert_eq!(values(&c, &f), ["default", "one.one.one.one"]);
        // The flow is egress: the egress form wins, the ingress one is not used.
        let c = options(&[
            ("sourceContext", "namespace"),
            ("sourceEgressContext", "pod-name"),
            ("sourceIngressContext", "ip"),
        ]);
        assert_eq!(values(&c, &f), ["web-7d4f9-x2z8q"]);
        // Alone, a direction form still adds the label; empty the other way.
        let c = options(&[("destinationIngressContext", "ip")]);
        assert_eq!(
            (c.label_names(), values(&c, &f)),
            (vec!["destination"], vec![String::new()])
        );
    }

    #[test]
    fn labels_context_adds_labels_in_hubbles_order_even_when_empty() {
        let mut c = ContextOptions::default();
        let labels: Vec<String> = [
            "traffic_direction",
            "destination_ip",
            "source_app",
            "source_pod",
            "destination_pod",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        c.parse_option("labelsContext", &labels).unwrap();
        c.parse_option("sourceContext", &["workload-name".into()]).unwrap();
        assert_eq!(
            c.label_names(),
            [
                "source_pod",
                "source_app",
                "destination_ip",
                "destination_pod",
                "traffic_direction",
                "source"
            ]
        );
        assert_eq!(
            values(&c, &flow()),
            ["web-7d4f9-x2z8q", "web", "1.1.1.1", "", "egress", "web"]
        );
        assert_eq!(values(&c, &Flow::default()), ["", "", "", "", "unknown", ""]);
    }

    #[test]
    fn app_labels_in_label_order_and_reserved_identity_prefers_the_apiserver() {
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(app(&labels(&["k8s:k8s-app=dns", "k8s:app=x"])), "dns");
        assert_eq!(app(&labels(&["k8s:app=", "k8s:app.kubernetes.io/name=api"])), "api");
        assert_eq!(app(&labels(&["k8s:application=x"])), "");
        assert_eq!(
            reserved_identity(&labels(&["reserved:world", "reserved:kube-apiserver"])),
            "reserved:kube-apiserver"
        );
        assert_eq!(
            reserved_identity(&labels(&["k8s:a=b", "reserved:host"])),
            "reserved:host"
        );
        assert_eq!(short_pod("coredns-5d78c9869d-abcde"), "coredns");
        assert_eq!(short_pod("web-0"), "web");
        assert_eq!(short_pod("standalone"), "standalone");
    }

    #[test]
    fn bad_options_say_which_and_why() {
        let mut c = ContextOptions::default();
        let err = |c: &mut ContextOptions, k: &str, v: &[&str]| {
            let values: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            c.parse_option(k, &values).unwrap_err().to_string()
        };
        assert_eq!(
            err(&mut c, "sourceContext", &["pod", "podd"]),
            "option sourceContext: \"podd\" is not a context; use identity, namespace, pod, pod-name, dns, ip, \
             reserved-identity, workload, workload-name or app, several separated by | (the first that is not empty is used)"
        );
        assert_eq!(
            err(&mut c, "destinationContext", &[]),
            "option destinationContext needs a value: one or more contexts separated by |"
        );
        assert!(err(&mut c, "labelsContext", &["source_pod", "pod"])
            .starts_with("option labelsContext: \"pod\" is not a label; use source_ip,"));
        assert_eq!(c.parse_option("any-drop", &[]), Ok(false));
    }

    #[test]
    fn pod_labels_are_where_hubble_looks_for_a_deleted_pod() {
        let mut c = options(&[("sourceContext", "pod|ip"), ("destinationContext", "namespace")]);
        c.parse_option(
            "labelsContext",
            &["destination_namespace".into(), "destination_pod".into()],
        )
        .unwrap();
        // Labels: destination_pod, destination_namespace, source, destination.
        assert_eq!(
            c.pod_labels(),
            [PodLabels::Joined(2), PodLabels::Split { namespace: 1, pod: 0 }]
        );
        let series: Vec<String> = ["x", "web", "default", "other/db", "default"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(c.pod_labels()[1].matches(&series, 1, "default", "web"));
        assert!(c.pod_labels()[0].matches(&series, 1, "other", "db"));
        assert!(!c.pod_labels()[0].matches(&series, 1, "other", "d"));
        // pod-name alone cannot tell pods of two namespaces apart: not a pod's series.
        assert!(options(&[("sourceContext", "pod-name")]).pod_labels().is_empty());
    }
}
