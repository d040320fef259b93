//! `lumen observe` and `lumen status`: Hubble's Observer API from the
//! command line, with `hubble observe`'s flags and output formats.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use lumen_flow::format;
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::{observer_client::ObserverClient, GetFlowsRequest, GetFlowsResponse, ServerStatusRequest};
use lumen_proto::tonic::transport::{Channel, Endpoint};
use lumen_proto::tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use prost_types::Timestamp;

use crate::filters::FilterFlags;

/// Where `lumen` looks without --server: the relay, then the local observer.
pub const DEFAULT_RELAY: &str = "127.0.0.1:4245";
pub const DEFAULT_SERVER: &str = "unix:///var/run/lumen/observer.sock";

/// Where the observer (or relay) serves Hubble's API.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Hubble API address: host:port (a relay or an observer) or
    /// unix:///path/to.sock. Default: the relay at 127.0.0.1:4245 if one
    /// answers, else the local observer at unix:///var/run/lumen/observer.sock.
    #[arg(long, env = "LUMEN_SERVER", default_value = "")]
    pub server: String,
    /// Speak TLS to the server (like hubble's --tls).
    #[arg(long, env = "LUMEN_TLS")]
    pub tls: bool,
    /// CA certificates (PEM, comma-separated) the server's certificate must chain to.
    #[arg(long, env = "LUMEN_TLS_CA_CERT_FILES", value_delimiter = ',', requires = "tls")]
    pub tls_ca_cert_files: Vec<std::path::PathBuf>,
    /// Client certificate (PEM) for a server that requires one (mTLS).
    #[arg(long, env = "LUMEN_TLS_CLIENT_CERT_FILE", requires_all = ["tls", "tls_client_key_file"])]
    pub tls_client_cert_file: Option<std::path::PathBuf>,
    #[arg(long, env = "LUMEN_TLS_CLIENT_KEY_FILE", requires_all = ["tls", "tls_client_cert_file"])]
    pub tls_client_key_file: Option<std::path::PathBuf>,
    /// The name the server's certificate must be valid for (default: the server's host).
    #[arg(long, env = "LUMEN_TLS_SERVER_NAME", requires = "tls")]
    pub tls_server_name: Option<String>,
}

impl ServerArgs {
    /// The TLS to use, if any: (client settings, server name).
    fn tls(&self, host: &str) -> Option<(lumen_proto::tls::ClientTls, String)> {
        self.tls.then(|| {
            let tls = lumen_proto::tls::ClientTls {
                ca_files: self.tls_ca_cert_files.clone(),
                cert_file: self.tls_client_cert_file.clone(),
                key_file: self.tls_client_key_file.clone(),
            };
            (tls, self.tls_server_name.clone().unwrap_or_else(|| host.to_string()))
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One line per flow.
    Compact,
    /// A `KEY: value` block per flow.
    Dict,
    /// The flow in protobuf JSON, one per line.
    Json,
    /// The GetFlowsResponse in protobuf JSON, one per line (readable by --input-file).
    Jsonpb,
    /// Aligned columns, printed when the query ends.
    Table,
}

#[derive(Debug, Args)]
pub struct ObserveArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The last N matching flows (default 20 unless following or a time range is given).
    #[arg(long, value_name = "N", conflicts_with_all = ["first", "all"])]
    pub last: Option<u64>,
    /// The first N matching flows in the observer's buffer.
    #[arg(long, value_name = "N", conflicts_with_all = ["all", "follow"])]
    pub first: Option<u64>,
    /// Every flow in the observer's buffer.
    #[arg(long)]
    pub all: bool,
    /// Keep printing new flows as they arrive.
    #[arg(short, long)]
    pub follow: bool,
    /// Flows from this time on: RFC 3339 (2025-11-25T01:46:56Z) or a duration ago (5m, 1h30m).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Flows up to this time: RFC 3339 or a duration ago.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    #[command(flatten)]
    pub filters: FilterFlags,
    /// Print the filters the flags build, as Hubble's JSON filters, and exit.
    #[arg(long)]
    pub print_raw_filters: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "compact")]
    pub output: Output,
    /// Read flows from this file (JSON lines as -o jsonpb or -o json writes; - for stdin) instead of a server.
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
}

/// `RFC 3339` or a duration before `now` (`5m`, `1h30m`).
pub fn parse_time(value: &str, now: SystemTime) -> anyhow::Result<Timestamp> {
    let at = match humantime::parse_rfc3339_weak(value) {
        Ok(t) => t,
        Err(_) => match humantime::parse_duration(value) {
            Ok(d) => now.checked_sub(d).unwrap_or(UNIX_EPOCH),
            Err(_) => {
                bail!("invalid time {value:?}: use RFC 3339 (2025-11-25T01:46:56Z) or a duration ago (5m, 1h30m)")
            }
        },
    };
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Ok(Timestamp {
        seconds: since_epoch.as_secs() as i64,
        nanos: since_epoch.subsec_nanos() as i32,
    })
}

