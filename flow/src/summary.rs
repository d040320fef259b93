//! `Flow.Summary`: the one-line description of the packet that Hubble's
//! parser writes into every L3/L4 flow and its compact printer shows in
//! parentheses (`TCP Flags: SYN, ACK`, `UDP`, `ICMPv4 EchoRequest`,
//! `ICMPv6 DestinationUnreachable(PortUnreachable)`).
//!
//! The field is deprecated in the API but still what `hubble observe`
//! prints, so servers fill it in the way Hubble's parser does: the TCP flags
//! in Hubble's order, the upper layer's name otherwise, and ICMP types and
//! codes by the names gopacket gives them.

use lumen_proto::flow::{layer4::Protocol, Flow, TcpFlags};

use crate::tcp::{self, TcpFlag};

/// The flags set in `flags`, in the order Hubble lists them.
pub fn tcp_flag_names(flags: &TcpFlags) -> Vec<&'static str> {
    tcp::names(tcp::mask(flags), &TcpFlag::HUBBLE_ORDER)
}

/// The summary Hubble's parser gives the flow's packet; empty for a flow
/// without a layer 4 header, whose summary would name its IP layer.
pub fn summary(flow: &Flow) -> String {
    let ipv6 = flow.ip.as_ref().is_some_and(|ip| ip.ip_version == 2);
    match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => {
            format!(
                "TCP Flags: {}",
                t.flags.as_ref().map(tcp_flag_names).unwrap_or_default().join(", ")
            )
        }
        Some(Protocol::Udp(_)) => "UDP".into(),
        Some(Protocol::Sctp(_)) => "SCTP".into(),
        Some(Protocol::IcmPv4(i)) => format!("ICMPv4 {}", icmp_name(ICMPV4, i.r#type, i.code)),
        Some(Protocol::IcmPv6(i)) => format!("ICMPv6 {}", icmp_name(ICMPV6, i.r#type, i.code)),
        Some(Protocol::Vrrp(_)) => "VRRP".into(),
        Some(Protocol::Igmp(_)) => "IGMP".into(),
        None if flow.ip.is_some() => if ipv6 { "IPv6" } else { "IPv4" }.into(),
        None => String::new(),
    }
}

/// An ICMP type: its name and, for types whose code carries meaning, the
/// names of the codes (by code number).
type IcmpType = (u32, &'static str, &'static [&'static str]);

const UNREACHABLE_V4: &[&str] = &[
    "Net",
    "Host",
    "Protocol",
    "Port",
    "FragmentationNeeded",
    "SourceRoutingFailed",
    "NetUnknown",
    "HostUnknown",
    "SourceIsolated",
    "NetAdminProhibited",
    "HostAdminProhibited",
    "NetTOS",
    "HostTOS",
    "CommAdminProhibited",
    "HostPrecedence",
    "PrecedenceCutoff",
];

const ICMPV4: &[IcmpType] = &[
    (0, "EchoReply", &[]),
    (3, "DestinationUnreachable", UNREACHABLE_V4),
    (4, "SourceQuench", &[]),
    (5, "Redirect", &["Net", "Host", "TOS+Net", "TOS+Host"]),
    (8, "EchoRequest", &[]),
    (9, "RouterAdvertisement", &[]),
    (10, "RouterSolicitation", &[]),
    (11, "TimeExceeded", &["TTLExceeded", "FragmentReassemblyTimeExceeded"]),
    (
        12,
        "ParameterProblem",
        &["PointerIndicatesError", "MissingOption", "BadLength"],
    ),
    (13, "TimestampRequest", &[]),
    (14, "TimestampReply", &[]),
    (15, "InfoRequest", &[]),
    (16, "InfoReply", &[]),
    (17, "AddressMaskRequest", &[]),
    (18, "AddressMaskReply", &[]),
];

const ICMPV6: &[IcmpType] = &[
    (
        1,
        "DestinationUnreachable",
        &[
            "NoRouteToDst",
            "AdminProhibited",
            "BeyondScopeOfSrc",
            "AddressUnreachable",
            "PortUnreachable",
            "SrcAddressFailedPolicy",
            "RejectRouteToDst",
        ],
    ),
    (2, "PacketTooBig", &[]),
    (
        3,
        "TimeExceeded",
        &["HopLimitExceeded", "FragmentReassemblyTimeExceeded"],
    ),
    (
        4,
        "ParameterProblem",
        &[
            "ErroneousHeaderField",
            "UnrecognizedNextHeader",
            "UnrecognizedIPv6Option",
        ],
    ),
    (128, "EchoRequest", &[]),
    (129, "EchoReply", &[]),
    (133, "RouterSolicitation", &[]),
    (134, "RouterAdvertisement", &[]),
    (135, "NeighborSolicitation", &[]),
    (136, "NeighborAdvertisement", &[]),
    (137, "Redirect", &[]),
];

/// `EchoRequest`, `DestinationUnreachable(Port)`, `EchoReply(Code: 3)` for a
/// code a type does not use, `200(1)` for an unknown type.
fn icmp_name(table: &[IcmpType], kind: u32, code: u32) -> String {
    let Some(&(_, name, codes)) = table.iter().find(|(k, ..)| *k == kind) else {
        return format!("{kind}({code})");
    };
    match codes.get(code as usize) {
        _ if codes.is_empty() && code == 0 => name.to_string(),
        Some(code_name) => format!("{name}({code_name})"),
        None => format!("{name}(Code: {code})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_proto::flow::{IcmPv4, IcmPv6, Ip, Layer4, Tcp, Udp};

    fn with(protocol: Protocol) -> Flow {
        Flow {
            l4: Some(Layer4 {
                protocol: Some(protocol),
            }),
            ..Default::default()
        }
    }

    fn tcp(flags: TcpFlags) -> Flow {
        with(Protocol::Tcp(Tcp {
            flags: Some(flags),
            ..Default::default()
        }))
    }

    #[test]
    fn tcp_flags_in_hubbles_order() {
        let syn = TcpFlags {
            syn: true,
            ..Default::default()
        };
        assert_eq!(summary(&tcp(syn)), "TCP Flags: SYN");
        let all = TcpFlags {
            fin: true,
            syn: true,
            rst: true,
            psh: true,
            ack: true,
            urg: true,
            ece: true,
            cwr: true,
            ns: true,
        };
        assert_eq!(
            summary(&tcp(all)),
            "TCP Flags: SYN, ACK, RST, FIN, PSH, URG, ECE, CWR, NS"
        );
        let fin_ack = TcpFlags {
            fin: true,
            ack: true,
            ..Default::default()
        };
        assert_eq!(summary(&tcp(fin_ack)), "TCP Flags: ACK, FIN");
        assert_eq!(summary(&tcp(TcpFlags::default())), "TCP Flags: ");
    }

    #[test]
    fn other_protocols_by_name() {
        assert_eq!(summary(&with(Protocol::Udp(Udp::default()))), "UDP");
        let icmp4 = |r#type, code| with(Protocol::IcmPv4(IcmPv4 { r#type, code }));
        let icmp6 = |r#type, code| with(Protocol::IcmPv6(IcmPv6 { r#type, code }));
        assert_eq!(summary(&icmp4(8, 0)), "ICMPv4 EchoRequest");
        assert_eq!(summary(&icmp4(0, 0)), "ICMPv4 EchoReply");
        assert_eq!(summary(&icmp4(3, 3)), "ICMPv4 DestinationUnreachable(Port)");
        assert_eq!(summary(&icmp4(3, 16)), "ICMPv4 DestinationUnreachable(Code: 16)");
        assert_eq!(summary(&icmp4(8, 1)), "ICMPv4 EchoRequest(Code: 1)");
        assert_eq!(summary(&icmp4(200, 1)), "ICMPv4 200(1)");
        assert_eq!(summary(&icmp6(128, 0)), "ICMPv6 EchoRequest");
        assert_eq!(summary(&icmp6(1, 4)), "ICMPv6 DestinationUnreachable(PortUnreachable)");
        assert_eq!(summary(&icmp6(135, 0)), "ICMPv6 NeighborSolicitation");
        let ip_only = Flow {
            ip: Some(Ip {
                ip_version: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(summary(&ip_only), "IPv6");
        assert_eq!(summary(&Flow::default()), "");
    }
}
