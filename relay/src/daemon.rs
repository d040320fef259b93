//! The relay's configuration and its run loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::pool::{Discovery, Pool, Timing};
use crate::server::{MergeOptions, RelayService};

/// Everything the relay can be told. Each flag that takes a value is also
/// a key of the `--config` file and a `LUMEN_RELAY_*` environment variable
/// of the same name (`--peer`, `peer:`, `LUMEN_RELAY_PEER`): see
/// [`RelayConfig::load`].
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "lumen-relay",
    version,
    about = "Lumen relay: merges every node's flows and serves Hubble's Observer API for the whole cluster"
)]
pub struct RelayConfig {
    /// Address to serve the cluster-wide Observer API on.
    #[arg(long, default_value = "127.0.0.1:4245")]
    pub listen_address: SocketAddr,
    /// An observer to relay (HOST:PORT of its TCP API); repeat for more.
    #[arg(long = "peer", value_delimiter = ',', conflicts_with = "peer_service")]
    pub peers: Vec<String>,
    /// An observer (HOST:PORT) whose peer service lists the cluster's nodes;
    /// nodes that join or leave are picked up as they do.
    #[arg(long, required_unless_present = "peers")]
    pub peer_service: Option<String>,
    /// Flows held at most to put the nodes' streams in time order.
    #[arg(long, default_value_t = 10_000)]
    pub sort_buffer_len_max: usize,
    /// How long a flow waits for earlier flows from slower nodes.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub sort_buffer_drain_timeout: Duration,
    /// First wait before reconnecting to a node; it doubles up to --max-backoff.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    pub initial_backoff: Duration,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,
    /// How long to wait for a node to connect or answer.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub dial_timeout: Duration,
    /// Address to serve Prometheus metrics on, at /metrics (HOST:PORT or
    /// :PORT; Hubble relay uses :9966). No metrics server without it.
    #[arg(long, value_parser = crate::metrics::parse_listen_address)]
    pub metrics_listen_address: Option<SocketAddr>,
    #[command(flatten)]
    pub tls: RelayTls,
    #[command(flatten)]
    pub export: lumen_export::ExportArgs,
    #[command(flatten)]
    pub otlp: lumen_export::OtlpArgs,
}

/// TLS towards the observers (the same flags as `lumen`'s, with a client
/// certificate for mTLS) and, optionally, towards the relay's own clients.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RelayTls {
    /// How the relay connects to every observer. `--tls-server-name` is the
    /// name every observer's certificate must be valid for (default: the
    /// name the peer service gives for that node, else the node's address).
    #[command(flatten)]
    pub client: lumen_rpc::TlsArgs,
    /// The relay's own certificate and key (PEM): its clients then use TLS.
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
}

impl RelayConfig {
    /// How the relay's environment variables are named: `LUMEN_RELAY_<KEY>`
    /// (the observer, which may share a shell, has `listen-address` and
    /// `tls-cert-file` too). `LUMEN_RELAY_PEERS`, the name before
    /// `LUMEN_RELAY_PEER`, is still read.
    pub const SPEC: lumen_config::Spec = lumen_config::Spec {
        env_prefix: "LUMEN_RELAY_",
        env_aliases: &[("LUMEN_RELAY_PEERS", "peer")],
        actions: &[],
    };

