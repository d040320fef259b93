//! `lumen policy`: validate policy files, apply, delete and list the
//! observer's policies, and trace a connection through them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Subcommand;
use lumen_policy::compile::RuleMeta;
use lumen_policy::trace::{Decision, Trace, Verdict};
use lumen_policy::{parse_documents, Document};
use lumen_proto::lumen::v1 as pb;

use crate::commands::with_control;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check policy files (or directories of them) without applying them;
    /// every error is printed with its file, document, field and reason.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Create or replace the policies of files or directories, all or none.
    Apply {
        #[arg(short = 'f', long = "file", required = true)]
        paths: Vec<PathBuf>,
    },
    /// Delete policies applied at runtime: by name, or those a file defines.
    Delete {
        /// Policy name.
        #[arg(required_unless_present = "paths", conflicts_with = "paths")]
        name: Option<String>,
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// CiliumNetworkPolicy (cnp), CiliumClusterwideNetworkPolicy (ccnp) or NetworkPolicy (netpol).
        #[arg(long, default_value = "cnp", value_parser = parse_kind)]
        kind: lumen_policy::Kind,
        #[arg(short = 'f', long = "file")]
        paths: Vec<PathBuf>,
    },
    /// List the policies in force.
    List {
        #[arg(short, long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// The verdict policy gives a new connection, computed without sending traffic.
    Trace {
        /// Sender: a pod (`ns/name` or `name`), labels (`app=web,tier=a`), an IP, or `reserved:host`.
        #[arg(long)]
        from: String,
        /// Receiver, in the same forms.
        #[arg(long)]
        to: String,
        /// Destination port and protocol: `80/tcp`, `53/udp`, `5000/sctp`, `80` (TCP), `icmp`.
        #[arg(long, value_parser = parse_port)]
        port: (u8, u16),
        #[arg(short, long, value_parser = ["text", "json"], default_value = "text")]
        output: String,
    },
}

fn parse_kind(s: &str) -> Result<lumen_policy::Kind, String> {
    use lumen_policy::Kind;
    Ok(match s {
        "cnp" | "CiliumNetworkPolicy" => Kind::CiliumNetworkPolicy,
        "ccnp" | "CiliumClusterwideNetworkPolicy" => Kind::CiliumClusterwideNetworkPolicy,
        "netpol" | "NetworkPolicy" => Kind::NetworkPolicy,
        other => return Err(format!("unknown policy kind {other:?} (cnp, ccnp, netpol)")),
    })
}

fn parse_port(s: &str) -> Result<(u8, u16), String> {
    let lower = s.to_ascii_lowercase();
    if lower == "icmp" {
        return Ok((1, 0));
    }
    if lower == "icmpv6" {
        return Ok((58, 0));
    }
    let (port, proto) = lower.split_once('/').unwrap_or((&lower, "tcp"));
    let proto = match proto {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        other => {
            return Err(format!(
                "unknown protocol {other:?} (tcp, udp, sctp, or the port `icmp`)"
            ))
        }
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((proto, p)),
        _ => Err(format!("port {port:?} is not a number from 1 to 65535")),
    }
}

/// The texts of a file, or of every `*.yaml`, `*.yml`, `*.json` in a
/// directory (sorted by name).
fn read_documents(path: &Path) -> anyhow::Result<Vec<Document>> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading directory {}", path.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .into_iter()
        .map(|f| {
            let yaml = std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            Ok(Document {
                source: f.display().to_string(),
                yaml,
            })
        })
        .collect()
}

/// Reads and validates `paths`: the documents, and the policies in them.
fn load(paths: &[PathBuf]) -> anyhow::Result<(Vec<Document>, Vec<lumen_policy::Policy>)> {
    let mut documents = Vec::new();
    for p in paths {
        documents.extend(read_documents(p)?);
    }
    match parse_documents(&documents) {
        Ok(policies) => Ok((documents, policies)),
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            let n = errors.len();
            bail!(
                "{n} error{} in the policies; nothing was applied",
                if n == 1 { "" } else { "s" }
            )
        }
    }
}

