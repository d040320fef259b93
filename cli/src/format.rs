//! Human-readable tables and JSON: endpoints, policies, anything in columns.

use std::collections::BTreeMap;
use std::fmt::Write;

use lumen_proto::lumen::v1 as pb;
use serde::Serialize;

fn origin(o: pb::Origin) -> &'static str {
    match o {
        pb::Origin::File => "file",
        pb::Origin::Runtime => "runtime",
        pb::Origin::Unspecified => "",
    }
}

fn key(spec: &pb::EndpointSpec) -> String {
    format!("{}/{}", spec.namespace, spec.name)
}

fn sorted(labels: &std::collections::HashMap<String, String>) -> BTreeMap<&str, &str> {
    labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

pub fn endpoint_table(endpoints: &[pb::Endpoint]) -> String {
    let onoff = |b: bool| if b { "enforced" } else { "open" }.to_string();
    let none = pb::EndpointSpec::default();
    let rows = endpoints.iter().map(|ep| {
        let spec = ep.spec.as_ref().unwrap_or(&none);
        let labels: Vec<String> = sorted(&spec.labels).iter().map(|(k, v)| format!("{k}={v}")).collect();
        vec![
            key(spec),
            ep.endpoint_id.to_string(),
            ep.identity.to_string(),
            spec.interface.clone().unwrap_or_else(|| "-".into()),
            spec.ips.join(","),
            onoff(ep.enforce_ingress),
            onoff(ep.enforce_egress),
            labels.join(","),
        ]
    });
    table(
        &[
            "ENDPOINT",
            "ID",
            "IDENTITY",
            "INTERFACE",
            "IPS",
            "INGRESS",
            "EGRESS",
            "LABELS",
        ],
        rows,
    )
}

/// An endpoint in `-o json`: its spec's fields, then what the node made of it.
#[derive(Serialize)]
struct EndpointJson<'a> {
    name: &'a str,
    namespace: &'a str,
    labels: BTreeMap<&'a str, &'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<&'a str>,
    ips: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<PortJson<'a>>,
    endpoint_id: u32,
    identity: u32,
    origin: &'static str,
    enforce_ingress: bool,
    enforce_egress: bool,
}

#[derive(Serialize)]
struct PortJson<'a> {
    name: &'a str,
    port: u32,
    protocol: &'a str,
}

pub fn endpoints_json(endpoints: &[pb::Endpoint]) -> serde_json::Result<String> {
    let none = pb::EndpointSpec::default();
    let list: Vec<EndpointJson> = endpoints
        .iter()
        .map(|ep| {
            let spec = ep.spec.as_ref().unwrap_or(&none);
            EndpointJson {
                name: &spec.name,
                namespace: &spec.namespace,
                labels: sorted(&spec.labels),
                interface: spec.interface.as_deref(),
                ips: &spec.ips,
                ports: spec
                    .ports
                    .iter()
                    .map(|p| PortJson {
                        name: &p.name,
                        port: p.port,
                        protocol: &p.protocol,
                    })
                    .collect(),
                endpoint_id: ep.endpoint_id,
                identity: ep.identity,
                origin: origin(ep.origin()),
                enforce_ingress: ep.enforce_ingress,
                enforce_egress: ep.enforce_egress,
            }
        })
        .collect();
    serde_json::to_string_pretty(&list)
}

/// Where a policy was read: `file#document`.
fn source(p: &pb::Policy) -> String {
    format!("{}#{}", p.source, p.document)
}

pub fn policy_table(policies: &[pb::Policy]) -> String {
    let none = pb::PolicyRef::default();
    let rows = policies.iter().map(|p| {
        let r = p.r#ref.as_ref().unwrap_or(&none);
        vec![
            r.kind.clone(),
            if r.namespace.is_empty() {
                "-".into()
            } else {
                r.namespace.clone()
            },
            r.name.clone(),
            p.rules.to_string(),
            if p.audit { "audit" } else { "enforce" }.to_string(),
            origin(p.origin()).to_string(),
            source(p),
        ]
    });
    table(
        &["KIND", "NAMESPACE", "NAME", "RULES", "MODE", "ORIGIN", "SOURCE"],
        rows,
    )
}

/// A policy in `-o json`.
#[derive(Serialize)]
struct PolicyJson<'a> {
    kind: &'a str,
    namespace: &'a str,
    name: &'a str,
    origin: &'static str,
    source: String,
    rules: u32,
    audit: bool,
}

