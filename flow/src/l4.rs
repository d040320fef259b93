//! `source_port`, `destination_port`, `protocol` and `tcp_flags`.

use lumen_proto::flow::{layer4::Protocol, layer7::Record, Flow, TcpFlags};

use crate::error::FilterError;
use crate::Side;

fn l4(flow: &Flow) -> Option<&Protocol> {
    flow.l4.as_ref()?.protocol.as_ref()
}

/// Ports of TCP, UDP or SCTP; decimal strings in the filter.
#[derive(Debug, Clone)]
pub(crate) struct PortMatcher {
    side: Side,
    ports: Vec<u16>,
}

impl PortMatcher {
    pub(crate) fn new(side: Side, values: &[String]) -> Result<Self, FilterError> {
        let field = side.pick("source_port", "destination_port");
        let ports = values
            .iter()
            .map(|v| {
                let invalid = |reason| FilterError::InvalidPort {
                    field,
                    value: v.clone(),
                    reason,
                };
                // u16::from_str would also take "+80"; Hubble takes digits only.
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid("not a decimal number"));
                }
                v.parse::<u16>().map_err(|_| invalid("out of range 0-65535"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { side, ports })
    }

    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let (src, dst) = match l4(flow) {
            Some(Protocol::Tcp(p)) => (p.source_port, p.destination_port),
            Some(Protocol::Udp(p)) => (p.source_port, p.destination_port),
            Some(Protocol::Sctp(p)) => (p.source_port, p.destination_port),
            _ => return false,
        };
        let port = self.side.pick(src, dst);
        u16::try_from(port).is_ok_and(|p| self.ports.contains(&p))
    }
}

const TCP: u16 = 1 << 0;
const UDP: u16 = 1 << 1;
const SCTP: u16 = 1 << 2;
const ICMPV4: u16 = 1 << 3;
const ICMPV6: u16 = 1 << 4;
const DNS: u16 = 1 << 5;
const HTTP: u16 = 1 << 6;
const KAFKA: u16 = 1 << 7;
const VRRP: u16 = 1 << 8;
const IGMP: u16 = 1 << 9;

/// `protocol`: L4 names and the L7 record types, case-insensitive; `icmp` is
/// either ICMP version.
#[derive(Debug, Clone)]
pub(crate) struct ProtocolMatcher(u16);

impl ProtocolMatcher {
    pub(crate) fn new(values: &[String]) -> Result<Self, FilterError> {
        let mut set = 0;
        for v in values {
            set |= match v.to_ascii_lowercase().as_str() {
                "tcp" => TCP,
                "udp" => UDP,
                "sctp" => SCTP,
                "icmp" => ICMPV4 | ICMPV6,
                "icmpv4" => ICMPV4,
                "icmpv6" => ICMPV6,
                "dns" => DNS,
                "http" => HTTP,
                "kafka" => KAFKA,
                "vrrp" => VRRP,
                "igmp" => IGMP,
                _ => return Err(FilterError::UnknownProtocol { value: v.clone() }),
            };
        }
        Ok(Self(set))
    }

    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let l4 = match l4(flow) {
            Some(Protocol::Tcp(_)) => TCP,
            Some(Protocol::Udp(_)) => UDP,
            Some(Protocol::Sctp(_)) => SCTP,
            Some(Protocol::IcmPv4(_)) => ICMPV4,
            Some(Protocol::IcmPv6(_)) => ICMPV6,
            Some(Protocol::Vrrp(_)) => VRRP,
            Some(Protocol::Igmp(_)) => IGMP,
            None => 0,
        };
        #[allow(deprecated)] // Kafka records are deprecated upstream but still filterable.
        let l7 = match flow.l7.as_ref().and_then(|l7| l7.record.as_ref()) {
            Some(Record::Dns(_)) => DNS,
            Some(Record::Http(_)) => HTTP,
            Some(Record::Kafka(_)) => KAFKA,
            None => 0,
        };
        self.0 & (l4 | l7) != 0
    }
}

/// `tcp_flags`: a flow matches one entry when every flag set in the entry
/// is set in the flow's TCP header (other flags may be set too).
#[derive(Debug, Clone)]
pub(crate) struct TcpFlagsMatcher(Vec<u16>);

impl TcpFlagsMatcher {
    pub(crate) fn new(flags: &[TcpFlags]) -> Self {
        Self(flags.iter().map(crate::tcp::mask).collect())
    }

    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let Some(Protocol::Tcp(tcp)) = l4(flow) else {
            return false;
        };
        let Some(flags) = tcp.flags.as_ref() else { return false };
        let have = crate::tcp::mask(flags);
        self.0.iter().any(|want| have & want == *want)
    }
}
