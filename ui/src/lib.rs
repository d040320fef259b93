//! `lumen-ui`: Lumen's browser service map and flow explorer.
//!
//! ```text
//! relay ──GetFlows(follow)──▶ link ──▶ hub (ring of recent flows, one
//! lumen-model per view) ──▶ api (JSON, CSV, SSE at 2 updates/s) ──▶ web app
//! ```
//!
//! * [`link`]: lumen-rpc's reconnecting follow stream and a status poll of
//!   the server every 2 s, as `lumen top` has them.
//! * [`hub`]: every response kept in a bounded ring; a *view* (the filters
//!   of `lumen observe` and a unit) is a lumen-model fed with the flows its
//!   filters pass, made on first use from the ring and fed live after.
//! * [`map`], [`rows`]: what the page draws, built from a view's snapshot.
//! * [`api`]: the HTTP API, read-only, every input checked (400 with the
//!   reason), an optional bearer token (401 without it); the embedded app.
//!
//! The browser never aggregates: it receives the map and the flows it shows
//! already built, at a bounded rate, whatever the cluster's flow rate.

pub mod api;
mod assets;
pub mod hub;
pub mod link;
pub mod map;
pub mod query;
pub mod rows;
pub mod tls;

#[cfg(test)]
mod fixtures;

// `lumen observe`'s filter flags, as `lumen top`'s filter prompt takes them.
// The module belongs to the CLI; it is compiled here from the same file so
// that the filter bar accepts exactly the same flags and errors.
#[allow(dead_code)]
#[path = "../../cli/src/filters/mod.rs"]
mod filters;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use lumen_rpc::TlsArgs;

/// Serves Lumen's service map and flow explorer to a browser.
#[derive(Debug, Clone, Parser)]
#[command(name = "lumen-ui", version)]
pub struct Args {
    /// Where the browser connects (keep it on loopback unless a token is set).
    #[arg(long, env = "LUMEN_UI_LISTEN", default_value = "127.0.0.1:12000")]
    pub listen: SocketAddr,
    /// Hubble API address: host:port (a relay or an observer) or
    /// unix:///path/to.sock. Default: the relay at 127.0.0.1:4245 if one
    /// answers, else the local observer at unix:///var/run/lumen/observer.sock.
    #[arg(long, env = "LUMEN_SERVER", default_value = "")]
    pub server: String,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Serve the browser over HTTPS with this certificate (PEM, the chain
    /// from the server's own); with --listen-tls-key-file.
    #[arg(long, env = "LUMEN_UI_TLS_CERT_FILE", requires = "listen_tls_key_file")]
    pub listen_tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of --listen-tls-cert-file.
    #[arg(long, env = "LUMEN_UI_TLS_KEY_FILE", requires = "listen_tls_cert_file")]
    pub listen_tls_key_file: Option<PathBuf>,
    /// A file holding a bearer token: the API answers 401 to requests
    /// without `Authorization: Bearer <token>`.
    #[arg(long, env = "LUMEN_UI_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// How far back the flows the observers still hold are asked for at start.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub history: Duration,
    /// Responses (flows, node status, lost events) kept for new views and
    /// the flow table.
    #[arg(long, default_value_t = DEFAULT_RING)]
    pub ring: usize,
}

/// Responses kept by default: a flow with pod endpoints holds about 2 KiB,
/// so the ring stays near 75 MiB, and the whole server within 100 MiB at
/// 500 workloads and 5,000 edges (`cargo bench -p lumen-ui --bench server`).
pub const DEFAULT_RING: usize = 40_000;

/// Reads the token of `--auth-token-file`: its content without surrounding
/// whitespace, which may not be empty.
pub fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--auth-token-file {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(
        !token.is_empty(),
        "--auth-token-file {}: the file is empty",
        path.display()
    );
    Ok(token.to_string())
}

/// Follows the server and serves the UI until interrupted.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let token = args.auth_token_file.as_deref().map(read_token).transpose()?;
    let acceptor = match (&args.listen_tls_cert_file, &args.listen_tls_key_file) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    let hub = Arc::new(hub::Shared::new(hub::Hub::new(args.ring)));
    let _link = link::start(&args.server, &args.tls, args.history, hub.clone());
    let history = link::ServerHistory::new(&args.server, &args.tls);
    let app = api::router(api::AppState {
        hub,
        token,
        history: Some(Arc::new(history)),
    });
    let interrupted = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match acceptor {
        Some(acceptor) => {
            tracing::info!("lumen-ui on https://{}", listener.local_addr()?);
            tls::serve(listener, acceptor, app, interrupted).await
        }
        None => {
            tracing::info!("lumen-ui on http://{}", listener.local_addr()?);
            axum::serve(listener, app).with_graceful_shutdown(interrupted).await?;
            Ok(())
        }
    }
}
