//! Ports and protocols, as Cilium's `toPorts[].ports[]` and Kubernetes'
//! `ports[]` give them.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::model::{Port, PortRule, Protocol};

use super::error::{FieldPath, Issues};
use super::Flavor;

/// `port`/`endPort` as written: YAML lets a number be given bare or quoted,
/// and a port may be a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PortValue {
    Number(i128),
    Text(String),
}

impl<'de> Deserialize<'de> for PortValue {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(PortVisitor)
    }
}

struct PortVisitor;

impl Visitor<'_> for PortVisitor {
    type Value = PortValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port number or name")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortValue, E> {
        Ok(PortValue::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortValue, E> {
        Ok(PortValue::Number(v.into()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PortValue, E> {
        Ok(PortValue::Text(v.to_string()))
    }
}

/// One port entry as written; both formats name its fields alike.
pub(super) struct PortEntry<'a> {
    pub(super) port: Option<&'a PortValue>,
    pub(super) end_port: Option<&'a PortValue>,
    pub(super) protocol: Option<&'a str>,
}

pub(super) fn port_rule(
    entry: PortEntry<'_>,
    flavor: Flavor,
    path: &FieldPath,
    issues: &mut Issues,
) -> Option<PortRule> {
    let protocol = issues.check(&path.field("protocol"), protocol(entry.protocol, flavor));
    let port_path = path.field("port");
    let port = match entry.port {
        None => Some(Port::All),
        Some(value) => issues.check(&port_path, port(value, flavor)),
    };
    let end_path = path.field("endPort");
    let end = match entry.end_port {
        None => None,
        Some(value) => issues.check(&end_path, end_port(value, flavor)).flatten(),
    };
    let port = match (port?, end) {
        (port, None) => port,
        (Port::Range { port, .. }, Some(end)) if end < port => {
            issues.push(&end_path, format!("endPort {end} is less than port {port}"));
            return None;
        }
        (Port::Range { port, .. }, Some(end)) => Port::Range { port, end },
        (Port::Named(name), Some(_)) => {
            issues.push(
                &end_path,
                format!("endPort needs a numeric port, not the named port \"{name}\""),
            );
            return None;
        }
        (Port::All, Some(_)) => {
            issues.push(&end_path, "endPort needs a numeric port other than 0");
            return None;
        }
    };
    Some(PortRule {
        port,
        protocol: protocol?,
    })
}

fn protocol(text: Option<&str>, flavor: Flavor) -> Result<Protocol, String> {
    match (text, flavor) {
        (None, Flavor::Cilium) => Ok(Protocol::Any),
        (None, Flavor::Kubernetes) => Ok(Protocol::Tcp),
        (Some("TCP"), _) => Ok(Protocol::Tcp),
        (Some("UDP"), _) => Ok(Protocol::Udp),
        (Some("SCTP"), _) => Ok(Protocol::Sctp),
        (Some("ANY"), Flavor::Cilium) => Ok(Protocol::Any),
        (Some(other), Flavor::Cilium) => Err(format!("unknown protocol \"{other}\" (TCP, UDP, SCTP, ANY)")),
        (Some(other), Flavor::Kubernetes) => Err(format!("unknown protocol \"{other}\" (TCP, UDP, SCTP)")),
    }
}

/// Lowest port a rule may name: Cilium's 0 means every port, Kubernetes
/// has no such port.
fn lowest(flavor: Flavor) -> u16 {
    match flavor {
        Flavor::Cilium => 0,
        Flavor::Kubernetes => 1,
    }
}

fn port(value: &PortValue, flavor: Flavor) -> Result<Port, String> {
    let (number, written) = match value {
        PortValue::Number(n) => (u16::try_from(*n).ok(), n.to_string()),
        PortValue::Text(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            (text.parse().ok(), text.clone())
        }
        PortValue::Text(name) => return named(name).map(|()| Port::Named(name.clone())),
    };
    match number {
        Some(0) if flavor == Flavor::Cilium => Ok(Port::All),
        Some(port) if port >= lowest(flavor) => Ok(Port::Range { port, end: port }),
        _ => Err(format!("port {written} is out of range ({}-65535)", lowest(flavor))),
    }
}

/// `endPort`, a number; `None` when it says nothing (Cilium's 0, the value
/// Cilium cannot tell from an absent one).
fn end_port(value: &PortValue, flavor: Flavor) -> Result<Option<u16>, String> {
    let number = match value {
        PortValue::Number(number) => number,
        PortValue::Text(text) => return Err(format!("endPort must be a number, not the string \"{text}\"")),
    };
    match u16::try_from(*number) {
        Ok(0) if flavor == Flavor::Cilium => Ok(None),
        Ok(end) if end >= 1 => Ok(Some(end)),
        _ => Err(format!("endPort {number} is out of range (1-65535)")),
    }
}

/// An IANA service name, as Kubernetes checks a named port: 1-15 lowercase
/// letters, digits and '-', at least one letter, '-' neither first, last
/// nor doubled.
fn named(name: &str) -> Result<(), String> {
    let valid = (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid port \"{name}\": a port is a number (0-65535) or a name of 1-15 lowercase letters, digits \
             and '-' with at least one letter and no leading, trailing or double '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> PortValue {
        PortValue::Text(s.to_string())
    }

    #[test]
    fn ports() {
        let range = |port, end| Ok(Port::Range { port, end });
        assert_eq!(port(&PortValue::Number(80), Flavor::Cilium), range(80, 80));
        assert_eq!(port(&text("443"), Flavor::Cilium), range(443, 443));
        assert_eq!(port(&text("0"), Flavor::Cilium), Ok(Port::All));
        assert_eq!(
            port(&text("http-alt"), Flavor::Kubernetes),
            Ok(Port::Named("http-alt".into()))
        );
        assert_eq!(
            port(&PortValue::Number(70000), Flavor::Cilium),
            Err("port 70000 is out of range (0-65535)".into())
        );
        assert_eq!(
            port(&text("99999999999999999999"), Flavor::Cilium),
            Err("port 99999999999999999999 is out of range (0-65535)".into())
        );
        assert_eq!(
            port(&PortValue::Number(u64::MAX.into()), Flavor::Cilium),
            Err("port 18446744073709551615 is out of range (0-65535)".into())
        );
        assert_eq!(
            port(&PortValue::Number(0), Flavor::Kubernetes),
            Err("port 0 is out of range (1-65535)".into())
        );
    }

    #[test]
    fn port_names() {
        for good in ["http", "h2", "dns-tcp", "a23456789012345"] {
            assert_eq!(named(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "HTTP",
            "http_alt",
            "-http",
            "http-",
            "dns--tcp",
            "a234567890123456",
            "8-8",
        ] {
            assert!(named(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn protocols() {
        assert_eq!(protocol(None, Flavor::Cilium), Ok(Protocol::Any));
        assert_eq!(protocol(None, Flavor::Kubernetes), Ok(Protocol::Tcp));
        assert_eq!(protocol(Some("SCTP"), Flavor::Kubernetes), Ok(Protocol::Sctp));
        assert_eq!(
            protocol(Some("ANY"), Flavor::Kubernetes),
            Err("unknown protocol \"ANY\" (TCP, UDP, SCTP)".into())
        );
        assert_eq!(
            protocol(Some("tcp"), Flavor::Cilium),
            Err("unknown protocol \"tcp\" (TCP, UDP, SCTP, ANY)".into())
        );
    }
}