/// The request the flags describe, as `hubble observe` builds it.
pub fn request(args: &ObserveArgs, now: SystemTime) -> anyhow::Result<GetFlowsRequest> {
    let since = args.since.as_deref().map(|s| parse_time(s, now)).transpose()?;
    let until = args.until.as_deref().map(|s| parse_time(s, now)).transpose()?;
    if let (Some(s), Some(u)) = (&since, &until) {
        if (s.seconds, s.nanos) > (u.seconds, u.nanos) {
            bail!("--since is after --until: nothing can match");
        }
    }
    let number = match (args.first, args.last) {
        (Some(n), _) | (_, Some(n)) => n,
        _ if args.all => u64::MAX,
        _ if args.follow || since.is_some() || until.is_some() => 0,
        _ => 20,
    };
    lumen_flow::compile(&args.filters.whitelist, &args.filters.blacklist).context("invalid filter")?;
    Ok(GetFlowsRequest {
        number,
        first: args.first.is_some(),
        follow: args.follow,
        since,
        until,
        whitelist: args.filters.whitelist.clone(),
        blacklist: args.filters.blacklist.clone(),
        ..Default::default()
    })
}

/// Hubble's `--print-raw-filters` layout: YAML lists of JSON filters.
pub fn raw_filters(filters: &FilterFlags) -> anyhow::Result<String> {
    let mut out = String::new();
    for (name, list) in [("allowlist", &filters.whitelist), ("denylist", &filters.blacklist)] {
        if list.is_empty() {
            continue;
        }
        out.push_str(name);
        out.push_str(":\n");
        for f in list {
            out.push_str(&format!("- '{}'\n", format::filter_json(f)?));
        }
    }
    Ok(out)
}

/// Writes responses in one output format; `finish` flushes what a format
/// holds back (the table).
pub struct Printer<W: Write> {
    out: W,
    output: Output,
    printed: usize,
    held: Vec<GetFlowsResponse>,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W, output: Output) -> Self {
        Printer {
            out,
            output,
            printed: 0,
            held: Vec::new(),
        }
    }

    pub fn print(&mut self, response: GetFlowsResponse) -> anyhow::Result<()> {
        let text = match self.output {
            Output::Compact => format::compact(&response).map(|l| l + "\n"),
            Output::Dict => format::dict(&response).map(|b| match self.printed {
                0 => b,
                _ => format!("{}\n{b}", format::DICT_SEPARATOR),
            }),
            Output::Json => format::json(&response)?.map(|l| l + "\n"),
            Output::Jsonpb => Some(format::jsonpb(&response)? + "\n"),
            Output::Table => {
                self.held.push(response);
                None
            }
        };
        if let Some(text) = text {
            self.out.write_all(text.as_bytes())?;
            self.out.flush()?;
            self.printed += 1;
        }
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<W> {
        if self.output == Output::Table {
            self.out.write_all(format::table(&self.held).as_bytes())?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Applies the request to flows read from a file: filters, time range, and
/// first/last N, as the observer would.
pub fn filter_offline(
    input: impl BufRead,
    source: &str,
    req: &GetFlowsRequest,
    mut emit: impl FnMut(GetFlowsResponse) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let filters = lumen_flow::compile(&req.whitelist, &req.blacklist).context("invalid filter")?;
    let key = |t: &Option<Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos));
    let mut kept = std::collections::VecDeque::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading {source}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let response = format::parse_json(&line).with_context(|| format!("{source}:{}", n + 1))?;
        if let Some(ResponseTypes::Flow(flow)) = &response.response_types {
            let t = key(&flow.time);
            if !filters.matches(flow) || req.since.is_some() && t < key(&req.since) {
                continue;
            }
            if req.until.is_some() && t > key(&req.until) {
                continue;
            }
        }
        kept.push_back(response);
        if req.first && kept.len() as u64 >= req.number {
            break;
        }
        if !req.first && req.number > 0 && kept.len() as u64 > req.number {
            kept.pop_front();
        }
    }
    kept.into_iter().try_for_each(&mut emit)
}

/// Tonic's transport errors repeat their cause in their own message; the
/// innermost one says what went wrong.
fn unreachable(server: &str, e: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    anyhow::anyhow!(
        "cannot reach the observer at {server} (is lumen-observer running? try --server or LUMEN_SERVER): {cause}"
    )
}

/// Connects to the server of `args`; none given means the default relay,
/// else the local observer. Returns the channel and the address it reached.
pub(crate) async fn connect(args: &ServerArgs) -> anyhow::Result<(Channel, String)> {
    let server = args.server.as_str();
    if !server.is_empty() {
        return Ok((
            connect_to(server, args, Duration::from_secs(5)).await?,
            server.to_string(),
        ));
    }
    match connect_to(DEFAULT_RELAY, args, Duration::from_millis(500)).await {
        Ok(c) => Ok((c, DEFAULT_RELAY.to_string())),
        Err(_) => match connect_to(DEFAULT_SERVER, args, Duration::from_secs(5)).await {
            Ok(c) => Ok((c, DEFAULT_SERVER.to_string())),
            Err(e) => Err(anyhow::anyhow!(
                "cannot reach a relay at {DEFAULT_RELAY} or an observer at {DEFAULT_SERVER} (is lumen-relay or \
                 lumen-observer running? try --server or LUMEN_SERVER): {}",
                e.root_cause()
            )),
        },
    }
}

