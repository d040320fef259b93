//! A `GetFlowsResponse` with a flow in the protobuf JSON mapping (proto
//! field names), written straight from the prost types: the lines of the
//! flow logs and `-o jsonpb`, some twenty times faster than going through
//! the reflection path ([`crate::format::jsonpb`]), which it matches byte
//! for byte: fields in the order of their numbers, defaults
//! left out, 64-bit integers as strings, enums by name, timestamps in RFC
//! 3339 with 0, 3, 6 or 9 fraction digits, and Go's escapes for `<`, `>`
//! and `&`. A flow with a field this writer does not know (L7, tunnel,
//! file, trace context, aggregate, extensions, VRRP or IGMP) is left to
//! the reflection path: [`write_response`] returns `false`.

use lumen_proto::flow::{
    layer4, AuthType, DropReason, Endpoint, Flow, FlowType, IpVersion, Policy, SocketTranslationPoint,
    TraceObservationPoint, TraceReason, TrafficDirection, Verdict,
};
use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use lumen_proto::prost_types::Timestamp;

/// Appends `response` as one JSON object (no newline) to `out`; `false`,
/// with `out` as it was, when it is not a flow this writer covers.
pub fn write_response(response: &GetFlowsResponse, out: &mut Vec<u8>) -> bool {
    let Some(ResponseTypes::Flow(flow)) = &response.response_types else {
        return false;
    };
    covered(flow) && flow.extensions.is_none() && {
        write_flow_response(flow, &response.node_name, response.time.as_ref(), out);
        true
    }
}

/// `{"flow":…,"node_name":…,"time":…}` for `flow` as it would be without
/// its `extensions` (Lumen's, which Hubble's tools cannot read), without
/// building the response; `false`, with `out` as it was, when the flow has
/// another field this writer does not know.
pub fn write_flow_line(flow: &Flow, node_name: &str, time: Option<&Timestamp>, out: &mut Vec<u8>) -> bool {
    covered(flow) && {
        write_flow_response(flow, node_name, time, out);
        true
    }
}

fn write_flow_response(flow: &Flow, node_name: &str, time: Option<&Timestamp>, out: &mut Vec<u8>) {
    let mut o = Object::open(out);
    o.key("flow");
    let flow_time = write_flow(flow, o.out);
    o.string("node_name", node_name);
    if let Some(t) = time {
        o.key("time");
        match flow_time {
            // The response's time is the flow's, mostly: copied.
            Some(written) if flow.time.as_ref() == Some(t) => o.out.extend_from_within(written),
            _ => timestamp(t, o.out),
        }
    }
    o.close();
}

/// Whether every field `flow` has set, but `extensions`, is one this
/// writer knows.
fn covered(f: &Flow) -> bool {
    f.tunnel.is_none()
        && f.ip_trace_id.is_none()
        && f.l7.is_none()
        && f.file.is_none()
        && f.trace_context.is_none()
        && f.aggregate.is_none()
        && f.debug_capture_point == 0
        && !matches!(
            f.l4.as_ref().and_then(|l| l.protocol.as_ref()),
            Some(layer4::Protocol::Vrrp(_) | layer4::Protocol::Igmp(_))
        )
}

/// A JSON object being written: commas between members.
struct Object<'o> {
    out: &'o mut Vec<u8>,
    first: bool,
}

