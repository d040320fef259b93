//! The parser's output written straight as the bytes of a
//! `GetFlowsResponse`, for serving: the same flow [`to_flow`] builds, without
//! building it. What depends only on the enrichment snapshot is encoded once
//! per snapshot and copied after that: an endpoint (by address and
//! identity), Lumen's extension (by rule, conntrack state and default-deny
//! endpoint), the summary (by layer 4 header), the emitter.
//!
//! [`to_flow`] stays the definition: the tests decode what this writes and
//! compare it with what `to_flow` builds, record by record.

use fnv::FnvHashMap as HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use lumen_probes::abi;
use lumen_proto::flow;
use lumen_proto::prost::bytes::{BufMut, Bytes, BytesMut};
use lumen_proto::prost::encoding::{encode_key, encode_varint, encoded_len_varint, message, WireType};
use lumen_rpc::raw::RawFlowsResponse;

use super::{Snapshot, StoredFlow};

/// Bytes reserved at once for the responses written; each response is split
/// off as its own `Bytes`, so an allocation serves many flows.
const ARENA: usize = 64 * 1024;

/// An encoded endpoint: its address as text and the `flow.Endpoint` message.
struct Endpoint {
    ip: Box<str>,
    body: Bytes,
}

/// What distinguishes extensions: rule id, conntrack state, and the
/// default-deny endpoint with the direction of its policies.
type ExtensionKey = (u32, u8, Option<(u32, bool)>);

/// A flow's source and destination: address and identity.
type Pair = [(IpAddr, u32); 2];

/// What the summary depends on: family, protocol, TCP flags, ICMP type and code.
type SummaryKey = (u8, u8, u8, u8, u8);

/// Writes flows as encoded `GetFlowsResponse`s, one stream of them at a
/// time (flows in a row mostly share a snapshot and endpoints).
pub struct Encoder {
    instance: u64,
    /// The snapshot the cached endpoints and extensions were encoded under.
    names: Option<u32>,
    endpoints: Vec<Endpoint>,
    endpoint_index: HashMap<(IpAddr, u32), usize>,
    /// The last flow's endpoints: flows in a row are mostly the same pair.
    last_pair: Option<(Pair, [usize; 2])>,
    extensions: HashMap<ExtensionKey, Bytes>,
    last_extension: Option<(ExtensionKey, Bytes)>,
    summaries: HashMap<SummaryKey, Box<str>>,
    flow: Vec<u8>,
    arena: BytesMut,
}

fn put_str(tag: u32, s: &[u8], buf: &mut impl BufMut) {
    if !s.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(s.len() as u64, buf);
        buf.put_slice(s);
    }
}

fn put_varint(tag: u32, v: u64, buf: &mut impl BufMut) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

/// A message field whose body is already encoded (present even if empty).
fn put_body(tag: u32, body: &[u8], buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(body.len() as u64, buf);
    buf.put_slice(body);
}

fn emitter() -> &'static [u8] {
    static EMITTER: OnceLock<Vec<u8>> = OnceLock::new();
    EMITTER.get_or_init(|| {
        let mut v = Vec::new();
        message::encode(41, &super::emitter(), &mut v);
        v
    })
}

impl Encoder {
    pub fn new(instance: u64) -> Encoder {
        Encoder {
            instance,
            names: None,
            endpoints: Vec::new(),
            endpoint_index: HashMap::default(),
            last_pair: None,
            extensions: HashMap::default(),
            last_extension: None,
            summaries: HashMap::default(),
            flow: Vec::with_capacity(1024),
            arena: BytesMut::new(),
        }
    }

    /// The response carrying the flow of `stored`, which arrived under
    /// `snap`; with Lumen's extension or without.
    pub fn response(&mut self, stored: &StoredFlow, snap: &Snapshot, extensions: bool) -> RawFlowsResponse {
        if self.names != Some(stored.names) {
            self.names = Some(stored.names);
            self.endpoints.clear();
            self.endpoint_index.clear();
            self.last_pair = None;
            self.extensions.clear();
            self.last_extension = None;
        }
        let mut flow = std::mem::take(&mut self.flow);
        flow.clear();
        self.flow_body(stored, snap, extensions, &mut flow);
        let ev = &stored.event;
        let time = super::time(ev);
        let node = snap.node_name.as_bytes();
        let len = 1 + encoded_len_varint(flow.len() as u64) + flow.len() + 3 + 10 + node.len() + 3 + 24;
        if self.arena.capacity() < len {
            self.arena.reserve(ARENA.max(len));
        }
        put_body(1, &flow, &mut self.arena);
        put_str(1000, node, &mut self.arena);
        message::encode(1001, &time, &mut self.arena);
        self.flow = flow;
        let bytes = self.arena.split().freeze();
        RawFlowsResponse::from_encoded(bytes, i128::from(ev.timestamp_ns))
    }

