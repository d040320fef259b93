//! Where `lumen` finds Hubble's API: the server flags every command that
//! asks an observer or a relay shares, and the connection they describe.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use lumen_proto::tonic::transport::{Channel, Endpoint};

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
