//! `source_ip`, `source_ip_xlated`, `destination_ip` (exact addresses and
//! CIDRs), `ip_version`, `ip_trace_id` and `encrypted`.

use std::net::IpAddr;

use lumen_proto::flow::Flow;

use crate::error::FilterError;

/// Which address of `Flow.IP` a filter looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IpField {
    Source,
    SourceXlated,
    Destination,
}

impl IpField {
    fn name(self) -> &'static str {
        match self {
            IpField::Source => "source_ip",
            IpField::SourceXlated => "source_ip_xlated",
            IpField::Destination => "destination_ip",
        }
    }

    fn get(self, flow: &Flow) -> &str {
        flow.ip.as_ref().map_or("", |ip| match self {
            IpField::Source => &ip.source,
            IpField::SourceXlated => &ip.source_xlated,
            IpField::Destination => &ip.destination,
        })
    }
}

/// A network prefix with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    len: u8,
}

impl Cidr {
    /// Parses `addr/len`; `reason` on failure is for [`FilterError::InvalidCidr`].
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let (addr, len) = s.split_once('/').ok_or("missing '/'")?;
        let addr: IpAddr = addr.parse().map_err(|_| "invalid address")?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || (len.len() > 1 && len.starts_with('0')) {
            return Err("invalid prefix length");
        }
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or("prefix length out of range")?;
        Ok(Self {
            network: mask(addr, len),
            len,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.len) == self.network
    }

    /// A filter value as `ip` and `ip/len` filters read it (one address is
    /// a full-length prefix); `None` if it is neither.
    pub fn of_filter_value(s: &str) -> Option<Self> {
        if s.contains('/') {
            return Self::parse(s).ok();
        }
        let addr: IpAddr = s.parse().ok()?;
        let len = if addr.is_ipv4() { 32 } else { 128 };
        Some(Self { network: addr, len })
    }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// Exact addresses and CIDRs for one address of the flow; any may match.
#[derive(Debug, Clone)]
pub(crate) struct IpMatcher {
    field: IpField,
    addresses: Vec<IpAddr>,
    cidrs: Vec<Cidr>,
}

impl IpMatcher {
    pub(crate) fn new(field: IpField, values: &[String]) -> Result<Self, FilterError> {
        let mut addresses = Vec::new();
        let mut cidrs = Vec::new();
        for v in values {
            // Like Hubble: a '/' makes it a CIDR, anything else must be one address.
            if v.contains('/') {
                let cidr = Cidr::parse(v).map_err(|reason| FilterError::InvalidCidr {
                    field: field.name(),
                    value: v.clone(),
                    reason,
                })?;
                cidrs.push(cidr);
            } else {
                let ip = v.parse().map_err(|_| FilterError::InvalidIp {
                    field: field.name(),
                    value: v.clone(),
                })?;
                addresses.push(ip);
            }
        }
        Ok(Self {
            field,
            addresses,
            cidrs,
        })
    }

    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let Ok(ip) = self.field.get(flow).parse::<IpAddr>() else {
            return false;
        };
        self.addresses.contains(&ip) || self.cidrs.iter().any(|c| c.contains(ip))
    }
}

/// `ip_version`: values of the `IPVersion` enum. A flow without L3 has
/// `IP_NOT_USED`, as Hubble reads it.
#[derive(Debug, Clone)]
pub(crate) struct IpVersionMatcher(pub(crate) Vec<i32>);

impl IpVersionMatcher {
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let version = flow.ip.as_ref().map_or(0, |ip| ip.ip_version);
        self.0.contains(&version)
    }
}

/// `ip_trace_id`: the trace id of the packet's IP option; a flow without
/// one has id 0, which no filter value can be (as in Hubble).
#[derive(Debug, Clone)]
pub(crate) struct IpTraceIdMatcher(pub(crate) Vec<u64>);

impl IpTraceIdMatcher {
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let id = flow.ip_trace_id.as_ref().map_or(0, |t| t.trace_id);
        self.0.contains(&id)
    }
}

/// `encrypted`: whether the packet was encrypted (WireGuard, IPsec); a flow
/// without L3 counts as not encrypted.
#[derive(Debug, Clone)]
pub(crate) struct EncryptedMatcher(pub(crate) Vec<bool>);

impl EncryptedMatcher {
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let encrypted = flow.ip.as_ref().is_some_and(|ip| ip.encrypted);
        self.0.contains(&encrypted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let cases: &[(&str, &str, bool)] = &[
            ("10.0.0.0/8", "10.1.2.3", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.1.2.3/8", "10.200.0.1", true),
            ("0.0.0.0/0", "192.0.2.1", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("192.0.2.7/32", "192.0.2.7", true),
            ("192.0.2.7/32", "192.0.2.8", false),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "fd00::1", true),
            ("fd00::1/128", "fd00::1", true),
            ("10.0.0.0/8", "::ffff:10.0.0.1", false),
        ];
        for (cidr, ip, want) in cases {
            let c = Cidr::parse(cidr).unwrap();
            assert_eq!(c.contains(ip.parse().unwrap()), *want, "{cidr} contains {ip}");
        }
    }

    #[test]
    fn ip_trace_id_and_encrypted_filters() {
        use lumen_proto::flow::{FlowFilter, Ip, IpTraceId};
        let traced = |id| Flow {
            ip_trace_id: Some(IpTraceId {
                trace_id: id,
                ip_option_type: 136,
            }),
            ..Default::default()
        };
        let encrypted = |e| Flow {
            ip: Some(Ip {
                encrypted: e,
                ..Default::default()
            }),
            ..Default::default()
        };
        let by_id = crate::compile(
            &[FlowFilter {
                ip_trace_id: vec![7, 9],
                ..Default::default()
            }],
            &[],
        )
        .unwrap();
        assert!(by_id.matches(&traced(9)));
        assert!(!by_id.matches(&traced(8)));
        assert!(!by_id.matches(&Flow::default()));
        let only = |e: bool| {
            crate::compile(
                &[FlowFilter {
                    encrypted: vec![e],
                    ..Default::default()
                }],
                &[],
            )
            .unwrap()
        };
        assert!(only(true).matches(&encrypted(true)));
        assert!(!only(true).matches(&encrypted(false)));
        assert!(only(false).matches(&encrypted(false)));
        assert!(only(false).matches(&Flow::default()));
        assert!(!only(false).matches(&encrypted(true)));
    }

    #[test]
    fn cidr_errors() {
        let cases: &[(&str, &str)] = &[
            ("10.0.0/8", "invalid address"),
            ("10.0.0.0/", "invalid prefix length"),
            ("10.0.0.0/x", "invalid prefix length"),
            ("10.0.0.0/08", "invalid prefix length"),
            ("10.0.0.0/-1", "invalid prefix length"),
            ("10.0.0.0/33", "prefix length out of range"),
            ("fd00::/129", "prefix length out of range"),
            ("10.0.0.0/8/8", "invalid prefix length"),
        ];
        for (cidr, reason) in cases {
            assert_eq!(Cidr::parse(cidr), Err(*reason), "{cidr}");
        }
    }
}
