//! Hubble's flow metric handlers: which flows each counts, under which
//! name, with which labels and label values (Hubble's
//! `pkg/hubble/metrics/<name>/handler.go`, written anew for `flow.Flow`).

use lumen_flow::FlowFilterSet;
use lumen_proto::flow::{layer4::Protocol, DropReason, Flow, Verdict};

use crate::config::MetricConfig;
use crate::context::{ContextOptions, PodLabels};
use crate::labels::{
    destination_port, direction_name, drop_reason, event_type_names, flow_protocol, icmp, policy_verdict, tcp_flags,
    verdict, world_port,
};
use crate::series::{Family, Key, Refused, SeriesId};
use crate::{ConfigError, OptionError, Reads};

/// A metric Hubble knows, by the name it is configured with.
struct Plugin {
    name: &'static str,
    kind: Kind,
    /// Series name and help; `None` for the L7 metrics, whose names are
    /// reserved but which count nothing without L7 data.
    family: Option<(&'static str, &'static str)>,
    /// Options besides the context options.
    options: &'static [&'static str],
    /// Metrics that cannot be configured with this one.
    conflicts: &'static [&'static str],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Flow,
    Drop,
    Tcp,
    PortDistribution,
    Icmp,
    FlowsToWorld,
    Policy,
    /// Lumen's: bytes, not flows (`network.flow.io` over OTLP).
    FlowIo,
    /// `dns`, `http`, `httpV2`, `kafka`: Lumen has no L7 flows yet.
    L7,
}

const PLUGINS: &[Plugin] = &[
    Plugin {
        name: "flow",
        kind: Kind::Flow,
        family: Some(("hubble_flows_processed_total", "Total number of flows processed")),
        options: &[],
        conflicts: &[],
    },
    Plugin {
        name: "drop",
        kind: Kind::Drop,
        family: Some(("hubble_drop_total", "Number of drops")),
        options: &[],
        conflicts: &[],
    },
    Plugin {
        name: "tcp",
        kind: Kind::Tcp,
        family: Some(("hubble_tcp_flags_total", "TCP flag occurrences")),
        options: &[],
        conflicts: &[],
    },
    Plugin {
        name: "port-distribution",
        kind: Kind::PortDistribution,
        family: Some((
            "hubble_port_distribution_total",
            "Numbers of packets distributed by destination port",
        )),
        options: &[],
        conflicts: &[],
    },
    Plugin {
        name: "icmp",
        kind: Kind::Icmp,
        family: Some(("hubble_icmp_total", "Number of ICMP messages")),
        options: &[],
        conflicts: &[],
    },
    Plugin {
        name: "flows-to-world",
        kind: Kind::FlowsToWorld,
        family: Some(("hubble_flows_to_world_total", "Total number of flows to reserved:world")),
        options: &["any-drop", "port", "syn-only"],
        conflicts: &[],
    },
    Plugin {
        name: "policy",
        kind: Kind::Policy,
        family: Some((
            "hubble_policy_verdicts_total",
            "Total number of Cilium network policy verdicts",
        )),
        options: &[],
        conflicts: &[],
    },
    Plugin {
        name: "flow-io",
        kind: Kind::FlowIo,
        family: Some((
            FLOW_IO,
            "Bytes of the packets of the flows processed, as long as the datapath saw them (with their link-layer header)",
        )),
        options: &[],
        conflicts: &[],
    },
    Plugin {
        name: "dns",
        kind: Kind::L7,
        family: None,
        options: &["query", "ignoreAAAA"],
        conflicts: &[],
    },
    Plugin {
        name: "http",
        kind: Kind::L7,
        family: None,
        options: &[],
        conflicts: &["httpV2"],
    },
    Plugin {
        name: "httpV2",
        kind: Kind::L7,
        family: None,
        options: &["exemplars"],
        conflicts: &["http"],
    },
    Plugin {
        name: "kafka",
        kind: Kind::L7,
        family: None,
        options: &[],
        conflicts: &[],
    },
];

