//! `lumen status`: the health and flow buffer of an observer or a relay,
//! as `hubble status` shows them.

use anyhow::Context;
use lumen_proto::observer::{observer_client::ObserverClient, ServerStatusRequest};
use lumen_proto::tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::server::{connect, runtime, ServerArgs};

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The lines `hubble status` prints for a health answer and a ServerStatus.
/// `lost`: events the kernel ring buffer could not take and flows clients
/// missed, when the server reports them (Lumen does, in metadata);
/// `export_dropped`: records its flow export dropped, when it exports.
pub fn status_lines(
    server: &str,
    health: &str,
    s: &lumen_proto::observer::ServerStatusResponse,
    lost: Option<(u64, u64)>,
    export_dropped: Option<u64>,
) -> String {
    let mut out = format!("Healthcheck (via {server}): {health}\n");
    let percent = if s.max_flows == 0 {
        0.0
    } else {
        s.num_flows as f64 * 100.0 / s.max_flows as f64
    };
    out += &format!(
        "Current/Max Flows: {}/{} ({percent:.2}%)\n",
        thousands(s.num_flows),
        thousands(s.max_flows)
    );
    let rate = if s.flows_rate > 0.0 || s.uptime_ns == 0 {
        s.flows_rate
    } else {
        s.seen_flows as f64 / (s.uptime_ns as f64 / 1e9)
    };
    out += &format!("Flows/s: {rate:.2}\n");
    if let Some(connected) = s.num_connected_nodes {
        let unavailable = s.num_unavailable_nodes.unwrap_or(0);
        out += &format!("Connected Nodes: {connected}/{}\n", connected + unavailable);
        if unavailable > 0 {
            out += &format!("Unavailable Nodes: {}\n", s.unavailable_nodes.join(", "));
        }
    }
    if let Some((kernel, client)) = lost {
        out += &format!(
            "Lost Events: {} in the kernel ring buffer, {} by slow clients\n",
            thousands(kernel),
            thousands(client)
        );
    }
    if let Some(dropped) = export_dropped {
        out += &format!(
            "Export Drops: {} (lumen_exporter_dropped_total on /metrics has them by flow log and reason)\n",
            thousands(dropped)
        );
    }
    out
}

pub fn status(args: &ServerArgs) -> anyhow::Result<()> {
    let text = runtime()?.block_on(async {
        let (channel, server) = connect(args).await?;
        let server = &server;
        let health = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: lumen_proto::HEALTH_SERVICE_NAME.into(),
            })
            .await
            .with_context(|| format!("health check on {server}"))?
            .into_inner();
        let health = match health.status() {
            ServingStatus::Serving => "Ok".to_string(),
            other => other.as_str_name().to_string(),
        };
        let response = ObserverClient::new(channel)
            .server_status(ServerStatusRequest {})
            .await
            .with_context(|| format!("ServerStatus on {server}"))?;
        let count = |key: &str| -> Option<u64> { response.metadata().get(key)?.to_str().ok()?.parse().ok() };
        let lost = count(lumen_proto::LOST_KERNEL_HEADER).zip(count(lumen_proto::LOST_CLIENT_HEADER));
        let export_dropped = count(lumen_proto::EXPORTER_DROPPED_HEADER);
        anyhow::Ok(status_lines(server, &health, response.get_ref(), lost, export_dropped))
    })?;
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_match_hubble() {
        let s = lumen_proto::observer::ServerStatusResponse {
            num_flows: 1234,
            max_flows: 65535,
            seen_flows: 5000,
            uptime_ns: 0,
            flows_rate: 12.344,
            num_connected_nodes: Some(1),
            num_unavailable_nodes: Some(0),
            ..Default::default()
        };
        assert_eq!(
            status_lines("unix:///run/o.sock", "Ok", &s, None, None),
            "Healthcheck (via unix:///run/o.sock): Ok\nCurrent/Max Flows: 1,234/65,535 (1.88%)\nFlows/s: 12.34\nConnected Nodes: 1/1\n"
        );
        assert!(status_lines("x", "Ok", &s, Some((12_345, 6)), None)
            .ends_with("Connected Nodes: 1/1\nLost Events: 12,345 in the kernel ring buffer, 6 by slow clients\n"));
        assert!(status_lines("x", "Ok", &s, Some((0, 0)), Some(1_500)).ends_with(
            "Lost Events: 0 in the kernel ring buffer, 0 by slow clients\n\
             Export Drops: 1,500 (lumen_exporter_dropped_total on /metrics has them by flow log and reason)\n"
        ));
    }
}