    /// The cached source and destination of a flow, encoded if new.
    fn pair(&mut self, keys: Pair, snap: &Snapshot) -> [usize; 2] {
        if let Some((last, found)) = self.last_pair {
            if last == keys {
                return found;
            }
        }
        let found = keys.map(|(ip, identity)| {
            *self.endpoint_index.entry((ip, identity)).or_insert_with(|| {
                self.endpoints.push(Endpoint {
                    ip: super::ip_text(ip).into(),
                    body: prost_body(&super::endpoint(ip, identity, snap)),
                });
                self.endpoints.len() - 1
            })
        });
        self.last_pair = Some((keys, found));
        found
    }

    fn extension(&mut self, ev: &abi::Event, snap: &Snapshot) -> &[u8] {
        let key = (
            ev.rule_id,
            ev.ct_state,
            super::default_deny_endpoint(ev, snap).map(|(_, ingress)| (ev.endpoint_id, ingress)),
        );
        if self.last_extension.as_ref().is_none_or(|(last, _)| *last != key) {
            let ext = self.extensions.entry(key).or_insert_with(|| {
                let mut v = Vec::new();
                message::encode(150_000, &super::extension(ev, snap).to_any(), &mut v);
                v.into()
            });
            self.last_extension = Some((key, ext.clone()));
        }
        &self.last_extension.as_ref().expect("set above").1
    }

    fn flow_body(&mut self, stored: &StoredFlow, snap: &Snapshot, extensions: bool, buf: &mut Vec<u8>) {
        let ev = &stored.event;
        let dropped = ev.verdict == abi::VERDICT_DROPPED;
        let (src, dst) = (super::ip_of(ev.family, &ev.saddr), super::ip_of(ev.family, &ev.daddr));
        let rule = super::rule(ev, snap);
        message::encode(1, &super::time(ev), buf);
        put_varint(2, super::verdict(ev) as u64, buf);
        if dropped {
            put_varint(3, ev.drop_reason.into(), buf);
        }
        let [s, d] = self.pair([(src, ev.src_identity), (dst, ev.dst_identity)], snap);
        let (source, destination) = (&self.endpoints[s], &self.endpoints[d]);
        {
            // Addresses as text are at most 39 bytes: one-byte lengths.
            let len = 2 + source.ip.len() + 2 + destination.ip.len() + 2;
            encode_key(5, WireType::LengthDelimited, buf);
            encode_varint(len as u64, buf);
            put_str(1, source.ip.as_bytes(), buf);
            put_str(2, destination.ip.as_bytes(), buf);
            put_varint(3, super::ip_version(ev) as u64, buf);
        }
        if let Some(l4) = super::l4(ev) {
            message::encode(6, &l4, buf);
        }
        put_body(8, &source.body, buf);
        put_body(9, &destination.body, buf);
        put_varint(10, flow::FlowType::L3L4 as u64, buf);
        put_str(11, snap.node_name.as_bytes(), buf);
        message::encode(19, &super::event_type(ev), buf);
        put_varint(22, super::traffic_direction(ev) as u64, buf);
        put_varint(23, rule.filter(|_| !dropped).map_or(0, |r| r.match_type).into(), buf);
        put_varint(24, super::trace_observation_point(ev) as u64, buf);
        if dropped {
            put_varint(25, ev.drop_reason.into(), buf);
        }
        if let Some(reply) = super::is_reply(ev) {
            message::encode(26, &reply, buf);
        }
        {
            let name = snap.interfaces.get(&ev.ifindex).map_or(&b""[..], |n| n.as_bytes());
            let mut body = [0u8; 16];
            let mut b = &mut body[..];
            put_varint(1, ev.ifindex.into(), &mut b);
            let used = 16 - b.len();
            let len = used
                + if name.is_empty() {
                    0
                } else {
                    1 + encoded_len_varint(name.len() as u64) + name.len()
                };
            encode_key(28, WireType::LengthDelimited, buf);
            encode_varint(len as u64, buf);
            buf.put_slice(&body[..used]);
            put_str(2, name, buf);
        }
        {
            let mut uuid = [0u8; uuid::fmt::Hyphenated::LENGTH];
            let bits = (u128::from(self.instance) << 64) | u128::from(stored.seq);
            let text = uuid::Builder::from_random_bytes(bits.to_be_bytes())
                .into_uuid()
                .hyphenated()
                .encode_lower(&mut uuid);
            put_str(34, text.as_bytes(), buf);
        }
        put_varint(36, super::trace_reason(ev) as u64, buf);
        buf.put_slice(emitter());
        if let Some(p) = rule.map(super::as_policy) {
            let tag = match super::rule_place(ev) {
                (false, false) => 21001,
                (true, false) => 21002,
                (false, true) => 21004,
                (true, true) => 21005,
            };
            message::encode(tag, &p, buf);
        }
        let summary = self.summaries.entry(summary_key(ev)).or_insert_with(|| summary_of(ev));
        put_str(100_000, summary.as_bytes(), buf);
        if extensions {
            buf.put_slice(self.extension(ev, snap));
        }
    }
}

