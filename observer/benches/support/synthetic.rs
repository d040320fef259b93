//! A synthetic cluster for policy benchmarks: 1,000 workloads and
//! CiliumNetworkPolicies of ten realistic shapes over them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use lumen_policy::compile::NamedPort;

/// Workloads in the cluster (namespace default).
pub const ENDPOINTS: usize = 1_000;

/// One workload of the synthetic cluster, in namespace default.
pub struct Workload {
    pub labels: BTreeMap<String, String>,
    pub named_ports: Vec<NamedPort>,
}

/// Workload i: `app=svc{i}`, one of 10 teams, one of 3 tiers; even ones
/// declare `http` (8080/TCP), every fifth `metrics` (9090/TCP).
pub fn workload(i: usize) -> Workload {
    let labels = [
        ("app", format!("svc{i}")),
        ("team", format!("t{}", i % 10)),
        ("tier", ["web", "api", "db"][i % 3].to_string()),
    ];
    let declared = [
        (i.is_multiple_of(2), "http", 8080),
        (i.is_multiple_of(5), "metrics", 9090),
    ];
    Workload {
        labels: labels.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        named_ports: declared
            .into_iter()
            .filter(|(yes, ..)| *yes)
            .map(|(_, name, port)| NamedPort {
                name: name.into(),
                port,
                proto: 6,
            })
            .collect(),
    }
}

pub fn cnp(name: &str, spec: &str) -> String {
    format!("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}")
}

/// One peer rule: `key` (fromEndpoints, toCIDR, …) with `peers`, and
/// `ports` as `port/PROTO` or `first-last/PROTO` (none: all traffic).
pub fn rule(key: &str, peers: &str, ports: &[&str]) -> String {
    let mut out = format!("    - {key}: [{peers}]\n");
    if !ports.is_empty() {
        let list: Vec<String> = ports
            .iter()
            .map(|p| {
                let (port, proto) = p.split_once('/').expect("port/PROTO");
                match port.split_once('-') {
                    Some((first, last)) => format!("{{port: \"{first}\", endPort: {last}, protocol: {proto}}}"),
                    None => format!("{{port: \"{port}\", protocol: {proto}}}"),
                }
            })
            .collect();
        let _ = writeln!(out, "      toPorts: [{{ports: [{}]}}]", list.join(", "));
    }
    out
}

/// Policy i of the cluster, one of ten shapes (i mod 10): most guard one
/// service, one in ten a whole team.
pub fn policy(i: usize) -> String {
    let (e, team, k) = (ENDPOINTS, (i / 10) % 10, i / 10);
    let app = |j: usize| format!("{{matchLabels: {{app: svc{}}}}}", j % e);
    let own = format!("  endpointSelector: {{matchLabels: {{app: svc{i}}}}}\n");
    let spec = match i % 10 {
        // A service and its two callers, on a port (one in four by name)
        // and a range.
        0..=3 => {
            let port = if i % 10 == 2 { "http/TCP" } else { "8080/TCP" };
            let peers = format!("{}, {}", app(i + 1), app(i + 2));
            format!(
                "{own}  ingress:\n{}",
                rule("fromEndpoints", &peers, &[port, "9000-9010/TCP"])
            )
        }
        // Open to the front tiers of one team.
        4 => {
            let peers = format!(
                "{{matchLabels: {{team: t{team}}}, matchExpressions: [{{key: tier, operator: In, values: [web, api]}}]}}"
            );
            format!("{own}  ingress:\n{}", rule("fromEndpoints", &peers, &["8080/TCP"]))
        }
        // Egress to three services by their named port, and to DNS.
        5 => {
            let three = format!(
                "{{matchExpressions: [{{key: app, operator: In, values: [svc{}, svc{}, svc{}]}}]}}",
                (i + 10) % e,
                (i + 20) % e,
                (i + 30) % e
            );
            format!(
                "{own}  egress:\n{}{}",
                rule("toEndpoints", &three, &["http/TCP"]),
                rule("toEndpoints", &app(0), &["53/UDP", "53/TCP"])
            )
        }
        // Egress to outside prefixes, one with an exception.
        6 => format!(
            "{own}  egress:\n{}{}",
            rule(
                "toCIDRSet",
                &format!("{{cidr: 100.64.{k}.0/24, except: [100.64.{k}.128/25]}}"),
                &["443/TCP"]
            ),
            rule("toCIDR", &format!("192.0.2.{k}/32"), &["5432/TCP"])
        ),
        // A database: its team allowed; other teams' web tier and one
        // outside address denied.
        7 => {
            let others = format!("{{matchExpressions: [{{key: tier, operator: In, values: [web]}}, {{key: team, operator: NotIn, values: [t{team}]}}]}}");
            format!(
                "{own}  ingress:\n{}  ingressDeny:\n{}{}",
                rule(
                    "fromEndpoints",
                    &format!("{{matchLabels: {{team: t{team}}}}}"),
                    &["5432/TCP"]
                ),
                rule("fromEndpoints", &others, &["5432/TCP"]),
                rule("fromCIDR", &format!("198.51.100.{k}/32"), &[])
            )
        }
        // Team-wide: one scraper reads every member's metrics.
        8 => format!(
            "  endpointSelector: {{matchLabels: {{team: t{team}}}}}\n  ingress:\n{}",
            rule("fromEndpoints", &app(i), &["9090/TCP"])
        ),
        // Egress to a port range on the team's databases.
        _ => format!(
            "{own}  egress:\n{}",
            rule(
                "toEndpoints",
                &format!("{{matchLabels: {{tier: db, team: t{team}}}}}"),
                &["30000-30100/TCP"]
            )
        ),
    };
    cnp(&format!("p{i}"), &spec)
}

/// Policies 0..n of the cluster as one multi-document YAML file.
pub fn policies_yaml(n: usize) -> String {
    (0..n).map(policy).collect::<Vec<_>>().join("---\n")
}