pub fn run(cli: &crate::commands::Cli, command: &PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Validate { paths } => {
            let (_, policies) = load(paths)?;
            println!("{} policies valid", policies.len());
            Ok(())
        }
        PolicyCommand::Apply { paths } => {
            let (documents, policies) = load(paths)?;
            let documents = documents
                .into_iter()
                .map(|d| pb::PolicyDocument {
                    source: d.source,
                    yaml: d.yaml,
                })
                .collect();
            with_control(cli, |mut c| async move { c.apply_policies(documents).await })?;
            for p in &policies {
                println!("applied {}", p.key());
            }
            Ok(())
        }
        PolicyCommand::Delete {
            name,
            namespace,
            kind,
            paths,
        } => {
            let refs: Vec<pb::PolicyRef> = match name {
                Some(name) => {
                    let clusterwide = *kind == lumen_policy::Kind::CiliumClusterwideNetworkPolicy;
                    vec![pb::PolicyRef {
                        kind: kind.to_string(),
                        namespace: if clusterwide { String::new() } else { namespace.clone() },
                        name: name.clone(),
                    }]
                }
                None => load(paths)?
                    .1
                    .iter()
                    .map(|p| pb::PolicyRef {
                        kind: p.kind.to_string(),
                        namespace: p.namespace.clone().unwrap_or_default(),
                        name: p.name.clone(),
                    })
                    .collect(),
            };
            let keys: Vec<String> = refs.iter().map(policy_key).collect();
            with_control(cli, |mut c| async move { c.delete_policies(refs).await })?;
            for k in keys {
                println!("deleted {k}");
            }
            Ok(())
        }
        PolicyCommand::List { output } => {
            let policies = with_control(cli, |mut c| async move { c.list_policies().await })?;
            if output == "json" {
                println!("{}", crate::format::policies_json(&policies)?);
            } else {
                print!("{}", crate::format::policy_table(&policies));
            }
            Ok(())
        }
        PolicyCommand::Trace {
            from,
            to,
            port: (proto, port),
            output,
        } => {
            let answer = with_control(
                cli,
                |mut c| async move { c.trace_policy(from, to, *proto, *port).await },
            )?;
            let trace = trace_of(answer)?;
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&trace)?);
            } else {
                print!("{}", describe_trace(&trace, from, to));
            }
            Ok(())
        }
    }
}

/// `Kind/namespace/name`, or `Kind/name` for a clusterwide policy.
fn policy_key(r: &pb::PolicyRef) -> String {
    if r.namespace.is_empty() {
        format!("{}/{}", r.kind, r.name)
    } else {
        format!("{}/{}/{}", r.kind, r.namespace, r.name)
    }
}

fn verdict_of(v: i32) -> anyhow::Result<Verdict> {
    Ok(match pb::TraceVerdict::try_from(v) {
        Ok(pb::TraceVerdict::Forwarded) => Verdict::Forwarded,
        Ok(pb::TraceVerdict::Dropped) => Verdict::Dropped,
        Ok(pb::TraceVerdict::Audit) => Verdict::Audit,
        _ => bail!("unexpected response from the observer: trace verdict {v}"),
    })
}

fn rule_of(r: pb::TraceRule) -> RuleMeta {
    let p = r.policy.unwrap_or_default();
    RuleMeta {
        name: p.name,
        namespace: p.namespace,
        kind: p.kind,
        match_type: r.match_type,
    }
}

fn decision_of(d: pb::TraceDecision) -> anyhow::Result<Decision> {
    Ok(Decision {
        verdict: verdict_of(d.verdict)?,
        drop_reason: d.drop_reason,
        by: d.by.map(rule_of),
        selected_by: d.selected_by.into_iter().map(rule_of).collect(),
        enforced: d.enforced,
    })
}

/// The observer's answer as the policy crate's trace, which the CLI prints
/// (and `-o json` shows as it always did).
fn trace_of(t: pb::TracePolicyResponse) -> anyhow::Result<Trace> {
    Ok(Trace {
        egress: t.egress.map(decision_of).transpose()?,
        ingress: t.ingress.map(decision_of).transpose()?,
        verdict: verdict_of(t.verdict)?,
    })
}

fn policy_name(m: &RuleMeta) -> String {
    if m.namespace.is_empty() {
        format!("{} {}", m.kind, m.name)
    } else {
        format!("{} {}/{}", m.kind, m.namespace, m.name)
    }
}

fn describe_side(side: &str, who: &str, d: &Decision) -> String {
    let verdict = format!("{:?}", d.verdict).to_uppercase();
    let why = if !d.enforced {
        "no policy selects it in this direction".to_string()
    } else {
        match (&d.by, d.drop_reason) {
            (Some(by), 181) => format!("denied by {}", policy_name(by)),
            (Some(by), _) if d.verdict == Verdict::Audit => {
                format!("denied by {} (audit mode)", policy_name(by))
            }
            (Some(by), _) => format!("allowed by {}", policy_name(by)),
            (None, _) if d.verdict == Verdict::Forwarded => {
                "default deny is disabled (enableDefaultDeny: false)".to_string()
            }
            (None, _) => format!(
                "no policy allowed it; default-deny because selected by {}",
                d.selected_by.iter().map(policy_name).collect::<Vec<_>>().join(", ")
            ),
        }
    };
    let reason = match d.drop_reason {
        133 => " (POLICY_DENIED)",
        181 => " (POLICY_DENY)",
        _ => "",
    };
    format!("{side} of {who}: {verdict}{reason}: {why}\n")
}

/// The trace as people read it: each side, then the verdict.
pub fn describe_trace(t: &Trace, from: &str, to: &str) -> String {
    let mut out = String::new();
    match &t.egress {
        Some(d) => out.push_str(&describe_side("egress", from, d)),
        None => out.push_str(&format!(
            "egress of {from}: not an endpoint on this node, no policy applies\n"
        )),
    }
    match &t.ingress {
        Some(d) => out.push_str(&describe_side("ingress", to, d)),
        None => out.push_str(&format!(
            "ingress of {to}: not an endpoint on this node, no policy applies\n"
        )),
    }
    out.push_str(&format!("verdict: {}\n", format!("{:?}", t.verdict).to_uppercase()));
    out
}