fn prost_body(m: &impl lumen_proto::prost::Message) -> Bytes {
    m.encode_to_vec().into()
}

fn summary_key(ev: &abi::Event) -> SummaryKey {
    (ev.family, ev.proto, ev.tcp_flags, ev.icmp_type, ev.icmp_code)
}

/// The summary of a flow, from the only fields it reads.
fn summary_of(ev: &abi::Event) -> Box<str> {
    let f = flow::Flow {
        ip: Some(flow::Ip {
            ip_version: super::ip_version(ev) as i32,
            ..Default::default()
        }),
        l4: super::l4(ev),
        ..Default::default()
    };
    lumen_flow::summary::summary(&f).into()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;
    use std::sync::Arc;

    use lumen_proto::flow::Flow;
    use lumen_proto::observer::get_flows_response::ResponseTypes;

    use super::*;
    use crate::parser::{to_flow, EndpointMeta, RuleMeta};

    fn snapshot() -> Snapshot {
        let rule = |name: &str, match_type| RuleMeta {
            name: name.into(),
            namespace: "default".into(),
            kind: "CiliumNetworkPolicy".into(),
            match_type,
        };
        let meta = |id, pod: &str| {
            Arc::new(EndpointMeta {
                id,
                identity: id + 100,
                namespace: "default".into(),
                pod_name: pod.into(),
                labels: vec![
                    format!("k8s:app={pod}"),
                    "k8s:io.kubernetes.pod.namespace=default".into(),
                ],
                selected_by_ingress: vec![rule("in", 0)],
                selected_by_egress: vec![rule("out", 0), rule("out2", 0)],
            })
        };
        let mut s = Snapshot {
            node_name: "node1".into(),
            ..Default::default()
        };
        for (ip, id, pod) in [("10.0.0.1", 1, "a"), ("10.0.0.2", 2, "b"), ("fd00::2", 3, "c")] {
            let m = meta(id, pod);
            s.endpoints.insert(ip.parse().unwrap(), m.clone());
            s.endpoints_by_id.insert(id, m);
        }
        s.identity_labels
            .insert(16_777_300, vec!["cidr:198.51.100.0/24".into()]);
        s.rules.insert(7, Arc::new(rule("allow-web", 2)));
        s.interfaces.insert(9, "lxc9".into());
        s
    }

    /// Records that between them set every field the parser fills, each way.
    fn records() -> Vec<StoredFlow> {
        let mut out = Vec::new();
        let v4 = |a: [u8; 4]| {
            let mut x = [0u8; 16];
            x[..4].copy_from_slice(&a);
            x
        };
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap().octets();
        let addrs = [
            (4, v4([10, 0, 0, 1]), v4([10, 0, 0, 2])),
            (4, v4([198, 51, 100, 7]), v4([10, 0, 0, 1])),
            (6, v6("fd00::2"), v6("2001:db8::1")),
        ];
        let mut seq = 0;
        for (family, saddr, daddr) in addrs {
            for proto in [6, 17, 132, 1, 58, 47] {
                for (verdict, drop_reason) in [
                    (abi::VERDICT_FORWARDED, 0),
                    (abi::VERDICT_DROPPED, abi::DROP_POLICY_DENIED),
                    (abi::VERDICT_DROPPED, abi::DROP_POLICY_DENY),
                    (abi::VERDICT_AUDIT, 0),
                ] {
                    for (rule_id, ct_state, flags, direction) in [
                        (0, 0, 0, abi::DIR_INGRESS),
                        (7, abi::CT_NEW, 0, abi::DIR_EGRESS),
                        (8, abi::CT_REPLY, abi::EVF_IS_REPLY, abi::DIR_INGRESS),
                        (7, abi::CT_ESTABLISHED, abi::EVF_IS_REPLY, abi::DIR_EGRESS),
                    ] {
                        seq += 1;
                        out.push(StoredFlow {
                            seq: seq * 7919,
                            names: 0,
                            event: abi::Event {
                                timestamp_ns: 1_764_000_000_000_000_000 + seq * 999_999_937,
                                ifindex: if seq % 3 == 0 { 0 } else { 9 + (seq % 2) as u32 },
                                endpoint_id: 1 + (seq % 4) as u32,
                                src_identity: if family == 4 && saddr[0] == 198 { 16_777_300 } else { 2 },
                                dst_identity: (seq % 5) as u32,
                                rule_id,
                                saddr,
                                daddr,
                                sport: (seq * 13) as u16,
                                dport: 80,
                                family,
                                proto,
                                direction,
                                verdict,
                                drop_reason,
                                tcp_flags: (seq * 37) as u8,
                                icmp_type: (seq % 12) as u8,
                                icmp_code: (seq % 4) as u8,
                                ct_state,
                                flags,
                                ..Default::default()
                            },
                        });
                    }
                }
            }
        }
        out
    }

    #[test]
    fn what_is_written_decodes_to_what_the_parser_builds() {
        let snap = snapshot();
        let mut encoder = Encoder::new(0xfeed);
        for extensions in [true, false] {
            for stored in records() {
                let raw = encoder.response(&stored, &snap, extensions);
                let decoded = raw.decode().unwrap();
                let mut built: Flow = to_flow(&stored, &snap, 0xfeed);
                if !extensions {
                    built.extensions = None;
                }
                assert_eq!(decoded.node_name, "node1");
                assert_eq!(decoded.time, built.time);
                let t = built.time.unwrap();
                assert_eq!(
                    raw.time_ns(),
                    i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
                );
                assert_eq!(
                    decoded.response_types,
                    Some(ResponseTypes::Flow(built.clone())),
                    "{stored:?}"
                );
                // Byte for byte what prost writes, too.
                let typed = lumen_proto::observer::GetFlowsResponse {
                    node_name: "node1".into(),
                    time: built.time,
                    response_types: Some(ResponseTypes::Flow(built)),
                };
                assert_eq!(raw.bytes().len(), lumen_proto::prost::Message::encoded_len(&typed));
            }
        }
    }

    #[test]
    fn a_new_snapshot_is_encoded_afresh() {
        let mut snap = snapshot();
        let mut encoder = Encoder::new(1);
        let stored = records()[0];
        let before = encoder.response(&stored, &snap, true).decode().unwrap();
        let renamed = EndpointMeta {
            pod_name: "renamed".into(),
            ..(*snap.endpoints[&"10.0.0.1".parse::<IpAddr>().unwrap()]).clone()
        };
        snap.endpoints.insert("10.0.0.1".parse().unwrap(), Arc::new(renamed));
        let later = StoredFlow { names: 1, ..stored };
        let after = encoder.response(&later, &snap, true).decode().unwrap();
        let pod = |r: lumen_proto::observer::GetFlowsResponse| match r.response_types {
            Some(ResponseTypes::Flow(f)) => f.source.unwrap().pod_name,
            _ => panic!("a flow"),
        };
        assert_eq!((pod(before), pod(after)), ("a".to_string(), "renamed".to_string()));
    }
}