async fn connect_to(server: &str, args: &ServerArgs, timeout: Duration) -> anyhow::Result<Channel> {
    if let Some(path) = server.strip_prefix("unix://") {
        return lumen_observer::server::connect_unix(std::path::Path::new(path))
            .await
            .map_err(|e| unreachable(server, &e));
    }
    let address = server.split_once("://").map_or(server, |(_, rest)| rest);
    let host = address
        .rsplit_once(':')
        .map_or(address, |(h, _)| h)
        .trim_matches(['[', ']']);
    let tls = args.tls(host);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .with_context(|| format!("invalid --server {server:?}: use unix:///path/to.sock or host:port"))?
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .max_frame_size(lumen_proto::MAX_FRAME_SIZE)
        // Room for a relay's stream of many nodes (HTTP/2's default is 64 KiB).
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(1 << 20);
    if let Some((tls, name)) = tls {
        endpoint = endpoint.tls_config(tls.config(&name)?)?;
    }
    endpoint.connect().await.map_err(|e| {
        let chain = lumen_observer::error_chain(&e);
        match lumen_proto::tls::explain(&chain) {
            Some(reason) => anyhow::anyhow!("TLS with {server}: {reason}"),
            None => unreachable(server, &e),
        }
    })
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

pub fn observe(args: &ObserveArgs) -> anyhow::Result<()> {
    if args.print_raw_filters {
        print!("{}", raw_filters(&args.filters)?);
        return Ok(());
    }
    if args.output == Output::Table && args.follow {
        bail!("-o table aligns columns over all flows and cannot follow: use -o compact with --follow");
    }
    let req = request(args, SystemTime::now())?;
    let mut printer = Printer::new(std::io::stdout().lock(), args.output);
    if let Some(file) = &args.input_file {
        if args.follow {
            bail!("--follow cannot be used with --input-file");
        }
        let name = file.display().to_string();
        if name == "-" {
            filter_offline(std::io::stdin().lock(), "stdin", &req, |r| printer.print(r))?;
        } else {
            let f = std::fs::File::open(file).with_context(|| format!("cannot open --input-file {name}"))?;
            filter_offline(std::io::BufReader::new(f), &name, &req, |r| printer.print(r))?;
        }
        drop(printer.finish()?);
        return Ok(());
    }
    runtime()?.block_on(async {
        let (channel, server) = connect(&args.server).await?;
        let mut client = ObserverClient::new(channel);
        let mut stream = client
            .get_flows(req)
            .await
            .with_context(|| format!("GetFlows on {server}"))?
            .into_inner();
        while let Some(response) = stream.message().await.context("flow stream broke off")? {
            printer.print(response)?;
        }
        anyhow::Ok(())
    })?;
    drop(printer.finish()?);
    Ok(())
}

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
/// missed, when the server reports them (Lumen does, in metadata).
pub fn status_lines(
    server: &str,
    health: &str,
    s: &lumen_proto::observer::ServerStatusResponse,
    lost: Option<(u64, u64)>,
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
        let lost =
            count(lumen_observer::server::LOST_KERNEL_HEADER).zip(count(lumen_observer::server::LOST_CLIENT_HEADER));
        anyhow::Ok(status_lines(server, &health, response.get_ref(), lost))
    })?;
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_035_216);
        assert_eq!(
            parse_time("2025-11-25T01:46:56.5Z", now).unwrap(),
            Timestamp {
                seconds: 1_764_035_216,
                nanos: 500_000_000
            }
        );
        assert_eq!(parse_time("5m", now).unwrap().seconds, 1_764_035_216 - 300);
        assert_eq!(parse_time("1h30m", now).unwrap().seconds, 1_764_035_216 - 5400);
        assert_eq!(
            parse_time("yesterday", now).unwrap_err().to_string(),
            "invalid time \"yesterday\": use RFC 3339 (2025-11-25T01:46:56Z) or a duration ago (5m, 1h30m)"
        );
    }

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
            status_lines("unix:///run/o.sock", "Ok", &s, None),
            "Healthcheck (via unix:///run/o.sock): Ok\nCurrent/Max Flows: 1,234/65,535 (1.88%)\nFlows/s: 12.34\nConnected Nodes: 1/1\n"
        );
        assert!(status_lines("x", "Ok", &s, Some((12_345, 6)))
            .ends_with("Connected Nodes: 1/1\nLost Events: 12,345 in the kernel ring buffer, 6 by slow clients\n"));
    }
}