pub fn policies_json(policies: &[pb::Policy]) -> serde_json::Result<String> {
    let none = pb::PolicyRef::default();
    let list: Vec<PolicyJson> = policies
        .iter()
        .map(|p| {
            let r = p.r#ref.as_ref().unwrap_or(&none);
            PolicyJson {
                kind: &r.kind,
                namespace: &r.namespace,
                name: &r.name,
                origin: origin(p.origin()),
                source: source(p),
                rules: p.rules,
                audit: p.audit,
            }
        })
        .collect();
    serde_json::to_string_pretty(&list)
}

/// Columns padded to their widest cell, two spaces apart, no line ending
/// in spaces.
pub(crate) fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut all = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    all.extend(rows);
    columns(&all, 2).lines().fold(String::new(), |mut out, line| {
        out.push_str(line.trim_end());
        out.push('\n');
        out
    })
}

/// Rows laid out like Go's tabwriter with padding `gap` and spaces (as
/// Hubble prints its tables): every cell but a row's last is padded to its
/// column's widest cell plus `gap` spaces, the last is printed as it is.
pub(crate) fn columns(rows: &[Vec<String>], gap: usize) -> String {
    let count = rows.iter().map(|r| r.len().saturating_sub(1)).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
                + gap
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let Some((last, cells)) = row.split_last() else {
            continue;
        };
        for (cell, width) in cells.iter().zip(&widths) {
            let _ = write!(out, "{cell:<width$}");
        }
        out.push_str(last);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> pb::Endpoint {
        pb::Endpoint {
            spec: Some(pb::EndpointSpec {
                name: "db".into(),
                namespace: "shop".into(),
                labels: [("tier".into(), "b".into()), ("app".into(), "db".into())].into(),
                ips: vec!["10.0.0.7".into(), "fd00::7".into()],
                interface: Some("lxc7".into()),
                ports: vec![pb::NamedPort {
                    name: "pg".into(),
                    port: 5432,
                    protocol: "TCP".into(),
                }],
            }),
            endpoint_id: 42,
            identity: 1234,
            origin: pb::Origin::Runtime.into(),
            enforce_ingress: true,
            enforce_egress: false,
        }
    }

    /// The layout `-o json` had when the observer's own types were printed.
    #[test]
    fn endpoints_as_json() {
        let mut bare = endpoint();
        let spec = bare.spec.as_mut().unwrap();
        (spec.interface, spec.ports, spec.labels) = (None, vec![], Default::default());
        bare.origin = pb::Origin::File.into();
        assert_eq!(
            endpoints_json(&[endpoint(), bare]).unwrap(),
            r#"[
  {
    "name": "db",
    "namespace": "shop",
    "labels": {
      "app": "db",
      "tier": "b"
    },
    "interface": "lxc7",
    "ips": [
      "10.0.0.7",
      "fd00::7"
    ],
    "ports": [
      {
        "name": "pg",
        "port": 5432,
        "protocol": "TCP"
      }
    ],
    "endpoint_id": 42,
    "identity": 1234,
    "origin": "runtime",
    "enforce_ingress": true,
    "enforce_egress": false
  },
  {
    "name": "db",
    "namespace": "shop",
    "labels": {},
    "ips": [
      "10.0.0.7",
      "fd00::7"
    ],
    "endpoint_id": 42,
    "identity": 1234,
    "origin": "file",
    "enforce_ingress": true,
    "enforce_egress": false
  }
]"#
        );
    }

    #[test]
    fn policies_as_json_and_table() {
        let policy = pb::Policy {
            r#ref: Some(pb::PolicyRef {
                kind: "CiliumClusterwideNetworkPolicy".into(),
                namespace: String::new(),
                name: "web".into(),
            }),
            origin: pb::Origin::Runtime.into(),
            source: "p/web.yaml".into(),
            document: 2,
            rules: 3,
            audit: true,
        };
        assert_eq!(
            policies_json(std::slice::from_ref(&policy)).unwrap(),
            r#"[
  {
    "kind": "CiliumClusterwideNetworkPolicy",
    "namespace": "",
    "name": "web",
    "origin": "runtime",
    "source": "p/web.yaml#2",
    "rules": 3,
    "audit": true
  }
]"#
        );
        assert_eq!(
            policy_table(&[policy]),
            "KIND                            NAMESPACE  NAME  RULES  MODE   ORIGIN   SOURCE\n\
             CiliumClusterwideNetworkPolicy  -          web   3      audit  runtime  p/web.yaml#2\n"
        );
    }
}