/// The series of `flow-io`, which counts bytes.
pub const FLOW_IO: &str = "lumen_flow_io_bytes_total";

const CONTEXT_OPTIONS: &str = "sourceContext, destinationContext, their Egress and Ingress forms and labelsContext";

fn known_metrics() -> String {
    PLUGINS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

/// One configured metric: what it counts and its series.
#[derive(Debug)]
pub(crate) struct Handler {
    pub(crate) config: MetricConfig,
    kind: Kind,
    context: ContextOptions,
    filters: FlowFilterSet,
    any_drop: bool,
    port: bool,
    syn_only: bool,
    pub(crate) family: Option<Family>,
    /// Labels before the context's (`drop` puts the context first).
    context_at: usize,
    pod_labels: Vec<PodLabels>,
    /// Reused for every flow, so that counting allocates nothing.
    key: Key,
    tail: Key,
}

impl Handler {
    /// Checks `config` against Hubble's metrics and options, and compiles
    /// its filters; `others` are the names of every metric configured with it.
    pub(crate) fn new(config: MetricConfig, others: &[&str], max_series: usize) -> Result<Handler, ConfigError> {
        let metric = config.name.clone();
        let plugin = PLUGINS
            .iter()
            .find(|p| p.name == metric)
            .ok_or_else(|| ConfigError::UnknownMetric {
                metric: metric.clone(),
                known: known_metrics(),
            })?;
        if let Some(other) = plugin.conflicts.iter().find(|c| others.contains(c)) {
            return Err(ConfigError::Conflict {
                metric,
                other: other.to_string(),
            });
        }
        let option_error = |source| ConfigError::Option {
            metric: metric.clone(),
            source,
        };
        let mut context = ContextOptions::default();
        let (mut any_drop, mut port, mut syn_only) = (false, false, false);
        let mut seen: Vec<String> = Vec::new();
        for o in &config.context_options {
            let lower = o.name.to_ascii_lowercase();
            if seen.contains(&lower) {
                return Err(option_error(OptionError::Twice { option: o.name.clone() }));
            }
            seen.push(lower.clone());
            if context.parse_option(&o.name, &o.values).map_err(option_error)? {
                continue;
            }
            let Some(own) = plugin.options.iter().find(|k| k.to_ascii_lowercase() == lower) else {
                let known = match plugin.options {
                    [] => CONTEXT_OPTIONS.to_string(),
                    own => format!("{CONTEXT_OPTIONS}, and {}", own.join(", ")),
                };
                return Err(option_error(OptionError::Unknown {
                    option: o.name.clone(),
                    known,
                }));
            };
            // Hubble's own options are switches: present means on.
            if !o.values.iter().all(|v| v.is_empty() || v == "true") {
                return Err(option_error(OptionError::NoValue {
                    option: o.name.clone(),
                    value: o.values.join(","),
                }));
            }
            match *own {
                "any-drop" => any_drop = true,
                "port" => port = true,
                "syn-only" => syn_only = true,
                _ => {}
            }
        }
        let filters = compile_filters(&config)?;
        let fixed: Vec<&'static str> = match plugin.kind {
            Kind::Flow => vec!["protocol", "type", "subtype", "verdict"],
            Kind::Drop => vec!["reason", "protocol"],
            Kind::Tcp => vec!["flag", "family"],
            Kind::PortDistribution => vec!["protocol", "port"],
            Kind::Icmp => vec!["family", "type"],
            Kind::FlowsToWorld if port => vec!["protocol", "verdict", "port"],
            Kind::FlowsToWorld => vec!["protocol", "verdict"],
            Kind::Policy => vec!["direction", "match", "action"],
            Kind::FlowIo => vec!["protocol", "verdict", "direction"],
            Kind::L7 => vec![],
        };
        let context_labels = context.label_names();
        let (labels, context_at) = if plugin.kind == Kind::Drop {
            ([context_labels, fixed].concat(), 0)
        } else {
            let at = fixed.len();
            ([fixed, context_labels].concat(), at)
        };
        let family = plugin
            .family
            .map(|(name, help)| Family::new(name, help, labels, max_series));
        Ok(Handler {
            config,
            kind: plugin.kind,
            pod_labels: context.pod_labels(),
            context,
            filters,
            any_drop,
            port,
            syn_only,
            family,
            context_at,
            key: Key::default(),
            tail: Key::default(),
        })
    }

    /// Whether `other` is this metric with other filters only: the series
    /// are the same, so they can be kept.
    pub(crate) fn same_series(&self, other: &MetricConfig) -> bool {
        self.config.name == other.name && self.config.context_options == other.context_options
    }

    /// What this metric's filters read beyond what its labels read.
    pub(crate) fn reads(&self) -> Reads {
        let filters = self.config.include_filters.iter().chain(&self.config.exclude_filters);
        let mut reads = Reads::default();
        for f in filters {
            reads.source_port |= !f.source_port.is_empty();
            let cel = f.experimental.as_ref().is_some_and(|e| !e.cel_expression.is_empty());
            reads.per_flow |= cel || !f.uuid.is_empty();
        }
        reads
    }

    /// Takes `config` (which [`Handler::same_series`] accepted) and its compiled filters.
    pub(crate) fn refilter(&mut self, config: MetricConfig, filters: FlowFilterSet) {
        self.filters = filters;
        self.config = config;
    }

    /// Counts `flow` if this metric counts it; `Err` if a new series was refused.
    /// Counts `flow` (of `bytes` packet bytes, if known) if this metric
    /// counts it; `Err` if a new series was refused. `flow-io` counts
    /// nothing of a flow whose bytes are not known.
    pub(crate) fn process(&mut self, flow: &Flow, bytes: Option<u64>) -> Result<(), Refused> {
        let n = match (self.kind, bytes) {
            (Kind::FlowIo, None) => return Ok(()),
            (Kind::FlowIo, Some(b)) => b,
            _ => 1,
        };
        self.visit(flow, &mut |family, key| {
            let id = family.resolve(key)?;
            family.add(id, n);
            Ok(())
        })
    }

    /// Whether it counts bytes rather than flows.
    pub(crate) fn counts_bytes(&self) -> bool {
        self.kind == Kind::FlowIo
    }

    /// The series `flow` counts in (none if this metric does not count it),
    /// for counting flows alike without looking at each: `Ok` holds the
    /// series (added at zero if new), `Err` that a new one was refused.
    pub(crate) fn plan(&mut self, flow: &Flow, series: &mut Vec<SeriesId>) -> Result<(), Refused> {
        self.visit(flow, &mut |family, key| {
            series.push(family.resolve(key)?);
            Ok(())
        })
    }

    /// Hands `each` the family and every label set `flow` counts in.
    fn visit(
        &mut self,
        flow: &Flow,
        each: &mut dyn FnMut(&mut Family, &Key) -> Result<(), Refused>,
    ) -> Result<(), Refused> {
        if self.family.is_none() || !self.filters.matches(flow) {
            return Ok(());
        }
        if self.kind == Kind::FlowsToWorld && !self.counts_to_world(flow) {
            return Ok(());
        }
        let Handler {
            kind,
            context,
            port,
            family,
            context_at,
            key,
            tail,
            ..
        } = self;
        let family = family.as_mut().expect("checked above");
        key.clear();
        // `drop` puts the context's labels first.
        if *context_at == 0 {
            context.label_values(flow, key);
        }
        match kind {
            Kind::Flow => {
                let (kind, subtype) = event_type_names(flow);
                key.push(flow_protocol(flow));
                key.push(kind);
                key.push(&subtype);
                key.push(&verdict(flow));
            }
            Kind::Drop => {
                if flow.verdict != Verdict::Dropped as i32 {
                    return Ok(());
                }
                key.push(&drop_reason(flow.drop_reason_desc));
                key.push(flow_protocol(flow));
            }
            Kind::Tcp => {
                let Some((ip_family, flags)) = tcp_flags(flow) else {
                    return Ok(());
                };
                // One series per flag: the flag first, then the same rest.
                tail.clear();
                tail.push(&ip_family);
                context.label_values(flow, tail);
                let mut result = Ok(());
                for flag in flags.into_iter().flatten() {
                    key.clear();
                    key.push(flag);
                    key.extend(tail);
                    result = result.and(each(family, key));
                }
                return result;
            }
            Kind::PortDistribution => {
                let Some((protocol, port)) = destination_port(flow) else {
                    return Ok(());
                };
                key.push(protocol);
                key.push_number(port.into());
            }
            Kind::Icmp => {
                let Some((ip_family, kind)) = icmp(flow) else {
                    return Ok(());
                };
                key.push(ip_family);
                key.push(&kind);
            }
            Kind::FlowsToWorld => {
                key.push(flow_protocol(flow));
                key.push(&verdict(flow));
                if *port {
                    match world_port(flow) {
                        Some(p) => key.push_number(p.into()),
                        None => key.push(""),
                    }
                }
            }
            Kind::Policy => {
                let Some([direction, matched, action]) = policy_verdict(flow) else {
                    return Ok(());
                };
                key.push(&direction);
                key.push(&matched);
                key.push(&action);
            }
            Kind::FlowIo => {
                key.push(flow_protocol(flow));
                key.push(&verdict(flow));
                key.push(direction_name(flow));
            }
            Kind::L7 => return Ok(()),
        }
        if *context_at > 0 {
            context.label_values(flow, key);
        }
        each(family, key)
    }

    /// Removes the series of the pod `namespace/pod`; how many.
    pub(crate) fn remove_pod(&mut self, namespace: &str, pod: &str) -> usize {
        let (Some(family), false) = (self.family.as_mut(), self.pod_labels.is_empty()) else {
            return 0;
        };
        let (skip, labels) = (self.context_at, &self.pod_labels);
        family.remove_where(|values| labels.iter().any(|l| l.matches(values, skip, namespace, pod)))
    }

    /// Hubble counts non-reply flows to `reserved:world`, drops only for
    /// policy unless `any-drop`, and with `syn-only` TCP SYNs alone.
    fn counts_to_world(&self, flow: &Flow) -> bool {
        let to_world = flow
            .destination
            .as_ref()
            .is_some_and(|d| d.labels.iter().any(|l| l == "reserved:world"));
        let Some(l4) = flow.l4.as_ref().filter(|_| to_world && flow.event_type.is_some()) else {
            return false;
        };
        let dropped = flow.verdict == Verdict::Dropped as i32;
        if dropped && !self.any_drop && flow.drop_reason_desc != DropReason::PolicyDenied as i32 {
            return false;
        }
        let reply = flow.is_reply == Some(true);
        if !dropped && reply {
            return false;
        }
        if self.syn_only {
            let syn = matches!(&l4.protocol, Some(Protocol::Tcp(t)) if t.flags.as_ref().is_some_and(|f| f.syn));
            if !syn || reply {
                return false;
            }
        }
        true
    }
}

pub(crate) fn compile_filters(config: &MetricConfig) -> Result<FlowFilterSet, ConfigError> {
    let at = |list: &'static str, filters: &[lumen_proto::flow::FlowFilter]| {
        for (index, f) in filters.iter().enumerate() {
            lumen_flow::CompiledFilter::new(f).map_err(|source| ConfigError::Filter {
                metric: config.name.clone(),
                list,
                index,
                source: Box::new(source),
            })?;
        }
        Ok::<_, ConfigError>(())
    };
    at("includeFilters", &config.include_filters)?;
    at("excludeFilters", &config.exclude_filters)?;
    Ok(lumen_flow::compile(&config.include_filters, &config.exclude_filters).expect("each filter compiled"))
}

#[cfg(test)]
#[path = "handlers_tests.rs"]
mod tests;
