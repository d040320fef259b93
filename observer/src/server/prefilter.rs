//! A cheap test on the stored record, before a flow is built: the fields of
//! a whitelist that the datapath record answers (verdict, drop reason,
//! direction, ports, identities, addresses) and, through the enrichment
//! snapshot the record arrived under, who the endpoints are (pods,
//! namespaces, labels). Over-approximates: a flow it rejects matches no
//! whitelist filter, so only flows passing it are built and matched.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use lumen_flow::{Cidr, FlowFilterSet};
use lumen_probes::abi;
use lumen_proto::flow::{Flow, FlowFilter};

use crate::hub::Hub;
use crate::parser::{self, Snapshot};
use crate::store::StoredFlow;

#[derive(Debug, Default)]
pub struct Prefilter {
    /// One entry per whitelist filter; empty means no prefiltering.
    filters: Vec<RawFilter>,
}

#[derive(Debug, Default)]
struct RawFilter {
    verdicts: Vec<u8>,
    drop_reasons: Vec<u8>,
    directions: Vec<u8>,
    source_ports: Vec<u16>,
    destination_ports: Vec<u16>,
    source_identities: Vec<u32>,
    destination_identities: Vec<u32>,
    source_nets: Vec<Cidr>,
    destination_nets: Vec<Cidr>,
    source: Option<Endpoints>,
    destination: Option<Endpoints>,
}

/// `ip` or `ip/len` as the IP filter reads them; a value that does not parse
/// leaves the field to the full filter.
fn nets(values: &[String]) -> Vec<Cidr> {
    let parsed: Option<Vec<_>> = values.iter().map(|v| Cidr::of_filter_value(v)).collect();
    parsed.unwrap_or_default()
}

fn ports(values: &[String]) -> Vec<u16> {
    // A value that is not a plain port leaves the field to the full filter.
    let parsed: Option<Vec<u16>> = values.iter().map(|v| v.parse().ok()).collect();
    parsed.unwrap_or_default()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

/// A filter's pod and label fields for one endpoint of the flow, answered
/// per (address, identity) under a snapshot: the same endpoint the parser
/// would build, matched by the same compiled filter, once per distinct
/// endpoint instead of once per flow.
#[derive(Debug)]
struct Endpoints {
    side: Side,
    filter: FlowFilterSet,
    known: RefCell<Known>,
}

/// Answers under one snapshot.
#[derive(Debug, Default)]
struct Known {
    names: Option<u32>,
    snapshot: Option<Arc<Snapshot>>,
    answers: HashMap<(IpAddr, u32), bool>,
    /// The last answer given: consecutive flows are often the same pair.
    last: Option<((IpAddr, u32), bool)>,
}

impl Endpoints {
    fn new(side: Side, w: &FlowFilter) -> Option<Endpoints> {
        let only = match side {
            Side::Source => FlowFilter {
                source_pod: w.source_pod.clone(),
                source_label: w.source_label.clone(),
                ..Default::default()
            },
            Side::Destination => FlowFilter {
                destination_pod: w.destination_pod.clone(),
                destination_label: w.destination_label.clone(),
                ..Default::default()
            },
        };
        if only == FlowFilter::default() {
            return None;
        }
        // The whole filter compiled already; this part does too.
        let filter = lumen_flow::compile(&[only], &[]).ok()?;
        Some(Endpoints {
            side,
            filter,
            known: RefCell::default(),
        })
    }

    fn may_match(&self, hub: &Hub, f: &StoredFlow) -> bool {
        let ev = &f.event;
        let (addr, identity) = match self.side {
            Side::Source => (&ev.saddr, ev.src_identity),
            Side::Destination => (&ev.daddr, ev.dst_identity),
        };
        let ip = parser::ip_of(ev.family, addr);
        let mut known = self.known.borrow_mut();
        if known.names != Some(f.names) {
            *known = Known {
                names: Some(f.names),
                snapshot: Some(hub.snapshot(f.names)),
                ..Known::default()
            };
        }
        let key = (ip, identity);
        if let Some((last, answer)) = known.last {
            if last == key {
                return answer;
            }
        }
        let Known {
            snapshot,
            answers,
            last,
            ..
        } = &mut *known;
        let snapshot = snapshot.as_ref().expect("set above");
        let answer = *answers.entry(key).or_insert_with(|| {
            let endpoint = Some(parser::endpoint(ip, identity, snapshot));
            let flow = match self.side {
                Side::Source => Flow {
                    source: endpoint,
                    ..Default::default()
                },
                Side::Destination => Flow {
                    destination: endpoint,
                    ..Default::default()
                },
            };
            self.filter.matches(&flow)
        });
        *last = Some((key, answer));
        answer
    }
}

impl Prefilter {
    pub fn new(whitelist: &[FlowFilter]) -> Prefilter {
        let filters = whitelist
            .iter()
            .map(|w| RawFilter {
                verdicts: w.verdict.iter().filter_map(|v| u8::try_from(*v).ok()).collect(),
                drop_reasons: w
                    .drop_reason_desc
                    .iter()
                    .filter_map(|v| u8::try_from(*v).ok())
                    .collect(),
                directions: w
                    .traffic_direction
                    .iter()
                    .filter_map(|v| u8::try_from(*v).ok())
                    .collect(),
                source_ports: ports(&w.source_port),
                destination_ports: ports(&w.destination_port),
                source_identities: w.source_identity.clone(),
                destination_identities: w.destination_identity.clone(),
                source_nets: nets(&w.source_ip),
                destination_nets: nets(&w.destination_ip),
                source: Endpoints::new(Side::Source, w),
                destination: Endpoints::new(Side::Destination, w),
            })
            .collect();
        Prefilter { filters }
    }

    /// Whether `f` may match: false only if no whitelist filter accepts it.
    pub fn may_match(&self, hub: &Hub, f: &StoredFlow) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|r| r.may_match(hub, f))
    }
}

impl RawFilter {
    fn may_match(&self, hub: &Hub, f: &StoredFlow) -> bool {
        let ev = &f.event;
        self.record_may_match(ev)
            && self.source.as_ref().is_none_or(|e| e.may_match(hub, f))
            && self.destination.as_ref().is_none_or(|e| e.may_match(hub, f))
    }

    fn record_may_match(&self, ev: &abi::Event) -> bool {
        let any = |set: &[u8], v: u8| set.is_empty() || set.contains(&v);
        // Hubble matches ports only on TCP, UDP and SCTP flows.
        let has_ports = matches!(ev.proto, 6 | 17 | 132);
        let port = |set: &[u16], v: u16| set.is_empty() || (has_ports && set.contains(&v));
        let id = |set: &[u32], v: u32| set.is_empty() || set.contains(&v);
        let net = |set: &[Cidr], addr: &[u8; 16]| {
            set.is_empty() || {
                let ip = parser::ip_of(ev.family, addr);
                set.iter().any(|n| n.contains(ip))
            }
        };
        // The datapath's verdict, drop reason and direction numbers are Hubble's.
        any(&self.verdicts, ev.verdict)
            && (self.drop_reasons.is_empty()
                || (ev.verdict == abi::VERDICT_DROPPED && self.drop_reasons.contains(&ev.drop_reason)))
            && any(&self.directions, parser::connection_direction(ev))
            && port(&self.source_ports, ev.sport)
            && port(&self.destination_ports, ev.dport)
            && id(&self.source_identities, ev.src_identity)
            && id(&self.destination_identities, ev.dst_identity)
            && net(&self.source_nets, &ev.saddr)
            && net(&self.destination_nets, &ev.daddr)
    }
}
