//! Decoding of ring-buffer records: a pure function from bytes to an event.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lumen_flow::tcp::{self, TcpFlag};
use lumen_probes::abi;
use lumen_proto::flow::DropReason;
use serde::Serialize;

/// A record was not a well-formed event. It is counted, never guessed at.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than an event header ({need} bytes)")]
    Short { len: usize, need: usize },
    #[error("event claims {cap_len} captured bytes but only {available} follow the header")]
    CaptureOverrun { cap_len: usize, available: usize },
    #[error("unknown address family {0}")]
    Family(u8),
}

impl DecodeError {
    /// Every [`DecodeError::kind`].
    pub const KINDS: [&'static str; 3] = ["capture_overrun", "short", "unknown_family"];

    /// What was wrong, as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Short { .. } => "short",
            DecodeError::CaptureOverrun { .. } => "capture_overrun",
            DecodeError::Family(_) => "unknown_family",
        }
    }
}

/// One datapath decision, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatapathEvent {
    /// Nanoseconds of CLOCK_MONOTONIC when the packet was seen.
    pub monotonic_ns: u64,
    pub ifindex: u32,
    pub endpoint_id: u32,
    pub direction: Direction,
    pub observation_point: ObservationPoint,
    pub verdict: Verdict,
    /// Hubble's DropReason number; 0 when not dropped.
    pub drop_reason: u8,
    pub ct_state: CtState,
    pub is_reply: bool,
    pub fragment: bool,
    pub truncated: bool,
    pub ip_version: u8,
    pub protocol: u8,
    pub source: IpAddr,
    pub destination: IpAddr,
    pub source_port: u16,
    pub destination_port: u16,
    pub tcp_flags: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub length: u32,
    pub source_identity: u32,
    pub destination_identity: u32,
    pub rule_id: u32,
    /// The first bytes of the packet, when capture is on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capture: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    Ingress,
    Egress,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ObservationPoint {
    FromEndpoint,
    ToEndpoint,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Forwarded,
    Dropped,
    Audit,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CtState {
    New,
    Established,
    Reply,
    Related,
    Untracked,
}

const HEADER: usize = std::mem::size_of::<abi::Event>();

/// The fixed-size header of a ring-buffer record, as the datapath wrote it,
/// checked: long enough, a known address family, captured bytes present.
pub fn header(record: &[u8]) -> Result<abi::Event, DecodeError> {
    if record.len() < HEADER {
        return Err(DecodeError::Short {
            len: record.len(),
            need: HEADER,
        });
    }
    // SAFETY: the length is checked above and `abi::Event` is plain data
    // valid for any bit pattern; read_unaligned copes with any alignment.
    let ev: abi::Event = unsafe { std::ptr::read_unaligned(record.as_ptr().cast()) };
    let cap_len = usize::from(ev.cap_len);
    let available = record.len() - HEADER;
    if cap_len > available {
        return Err(DecodeError::CaptureOverrun { cap_len, available });
    }
    if ev.family != 4 && ev.family != 6 {
        return Err(DecodeError::Family(ev.family));
    }
    Ok(ev)
}

/// Decodes one ring-buffer record.
pub fn decode(record: &[u8]) -> Result<DatapathEvent, DecodeError> {
    let ev = header(record)?;
    let cap_len = usize::from(ev.cap_len);
    Ok(event(&ev, &record[HEADER..HEADER + cap_len]))
}

/// The event of a checked header and the packet bytes captured with it.
pub fn event(ev: &abi::Event, capture: &[u8]) -> DatapathEvent {
    let (source, destination) = if ev.family == 4 {
        (v4(&ev.saddr), v4(&ev.daddr))
    } else {
        (
            IpAddr::V6(Ipv6Addr::from(ev.saddr)),
            IpAddr::V6(Ipv6Addr::from(ev.daddr)),
        )
    };
    DatapathEvent {
        monotonic_ns: ev.timestamp_ns,
        ifindex: ev.ifindex,
        endpoint_id: ev.endpoint_id,
        direction: match ev.direction {
            abi::DIR_INGRESS => Direction::Ingress,
            abi::DIR_EGRESS => Direction::Egress,
            _ => Direction::Unknown,
        },
        observation_point: match ev.obs_point {
            abi::OBS_FROM_ENDPOINT => ObservationPoint::FromEndpoint,
            abi::OBS_TO_ENDPOINT => ObservationPoint::ToEndpoint,
            _ => ObservationPoint::Unknown,
        },
        verdict: match ev.verdict {
            abi::VERDICT_FORWARDED => Verdict::Forwarded,
            abi::VERDICT_DROPPED => Verdict::Dropped,
            abi::VERDICT_AUDIT => Verdict::Audit,
            _ => Verdict::Unknown,
        },
        drop_reason: ev.drop_reason,
        ct_state: match ev.ct_state {
            abi::CT_NEW => CtState::New,
            abi::CT_ESTABLISHED => CtState::Established,
            abi::CT_REPLY => CtState::Reply,
            abi::CT_RELATED => CtState::Related,
            _ => CtState::Untracked,
        },
        is_reply: ev.flags & abi::EVF_IS_REPLY != 0,
        fragment: ev.flags & abi::EVF_FRAGMENT != 0,
        truncated: ev.flags & abi::EVF_TRUNCATED != 0,
        ip_version: ev.family,
        protocol: ev.proto,
        source,
        destination,
        source_port: ev.sport,
        destination_port: ev.dport,
        tcp_flags: ev.tcp_flags,
        icmp_type: ev.icmp_type,
        icmp_code: ev.icmp_code,
        length: ev.pkt_len,
        source_identity: ev.src_identity,
        destination_identity: ev.dst_identity,
        rule_id: ev.rule_id,
        capture: capture.to_vec(),
    }
}

fn v4(addr: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
}

/// Hubble's name for a drop reason number (the schema's `DropReason`), for
/// the ones the datapath emits.
pub fn drop_reason_name(reason: u8) -> &'static str {
    match reason {
        0 => "",
        abi::DROP_POLICY_DENIED
        | abi::DROP_INVALID_PACKET
        | abi::DROP_CT_INVALID_HEADER
        | abi::DROP_INVALID_IPV6_EXT_HEADER
        | abi::DROP_FRAG_NOT_FOUND
        | abi::DROP_POLICY_DENY => {
            DropReason::try_from(i32::from(reason)).map_or("DROP_REASON_UNKNOWN", |r| r.as_str_name())
        }
        _ => "DROP_REASON_UNKNOWN",
    }
}

