//! Human-readable tables: endpoints, policies, anything in columns.

use lumen_observer::policies::PolicyView;
use lumen_observer::state::EndpointView;

pub fn endpoint_table(endpoints: &[EndpointView]) -> String {
    let onoff = |b: bool| if b { "enforced" } else { "open" }.to_string();
    let rows = endpoints.iter().map(|ep| {
        let ips: Vec<String> = ep.spec.ips.iter().map(ToString::to_string).collect();
        let labels: Vec<String> = ep.spec.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        vec![
            ep.spec.key(),
            ep.endpoint_id.to_string(),
            ep.identity.to_string(),
            ep.spec.interface.clone().unwrap_or_else(|| "-".into()),
            ips.join(","),
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

pub fn policy_table(policies: &[PolicyView]) -> String {
    let rows = policies.iter().map(|p| {
        vec![
            p.kind.clone(),
            if p.namespace.is_empty() {
                "-".into()
            } else {
                p.namespace.clone()
            },
            p.name.clone(),
            p.rules.to_string(),
            if p.audit { "audit" } else { "enforce" }.to_string(),
            p.origin.clone(),
            p.source.clone(),
        ]
    });
    table(
        &["KIND", "NAMESPACE", "NAME", "RULES", "MODE", "ORIGIN", "SOURCE"],
        rows,
    )
}

/// Columns padded to their widest cell, two spaces apart.
pub(crate) fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut all = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    all.extend(rows);
    let widths: Vec<usize> = (0..header.len())
        .map(|i| all.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in all {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
