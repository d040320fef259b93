//! Peers given by address or by name: CIDRs with their exceptions, and
//! Cilium's entities.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{entity_names, Entity, Peer};

use super::error::{FieldPath, Issues};

/// A CIDR, host bits cleared as Cilium and Kubernetes do. With `bare_ip`
/// (Cilium's `fromCIDR`/`toCIDR`) an address alone means that one address.
pub(super) fn cidr(text: &str, bare_ip: bool) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    match text.parse::<IpAddr>() {
        Ok(addr) if bare_ip => Ok(IpNet::from(addr)),
        _ if bare_ip => Err(format!(
            "\"{text}\" is not a CIDR (address/prefix such as 10.0.0.0/8 or fd00::/64, or one address)"
        )),
        _ => Err(format!(
            "\"{text}\" is not a CIDR (address/prefix such as 10.0.0.0/8 or fd00::/64)"
        )),
    }
}

/// A CIDR and its exceptions, each of which must lie inside it.
pub(super) fn cidr_with_except(
    cidr_text: Option<&str>,
    except: &[String],
    bare_ip: bool,
    path: &FieldPath,
    issues: &mut Issues,
) -> Option<Peer> {
    let Some(cidr_text) = cidr_text else {
        issues.push(&path.field("cidr"), "required");
        return None;
    };
    let net = issues.check(&path.field("cidr"), cidr(cidr_text, bare_ip));
    let except: Vec<IpNet> = except
        .iter()
        .enumerate()
        .filter_map(|(i, text)| {
            let path = path.field("except").index(i);
            let inner = issues.check(&path, cidr(text, bare_ip))?;
            let net = net?;
            issues.check(&path, inside(inner, net, text))
        })
        .collect();
    Some(Peer::Cidr { cidr: net?, except })
}

fn inside(inner: IpNet, outer: IpNet, text: &str) -> Result<IpNet, String> {
    let family = |net: &IpNet| match net {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    };
    if family(&inner) != family(&outer) {
        Err(format!(
            "\"{text}\" is {} but the cidr {outer} is {}",
            family(&inner),
            family(&outer)
        ))
    } else if !outer.contains(&inner) {
        Err(format!("\"{text}\" is not inside the cidr {outer}"))
    } else {
        Ok(inner)
    }
}

/// An entity name; `all` is any peer.
pub(super) fn entity(name: &str) -> Result<Peer, String> {
    if name == "all" {
        return Ok(Peer::Any);
    }
    Entity::parse(name).map(Peer::Entity).ok_or_else(|| {
        let names: Vec<&str> = entity_names().collect();
        format!("unknown entity \"{name}\" ({})", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs() {
        assert_eq!(cidr("10.1.2.3/8", false), Ok(net("10.0.0.0/8")));
        assert_eq!(cidr("10.1.2.3", true), Ok(net("10.1.2.3/32")));
        assert_eq!(cidr("fd00::1", true), Ok(net("fd00::1/128")));
        assert_eq!(
            cidr("10.1.2.3", false),
            Err("\"10.1.2.3\" is not a CIDR (address/prefix such as 10.0.0.0/8 or fd00::/64)".into())
        );
        assert!(cidr("10.0.0.0/33", true)
            .unwrap_err()
            .starts_with("\"10.0.0.0/33\" is not a CIDR"));
    }

    #[test]
    fn except_must_be_inside() {
        let outer = net("10.0.0.0/8");
        assert_eq!(inside(net("10.1.0.0/16"), outer, "10.1.0.0/16"), Ok(net("10.1.0.0/16")));
        assert_eq!(
            inside(net("11.0.0.0/16"), outer, "11.0.0.0/16"),
            Err("\"11.0.0.0/16\" is not inside the cidr 10.0.0.0/8".into())
        );
        assert_eq!(
            inside(net("fd00::/64"), outer, "fd00::/64"),
            Err("\"fd00::/64\" is IPv6 but the cidr 10.0.0.0/8 is IPv4".into())
        );
    }

    #[test]
    fn entities() {
        assert_eq!(entity("all"), Ok(Peer::Any));
        assert_eq!(entity("remote-node"), Ok(Peer::Entity(Entity::RemoteNode)));
        assert_eq!(
            entity("galaxy"),
            Err(
                "unknown entity \"galaxy\" (all, world, host, cluster, remote-node, kube-apiserver, ingress, \
                 health, init, unmanaged)"
                    .into()
            )
        );
    }
}
