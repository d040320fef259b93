//! `lumen list nodes`: the nodes an observer or a relay knows, like
//! `hubble list nodes`.

use anyhow::Context;
use lumen_proto::observer::{observer_client::ObserverClient, GetNodesRequest, Node};
use lumen_proto::relay::NodeState;

#[derive(Debug, clap::Args)]
pub struct ListNodesArgs {
    #[command(flatten)]
    pub server: crate::server::ServerArgs,
    #[arg(short, long, value_parser = ["table", "json"], default_value = "table")]
    pub output: String,
}

fn state(n: &Node) -> &'static str {
    match NodeState::try_from(n.state) {
        Ok(NodeState::NodeConnected) => "Connected",
        Ok(NodeState::NodeUnavailable) => "Unavailable",
        Ok(NodeState::NodeGone) => "Gone",
        Ok(NodeState::NodeError) => "Error",
        _ => "Unknown",
    }
}

/// `1d2h`, `3h4m`, `5m6s`, `7s` — the two largest units, as hubble shows ages.
pub fn age(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    let (d, h, m, sec) = (s / 86_400, s / 3_600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m{sec}s"),
        (0, ..) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// The table `lumen list nodes` prints.
pub fn nodes_table(nodes: &[Node]) -> String {
    let rows = nodes.iter().map(|n| {
        let connected = n.state == NodeState::NodeConnected as i32;
        let (age_text, rate, flows) = if connected {
            let secs = (n.uptime_ns as f64 / 1e9).max(1e-9);
            (
                age(n.uptime_ns),
                format!("{:.2}", n.seen_flows as f64 / secs),
                format!("{}/{}", n.num_flows, n.max_flows),
            )
        } else {
            ("N/A".into(), "N/A".into(), "N/A".into())
        };
        vec![
            n.name.clone(),
            state(n).to_string(),
            age_text,
            rate,
            flows,
            n.address.clone(),
        ]
    });
    crate::format::table(
        &["NAME", "STATUS", "AGE", "FLOWS/S", "CURRENT/MAX-FLOWS", "ADDRESS"],
        rows,
    )
}

pub fn list_nodes(args: &ListNodesArgs) -> anyhow::Result<()> {
    let nodes = crate::server::runtime()?.block_on(async {
        let (channel, server) = crate::server::connect(&args.server).await?;
        let response = ObserverClient::new(channel)
            .get_nodes(GetNodesRequest {})
            .await
            .with_context(|| format!("GetNodes on {server}"))?;
        anyhow::Ok(response.into_inner().nodes)
    })?;
    if args.output == "json" {
        let rows: Vec<serde_json::Value> = nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "name": n.name, "state": state(n), "address": n.address, "version": n.version,
                    "uptime_ns": n.uptime_ns, "num_flows": n.num_flows, "max_flows": n.max_flows,
                    "seen_flows": n.seen_flows,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", nodes_table(&nodes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_the_table() {
        let s = 1_000_000_000u64;
        assert_eq!(age(7 * s), "7s");
        assert_eq!(age(306 * s), "5m6s");
        assert_eq!(age(3 * 3_600 * s + 240 * s), "3h4m");
        assert_eq!(age(2 * 86_400 * s + 3_600 * s), "2d1h");
        let nodes = [
            Node {
                name: "node1".into(),
                state: NodeState::NodeConnected as i32,
                address: "192.168.200.1:4244".into(),
                uptime_ns: 100 * s,
                seen_flows: 250,
                num_flows: 200,
                max_flows: 4095,
                ..Default::default()
            },
            Node {
                name: "node2".into(),
                state: NodeState::NodeUnavailable as i32,
                address: "192.168.200.2:4244".into(),
                ..Default::default()
            },
        ];
        assert_eq!(
            nodes_table(&nodes),
            "NAME   STATUS       AGE    FLOWS/S  CURRENT/MAX-FLOWS  ADDRESS\n\
             node1  Connected    1m40s  2.50     200/4095           192.168.200.1:4244\n\
             node2  Unavailable  N/A    N/A      N/A                192.168.200.2:4244\n"
        );
    }
}