impl<'o> Object<'o> {
    fn open(out: &'o mut Vec<u8>) -> Object<'o> {
        out.push(b'{');
        Object { out, first: true }
    }

    fn key(&mut self, key: &str) {
        self.out.reserve(key.len() + 4);
        self.out.extend_from_slice(if self.first { b"\"" } else { b",\"" });
        self.first = false;
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn string(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.key(key);
            string(value, self.out);
        }
    }

    fn number(&mut self, key: &str, value: impl Into<i64>) {
        let value = value.into();
        if value != 0 {
            self.key(key);
            decimal(value, self.out);
        }
    }

    /// 64-bit integers are strings in the JSON mapping.
    fn u64(&mut self, key: &str, value: u64) {
        if value != 0 {
            self.key(key);
            self.out.push(b'"');
            unsigned(value, self.out);
            self.out.push(b'"');
        }
    }

    fn bool(&mut self, key: &str, value: bool) {
        if value {
            self.key(key);
            self.out.extend_from_slice(b"true");
        }
    }

    /// An enum by its name, or its number if it has none.
    fn enumeration(&mut self, key: &str, value: i32, name: Option<&str>) {
        if value != 0 {
            self.key(key);
            match name {
                Some(name) => string(name, self.out),
                None => decimal(value, self.out),
            }
        }
    }

    fn strings(&mut self, key: &str, values: &[String]) {
        if !values.is_empty() {
            self.key(key);
            self.out.push(b'[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                string(v, self.out);
            }
            self.out.push(b']');
        }
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

fn name<E>(value: i32, as_str: impl Fn(&E) -> &'static str) -> Option<&'static str>
where
    E: TryFrom<i32>,
{
    E::try_from(value).ok().map(|e| as_str(&e))
}

fn service(o: &mut Object<'_>, key: &str, s: &Option<lumen_proto::flow::Service>) {
    if let Some(s) = s {
        o.key(key);
        let mut m = Object::open(o.out);
        m.string("name", &s.name);
        m.string("namespace", &s.namespace);
        m.close();
    }
}

// Fields in the order of their numbers, as the reflection path writes
// them. `drop_reason`, `reply` and `Summary` are deprecated in Hubble's API
// and still sent. Returns where in `out` the flow's time was written.
#[allow(deprecated)]
fn write_flow(f: &Flow, out: &mut Vec<u8>) -> Option<std::ops::Range<usize>> {
    let mut o = Object::open(out);
    let time = f.time.as_ref().map(|t| {
        o.key("time");
        let start = o.out.len();
        timestamp(t, o.out);
        start..o.out.len()
    });
    o.enumeration("verdict", f.verdict, name(f.verdict, Verdict::as_str_name));
    o.number("drop_reason", f.drop_reason);
    if let Some(e) = &f.ethernet {
        o.key("ethernet");
        let mut m = Object::open(o.out);
        m.string("source", &e.source);
        m.string("destination", &e.destination);
        m.close();
    }
    if let Some(ip) = &f.ip {
        o.key("IP");
        let mut m = Object::open(o.out);
        m.string("source", &ip.source);
        m.string("destination", &ip.destination);
        m.enumeration("ipVersion", ip.ip_version, name(ip.ip_version, IpVersion::as_str_name));
        m.bool("encrypted", ip.encrypted);
        m.string("source_xlated", &ip.source_xlated);
        m.close();
    }
    if let Some(l4) = &f.l4 {
        o.key("l4");
        layer4(l4, o.out);
    }
    if let Some(e) = &f.source {
        o.key("source");
        endpoint(e, o.out);
    }
    if let Some(e) = &f.destination {
        o.key("destination");
        endpoint(e, o.out);
    }
    o.enumeration("Type", f.r#type, name(f.r#type, FlowType::as_str_name));
    o.string("node_name", &f.node_name);
    o.strings("source_names", &f.source_names);
    o.strings("destination_names", &f.destination_names);
    o.bool("reply", f.reply);
    if let Some(e) = &f.event_type {
        o.key("event_type");
        let mut m = Object::open(o.out);
        m.number("type", e.r#type);
        m.number("sub_type", e.sub_type);
        m.close();
    }
    service(&mut o, "source_service", &f.source_service);
    service(&mut o, "destination_service", &f.destination_service);
    o.enumeration(
        "traffic_direction",
        f.traffic_direction,
        name(f.traffic_direction, TrafficDirection::as_str_name),
    );
    o.number("policy_match_type", f.policy_match_type);
    o.enumeration(
        "trace_observation_point",
        f.trace_observation_point,
        name(f.trace_observation_point, TraceObservationPoint::as_str_name),
    );
    o.enumeration(
        "drop_reason_desc",
        f.drop_reason_desc,
        name(f.drop_reason_desc, DropReason::as_str_name),
    );
    if let Some(r) = f.is_reply {
        o.key("is_reply");
        o.out.extend_from_slice(if r { b"true" } else { b"false" });
    }
    if let Some(i) = &f.interface {
        o.key("interface");
        let mut m = Object::open(o.out);
        m.number("index", i.index);
        m.string("name", &i.name);
        m.close();
    }
    o.number("proxy_port", f.proxy_port);
    o.enumeration(
        "sock_xlate_point",
        f.sock_xlate_point,
        name(f.sock_xlate_point, SocketTranslationPoint::as_str_name),
    );
    o.u64("socket_cookie", f.socket_cookie);
    o.u64("cgroup_id", f.cgroup_id);
    o.string("uuid", &f.uuid);
    o.enumeration("auth_type", f.auth_type, name(f.auth_type, AuthType::as_str_name));
    o.enumeration(
        "trace_reason",
        f.trace_reason,
        name(f.trace_reason, TraceReason::as_str_name),
    );
    o.strings("node_labels", &f.node_labels);
    if let Some(e) = &f.emitter {
        o.key("emitter");
        let mut m = Object::open(o.out);
        m.string("name", &e.name);
        m.string("version", &e.version);
        m.close();
    }
    policies(&mut o, "egress_allowed_by", &f.egress_allowed_by);
    policies(&mut o, "ingress_allowed_by", &f.ingress_allowed_by);
    policies(&mut o, "egress_denied_by", &f.egress_denied_by);
    policies(&mut o, "ingress_denied_by", &f.ingress_denied_by);
    o.strings("policy_log", &f.policy_log);
    o.string("Summary", &f.summary);
    o.close();
    time
}

fn endpoint(e: &Endpoint, out: &mut Vec<u8>) {
    let mut m = Object::open(out);
    m.number("ID", e.id);
    m.number("identity", e.identity);
    m.string("namespace", &e.namespace);
    m.strings("labels", &e.labels);
    m.string("pod_name", &e.pod_name);
    if !e.workloads.is_empty() {
        m.key("workloads");
        m.out.push(b'[');
        for (i, w) in e.workloads.iter().enumerate() {
            if i > 0 {
                m.out.push(b',');
            }
            let mut wo = Object::open(m.out);
            wo.string("name", &w.name);
            wo.string("kind", &w.kind);
            wo.close();
        }
        m.out.push(b']');
    }
    m.string("cluster_name", &e.cluster_name);
    m.close();
}

fn policies(o: &mut Object<'_>, key: &str, list: &[Policy]) {
    if list.is_empty() {
        return;
    }
    o.key(key);
    o.out.push(b'[');
    for (i, p) in list.iter().enumerate() {
        if i > 0 {
            o.out.push(b',');
        }
        let mut m = Object::open(o.out);
        m.string("name", &p.name);
        m.string("namespace", &p.namespace);
        m.strings("labels", &p.labels);
        m.u64("revision", p.revision);
        m.string("kind", &p.kind);
        m.close();
    }
    o.out.push(b']');
}

fn layer4(l4: &lumen_proto::flow::Layer4, out: &mut Vec<u8>) {
    let mut o = Object::open(out);
    let ports = |o: &mut Object<'_>, key: &str, source: u32, destination: u32| {
        o.key(key);
        let mut m = Object::open(o.out);
        m.number("source_port", source);
        m.number("destination_port", destination);
        m.close();
    };
    let icmp = |o: &mut Object<'_>, key: &str, code: u32, kind: u32| {
        o.key(key);
        let mut m = Object::open(o.out);
        m.number("type", kind);
        m.number("code", code);
        m.close();
    };
    match &l4.protocol {
        Some(layer4::Protocol::Tcp(t)) => {
            o.key("TCP");
            let mut m = Object::open(o.out);
            m.number("source_port", t.source_port);
            m.number("destination_port", t.destination_port);
            if let Some(f) = &t.flags {
                m.key("flags");
                let mut fl = Object::open(m.out);
                fl.bool("FIN", f.fin);
                fl.bool("SYN", f.syn);
                fl.bool("RST", f.rst);
                fl.bool("PSH", f.psh);
                fl.bool("ACK", f.ack);
                fl.bool("URG", f.urg);
                fl.bool("ECE", f.ece);
                fl.bool("CWR", f.cwr);
                fl.bool("NS", f.ns);
                fl.close();
            }
            m.close();
        }
        Some(layer4::Protocol::Udp(u)) => ports(&mut o, "UDP", u.source_port, u.destination_port),
        Some(layer4::Protocol::Sctp(s)) => ports(&mut o, "SCTP", s.source_port, s.destination_port),
        Some(layer4::Protocol::IcmPv4(i)) => icmp(&mut o, "ICMPv4", i.code, i.r#type),
        Some(layer4::Protocol::IcmPv6(i)) => icmp(&mut o, "ICMPv6", i.code, i.r#type),
        Some(layer4::Protocol::Vrrp(_) | layer4::Protocol::Igmp(_)) | None => {}
    }
    o.close();
}

/// `n` in decimal, without allocating.
fn decimal(n: impl Into<i64>, out: &mut Vec<u8>) {
    let n: i64 = n.into();
    if n < 0 {
        out.push(b'-');
    }
    unsigned(n.unsigned_abs(), out);
}

fn unsigned(n: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(crate::format::decimal_bytes(n, &mut [0; 20]));
}

/// RFC 3339 in UTC with 0, 3, 6 or 9 fraction digits, as the JSON mapping
/// writes it; the date from the days since 1970 (Howard Hinnant's
/// civil-from-days), so that no formatter runs per flow.
fn timestamp(t: &Timestamp, out: &mut Vec<u8>) {
    let nanos = t.nanos.clamp(0, 999_999_999) as u32;
    let (year, month, day) = crate::format::civil_date(t.seconds.div_euclid(86_400));
    let secs = t.seconds.rem_euclid(86_400) as u32;
    if !(0..=9999).contains(&year) {
        out.extend_from_slice(b"null");
        return;
    }
    let two = |n: u32, out: &mut Vec<u8>| out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
    out.push(b'"');
    two((year / 100) as u32, out);
    two((year % 100) as u32, out);
    out.push(b'-');
    two(month, out);
    out.push(b'-');
    two(day, out);
    out.push(b'T');
    two(secs / 3600, out);
    out.push(b':');
    two(secs / 60 % 60, out);
    out.push(b':');
    two(secs % 60, out);
    let (digits, value) = if nanos == 0 {
        (0, 0)
    } else if nanos.is_multiple_of(1_000_000) {
        (3, nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        (6, nanos / 1_000)
    } else {
        (9, nanos)
    };
    if digits > 0 {
        out.push(b'.');
        let mut buf = [b'0'; 9];
        let mut v = value;
        for d in buf[..digits].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&buf[..digits]);
    }
    out.extend_from_slice(b"Z\"");
}

/// Whether any of the eight bytes in `word` is one [`string`] may have to
/// escape: below 0x20, `"`, `\\`, `<`, `>`, `&` or 0xe2 (exact: the tests
/// for a zero byte and for a byte below 0x20 have false positives only
/// above a byte that matches).
fn may_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let equal = |c: u8| below(word ^ (ONES * u64::from(c)), 1);
    (below(word, 0x20) | equal(b'"') | equal(b'\\') | equal(b'<') | equal(b'>') | equal(b'&') | equal(0xe2)) != 0
}

/// A JSON string as serde_json writes it, with Go's escapes for `<`, `>`,
/// `&`, U+2028 and U+2029 (see [`crate::format::jsonpb`]). Scans bytes:
/// every byte that needs an escape is ASCII but U+2028 and U+2029's lead.
fn string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    /// Bytes that may need an escape: controls, `"`, `\\`, `<`, `>`, `&`,
    /// and 0xe2, the lead byte of U+2028 and U+2029.
    const SPECIAL: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 0x20 {
            t[b] = true;
            b += 1;
        }
        t[b'"' as usize] = true;
        t[b'\\' as usize] = true;
        t[b'<' as usize] = true;
        t[b'>' as usize] = true;
        t[b'&' as usize] = true;
        t[0xe2] = true;
        t
    };
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        // Eight bytes at a time while none of them may need an escape.
        while let Some(eight) = bytes.get(i..i + 8) {
            if may_escape(u64::from_le_bytes(eight.try_into().expect("eight bytes"))) {
                break;
            }
            i += 8;
        }
        let Some(&b) = bytes.get(i) else {
            break;
        };
        if !SPECIAL[usize::from(b)] {
            i += 1;
            continue;
        }
        let separator = b == 0xe2 && bytes.get(i + 1) == Some(&0x80) && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9));
        if b == 0xe2 && !separator {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0xe2 => {
                out.extend_from_slice(if bytes[i + 2] == 0xa8 { b"\\u2028" } else { b"\\u2029" });
                i += 2;
            }
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use lumen_proto::flow::*;
    use lumen_proto::prost_types::{Any, Timestamp};

    use super::*;

    fn response(flow: Flow) -> GetFlowsResponse {
        GetFlowsResponse {
            node_name: flow.node_name.clone(),
            time: flow.time,
            response_types: Some(ResponseTypes::Flow(flow)),
        }
    }

    /// Both writers' output for `flow`, which this writer must cover.
    fn both(flow: Flow) -> (String, String) {
        let r = response(flow);
        let mut fast = Vec::new();
        assert!(write_response(&r, &mut fast), "not covered: {r:?}");
        (
            String::from_utf8(fast).unwrap(),
            crate::format::jsonpb_reflected(&r).unwrap(),
        )
    }

    fn endpoint(pod: &str) -> Option<Endpoint> {
        Some(Endpoint {
            id: 7,
            identity: 12_019_243,
            cluster_name: "c1".into(),
            namespace: "shop".into(),
            labels: vec![format!("k8s:app={pod}"), "k8s:io.kubernetes.pod.namespace=shop".into()],
            pod_name: format!("{pod}-1"),
            workloads: vec![Workload {
                name: pod.into(),
                kind: "Deployment".into(),
            }],
        })
    }

    fn policy(name: &str) -> Policy {
        Policy {
            name: name.into(),
            namespace: "shop".into(),
            labels: vec!["k8s:io.cilium.k8s.policy.name=x".into()],
            revision: 42,
            kind: "CiliumNetworkPolicy".into(),
        }
    }

    /// Every field this writer covers, set.
    #[allow(deprecated)]
    fn full() -> Flow {
        Flow {
            time: Some(Timestamp {
                seconds: 1_764_000_000,
                nanos: 123_456_789,
            }),
            uuid: "3c0cf076-be61-4f8d-8000-000000000001".into(),
            verdict: Verdict::Dropped as i32,
            drop_reason: 133,
            drop_reason_desc: DropReason::PolicyDenied as i32,
            auth_type: AuthType::Spire as i32,
            ethernet: Some(Ethernet {
                source: "02:00:00:00:00:01".into(),
                destination: "02:00:00:00:00:02".into(),
            }),
            ip: Some(Ip {
                source: "10.0.0.1".into(),
                source_xlated: "10.0.0.9".into(),
                destination: "10.0.0.2".into(),
                ip_version: IpVersion::IPv4 as i32,
                encrypted: true,
            }),
            l4: Some(Layer4 {
                protocol: Some(layer4::Protocol::Tcp(Tcp {
                    source_port: 46_000,
                    destination_port: 8080,
                    flags: Some(TcpFlags {
                        fin: true,
                        syn: true,
                        rst: true,
                        psh: true,
                        ack: true,
                        urg: true,
                        ece: true,
                        cwr: true,
                        ns: true,
                    }),
                })),
            }),
            emitter: Some(Emitter {
                name: "Lumen".into(),
                version: "0.1.0".into(),
            }),
            source: endpoint("frontend"),
            destination: endpoint("backend"),
            r#type: FlowType::L3L4 as i32,
            node_name: "node1".into(),
            node_labels: vec!["kubernetes.io/hostname=node1".into()],
            source_names: vec!["a.example".into()],
            destination_names: vec!["b.example".into(), "c.example".into()],
            reply: true,
            is_reply: Some(true),
            event_type: Some(CiliumEventType {
                r#type: 1,
                sub_type: 133,
            }),
            source_service: Some(Service {
                name: "web".into(),
                namespace: "shop".into(),
            }),
            destination_service: Some(Service {
                name: "api".into(),
                namespace: "shop".into(),
            }),
            traffic_direction: TrafficDirection::Ingress as i32,
            policy_match_type: 3,
            trace_observation_point: TraceObservationPoint::ToEndpoint as i32,
            trace_reason: TraceReason::New as i32,
            interface: Some(NetworkInterface {
                index: 3,
                name: "lxc1".into(),
            }),
            proxy_port: 15_001,
            sock_xlate_point: SocketTranslationPoint::SockXlatePointPreDirectionFwd as i32,
            socket_cookie: u64::MAX,
            cgroup_id: 1 << 40,
            egress_allowed_by: vec![policy("allow-out")],
            ingress_allowed_by: vec![policy("allow-in"), policy("allow-in-2")],
            egress_denied_by: vec![policy("deny-out")],
            ingress_denied_by: vec![policy("deny-in")],
            policy_log: vec!["log-1".into()],
            summary: "TCP Flags: SYN".into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_covered_field_is_written_as_the_reflection_path_writes_it() {
        let (fast, slow) = both(full());
        assert_eq!(fast, slow);
    }

    #[test]
    fn defaults_empty_messages_and_unknown_enums_match() {
        let cases = [
            Flow::default(),
            Flow {
                ip: Some(Ip::default()),
                l4: Some(Layer4::default()),
                source: Some(Endpoint::default()),
                event_type: Some(CiliumEventType::default()),
                is_reply: Some(false),
                ..Default::default()
            },
            Flow {
                verdict: 99,
                drop_reason_desc: 9999,
                traffic_direction: 7,
                r#type: -3,
                event_type: Some(CiliumEventType {
                    r#type: -1,
                    sub_type: 0,
                }),
                ..Default::default()
            },
        ];
        for flow in cases {
            let (fast, slow) = both(flow);
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn every_transport_matches() {
        let protocols = [
            layer4::Protocol::Udp(Udp {
                source_port: 53,
                destination_port: 5353,
            }),
            layer4::Protocol::Sctp(Sctp {
                source_port: 1,
                destination_port: 2,
            }),
            layer4::Protocol::IcmPv4(IcmPv4 { r#type: 8, code: 0 }),
            layer4::Protocol::IcmPv6(IcmPv6 { r#type: 128, code: 3 }),
            layer4::Protocol::Tcp(Tcp::default()),
        ];
        for p in protocols {
            let (fast, slow) = both(Flow {
                l4: Some(Layer4 { protocol: Some(p) }),
                ..Default::default()
            });
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn a_flow_line_leaves_out_the_extensions_and_matches_the_response_without_them() {
        let mut with = full();
        with.extensions = Some(Any {
            type_url: "type.googleapis.com/lumen.v1.FlowExtension".into(),
            value: vec![],
        });
        let mut line = Vec::new();
        assert!(write_flow_line(&with, "node9", with.time.as_ref(), &mut line));
        let mut without = full();
        without.node_name = "node1".into();
        let r = GetFlowsResponse {
            node_name: "node9".into(),
            time: without.time,
            response_types: Some(ResponseTypes::Flow(without)),
        };
        assert_eq!(
            String::from_utf8(line).unwrap(),
            crate::format::jsonpb_reflected(&r).unwrap()
        );
        assert!(
            !write_response(&response(with), &mut Vec::new()),
            "a response keeps its extensions"
        );
    }

    #[test]
    fn timestamps_keep_0_3_6_or_9_digits_as_the_reflection_path() {
        for (seconds, nanos) in [
            (0, 0),
            (1_764_000_000, 0),
            (1_764_000_000, 100_000_000),
            (1_764_000_000, 120_000),
            (1_764_000_000, 1),
            (951_782_400, 5_000_000),
            (-1, 0),
            (253_402_300_799, 999_999_999),
        ] {
            let (fast, slow) = both(Flow {
                time: Some(Timestamp { seconds, nanos }),
                ..Default::default()
            });
            assert_eq!(fast, slow, "{seconds}.{nanos}");
        }
    }

    #[test]
    fn strings_are_escaped_as_the_reflection_path_escapes_them() {
        let nasty = "<script>\"quote\" back\\slash & tab\t nl\n cr\r bell\u{7} \u{1f} é 日本 \u{2028}\u{2029} 🦀 € …";
        let (fast, slow) = both(Flow {
            node_name: nasty.into(),
            source: Some(Endpoint {
                labels: vec![nasty.into()],
                pod_name: nasty.into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(fast, slow);
        assert!(fast.contains("\\u003cscript\\u003e"), "{fast}");
    }

    /// Eight bytes are skipped at a time: every character that needs an
    /// escape, at every place in a long string, is escaped as serde_json
    /// escapes it (through the reflection path).
    #[test]
    fn every_escape_is_found_wherever_it_is_in_a_string() {
        let specials = [
            "\"", "\\", "<", ">", "&", "\u{0}", "\u{1f}", "\n", "\u{2028}", "\u{2029}",
        ];
        let harmless = ["\u{7f}", "é", "€", "\u{2027}", "\u{202a}", "!", "=", "~"];
        for c in specials.iter().chain(&harmless) {
            for at in 0..20 {
                let text = format!("{}{c}{}", "a".repeat(at), "b".repeat(19 - at));
                let (fast, slow) = both(Flow {
                    node_name: text.clone(),
                    ..Default::default()
                });
                assert_eq!(fast, slow, "{text:?}");
                assert_eq!(
                    fast.contains(&format!("\"{text}\"")),
                    harmless.contains(c),
                    "{c:?} at {at}: {fast}"
                );
            }
        }
        for byte in 0..=255u8 {
            let word = u64::from_le_bytes([b'a', b'a', b'a', byte, b'a', b'a', b'a', b'a']);
            let special = byte < 0x20 || b"\"\\<>&".contains(&byte) || byte == 0xe2;
            assert_eq!(may_escape(word), special, "{byte:#x}");
        }
    }

    #[test]
    fn flows_with_fields_it_does_not_know_are_left_to_the_reflection_path() {
        let unknown = [
            Flow {
                l7: Some(Layer7::default()),
                ..Default::default()
            },
            Flow {
                extensions: Some(Any::default()),
                ..Default::default()
            },
            Flow {
                tunnel: Some(Tunnel::default()),
                ..Default::default()
            },
            Flow {
                aggregate: Some(Aggregate::default()),
                ..Default::default()
            },
            Flow {
                debug_capture_point: 1,
                ..Default::default()
            },
            Flow {
                l4: Some(Layer4 {
                    protocol: Some(layer4::Protocol::Vrrp(Vrrp::default())),
                }),
                ..Default::default()
            },
        ];
        for flow in unknown {
            let mut out = b"kept".to_vec();
            assert!(!write_response(&response(flow), &mut out));
            assert_eq!(out, b"kept");
        }
        let lost = GetFlowsResponse {
            response_types: Some(ResponseTypes::LostEvents(LostEvent::default())),
            ..Default::default()
        };
        assert!(!write_response(&lost, &mut Vec::new()));
    }
}