/// `SYN,ACK` style names of TCP flags, in header order (FIN first).
pub fn tcp_flag_names(flags: u8) -> Vec<&'static str> {
    tcp::names(flags.into(), &TcpFlag::ALL)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes the kernel writes, built field by field in C layout order.
    fn fixture_v4_syn_dropped() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&123_456_789u64.to_ne_bytes()); // timestamp_ns
        b.extend_from_slice(&7u32.to_ne_bytes()); // ifindex
        b.extend_from_slice(&42u32.to_ne_bytes()); // endpoint_id
        b.extend_from_slice(&300u32.to_ne_bytes()); // src_identity
        b.extend_from_slice(&400u32.to_ne_bytes()); // dst_identity
        b.extend_from_slice(&0u32.to_ne_bytes()); // rule_id
        b.extend_from_slice(&74u32.to_ne_bytes()); // pkt_len
        let mut s = [0u8; 16];
        s[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut d = [0u8; 16];
        d[..4].copy_from_slice(&[10, 0, 0, 2]);
        b.extend_from_slice(&s);
        b.extend_from_slice(&d);
        b.extend_from_slice(&40_000u16.to_ne_bytes());
        b.extend_from_slice(&8080u16.to_ne_bytes());
        b.extend_from_slice(&[
            4,
            6,
            abi::DIR_INGRESS,
            abi::OBS_TO_ENDPOINT,
            abi::VERDICT_DROPPED,
            133,
            0x02,
            abi::CT_NEW,
            0,
            0,
            0,
            0,
        ]);
        b.extend_from_slice(&0u16.to_ne_bytes()); // cap_len
        b.extend_from_slice(&[0; 6]); // pad2, pad3
        b
    }

    #[test]
    fn decodes_a_dropped_syn() {
        let ev = decode(&fixture_v4_syn_dropped()).unwrap();
        assert_eq!(
            ev,
            DatapathEvent {
                monotonic_ns: 123_456_789,
                ifindex: 7,
                endpoint_id: 42,
                direction: Direction::Ingress,
                observation_point: ObservationPoint::ToEndpoint,
                verdict: Verdict::Dropped,
                drop_reason: 133,
                ct_state: CtState::New,
                is_reply: false,
                fragment: false,
                truncated: false,
                ip_version: 4,
                protocol: 6,
                source: "10.0.0.1".parse().unwrap(),
                destination: "10.0.0.2".parse().unwrap(),
                source_port: 40_000,
                destination_port: 8080,
                tcp_flags: 0x02,
                icmp_type: 0,
                icmp_code: 0,
                length: 74,
                source_identity: 300,
                destination_identity: 400,
                rule_id: 0,
                capture: vec![],
            }
        );
        assert_eq!(drop_reason_name(ev.drop_reason), "POLICY_DENIED");
        assert_eq!(tcp_flag_names(ev.tcp_flags), vec!["SYN"]);
    }

    #[test]
    fn drop_reasons_by_the_schemas_names() {
        assert_eq!(drop_reason_name(0), "");
        assert_eq!(drop_reason_name(abi::DROP_INVALID_PACKET), "INVALID_PACKET_DROPPED");
        assert_eq!(
            drop_reason_name(abi::DROP_FRAG_NOT_FOUND),
            "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND"
        );
        assert_eq!(drop_reason_name(abi::DROP_POLICY_DENY), "POLICY_DENY");
        assert_eq!(drop_reason_name(130), "DROP_REASON_UNKNOWN");
    }

    #[test]
    fn decodes_ipv6_reply_with_capture() {
        let mut b = fixture_v4_syn_dropped();
        let addr: Ipv6Addr = "fd00::2".parse().unwrap();
        b[32..48].copy_from_slice(&addr.octets());
        b[48..64].copy_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        b[68] = 6;
        b[72] = abi::VERDICT_FORWARDED;
        b[73] = 0;
        b[74] = 0x12;
        b[75] = abi::CT_REPLY;
        b[76] = abi::EVF_IS_REPLY;
        b[80..82].copy_from_slice(&4u16.to_ne_bytes());
        b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let ev = decode(&b).unwrap();
        assert_eq!(ev.source, IpAddr::V6(addr));
        assert_eq!(ev.verdict, Verdict::Forwarded);
        assert_eq!(ev.ct_state, CtState::Reply);
        assert!(ev.is_reply);
        assert_eq!(tcp_flag_names(ev.tcp_flags), vec!["SYN", "ACK"]);
        assert_eq!(ev.capture, vec![0xde, 0xad, 0xbe, 0xef]);
    }

    #[test]
    fn rejects_malformed_records() {
        let b = fixture_v4_syn_dropped();
        assert_eq!(decode(&b[..40]), Err(DecodeError::Short { len: 40, need: 88 }));
        let mut c = b.clone();
        c[80..82].copy_from_slice(&16u16.to_ne_bytes());
        assert_eq!(
            decode(&c),
            Err(DecodeError::CaptureOverrun {
                cap_len: 16,
                available: 0
            })
        );
        let mut f = b;
        f[68] = 9;
        assert_eq!(decode(&f), Err(DecodeError::Family(9)));
    }
}