    /// The configuration from the command line `args` (program name first)
    /// over the environment `env` and the `--config` file, read with
    /// `read_file`: defaults < file < environment < flags.
    pub fn load(
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
        env: &lumen_config::Env,
        read_file: impl FnOnce(&std::path::Path) -> std::io::Result<String>,
    ) -> Result<lumen_config::Loaded<RelayConfig>, lumen_config::Error> {
        lumen_config::load(&Self::SPEC, args, env, read_file)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot listen on {address}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on {address} for /metrics")]
    MetricsListen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving the Observer API failed")]
    Serve(#[from] lumen_proto::tonic::transport::Error),
    #[error("{0} is not a valid peer address (HOST:PORT)")]
    Peer(String),
    #[error("TLS: {0}")]
    Tls(#[from] lumen_rpc::tls::TlsFileError),
    #[error(transparent)]
    Export(#[from] lumen_export::OutputsError),
}

fn check_address(address: &str) -> Result<(), RelayError> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| RelayError::Peer(address.to_string()))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(RelayError::Peer(address.to_string()));
    }
    Ok(())
}

/// Serves until `shutdown` turns true.
pub async fn run(cfg: RelayConfig, shutdown: watch::Receiver<bool>) -> Result<(), RelayError> {
    for p in cfg.peers.iter().chain(&cfg.peer_service) {
        check_address(p)?;
    }
    lumen_export::Outputs::check(&cfg.export, &cfg.otlp, &|name| std::env::var(name).ok())?;
    let client_tls = cfg.tls.client.client_tls();
    if let Some(tls) = &client_tls {
        tls.check()?;
    }
    let server_tls = match (&cfg.tls.tls_cert_file, &cfg.tls.tls_key_file) {
        (Some(cert), Some(key)) => Some(lumen_rpc::tls::server_config(cert, key, &[])?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen_address)
        .await
        .map_err(|source| RelayError::Listen {
            address: cfg.listen_address,
            source,
        })?;
    let metrics_listener = match cfg.metrics_listen_address {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| RelayError::MetricsListen { address, source })?,
        ),
        None => None,
    };
    let pool = Pool::new(Timing {
        initial_backoff: cfg.initial_backoff,
        max_backoff: cfg.max_backoff,
        connect_timeout: cfg.dial_timeout,
        ..Timing::default()
    });
    pool.set_tls(client_tls, cfg.tls.client.tls_server_name.clone());
    pool.start(match &cfg.peer_service {
        Some(service) => Discovery::PeerService(service.clone()),
        None => Discovery::Static(cfg.peers.clone()),
    });
    let options = MergeOptions {
        capacity: cfg.sort_buffer_len_max.max(1),
        window: cfg.sort_buffer_drain_timeout,
        call_timeout: cfg.dial_timeout,
    };
    let health = lumen_rpc::serve::health().await;
    tracing::info!(address = %cfg.listen_address, "relay serving");
    let service = RelayService::new(pool.clone(), options, shutdown.clone());
    let export = crate::export::start(
        &cfg.export,
        &cfg.otlp,
        RelayService::new(pool.clone(), options, shutdown.clone()),
        shutdown.clone(),
    )?;
    if let Some(listener) = metrics_listener {
        tracing::info!(address = ?listener.local_addr().ok(), "relay serving /metrics");
        tokio::spawn(crate::metrics::serve(
            listener,
            pool.clone(),
            export.as_ref().map(|e| e.outputs().clone()),
            shutdown.clone(),
        ));
    }
    let mut builder = match server_tls {
        Some(tls) => lumen_proto::tonic::transport::Server::builder().tls_config(tls)?,
        None => lumen_proto::tonic::transport::Server::builder(),
    };
    let serve = builder
        .add_service(health)
        .add_service(lumen_rpc::raw::RawObserverServer::new(service))
        .serve_with_incoming_shutdown(
            lumen_rpc::serve::tcp_incoming(listener),
            lumen_rpc::serve::stopped(shutdown.clone()),
        );
    // Clients that keep their connection open get a moment, not forever.
    let result = lumen_rpc::serve::with_grace(serve, shutdown).await;
    if let Some(export) = export {
        export.stop().await;
    }
    pool.stop();
    Ok(result?)
}

/// A relay running in its own thread and runtime (for tests and the demo).
pub struct RelayHandle {
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<Result<(), RelayError>>>,
    pub address: SocketAddr,
}

impl RelayHandle {
    pub fn spawn(cfg: RelayConfig) -> RelayHandle {
        let (tx, rx) = watch::channel(false);
        let address = cfg.listen_address;
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|source| RelayError::Listen { address, source })?;
            rt.block_on(run(cfg, rx))
        });
        RelayHandle {
            shutdown: tx,
            thread: Some(thread),
            address,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    pub fn stop(mut self) -> Result<(), RelayError> {
        let _ = self.shutdown.send(true);
        self.thread
            .take()
            .expect("joined once")
            .join()
            .expect("relay thread panicked")
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pool's type, for callers that drive a relay without a socket.
pub type SharedPool = Arc<Pool>;
