//! Connecting to a server: the TLS flags, Lumen's HTTP/2 settings, and the
//! relay-then-local fallback.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::tls::{ClientTls, TlsFileError};
use lumen_proto::tonic::transport::{Channel, Endpoint, Uri};

use crate::target::{Target, TargetError};
use crate::{error_chain, DEFAULT_OBSERVER, DEFAULT_RELAY};

/// The TLS flags of every binary that talks to an observer or a relay, as
/// `hubble` names them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Speak TLS to the server (like hubble's --tls).
    #[arg(long, env = "LUMEN_TLS")]
    pub tls: bool,
    /// CA certificates (PEM, comma-separated) the server's certificate must chain to.
    #[arg(long, env = "LUMEN_TLS_CA_CERT_FILES", value_delimiter = ',', requires = "tls")]
    pub tls_ca_cert_files: Vec<PathBuf>,
    /// Client certificate (PEM) for a server that requires one (mTLS).
    #[arg(long, env = "LUMEN_TLS_CLIENT_CERT_FILE", requires_all = ["tls", "tls_client_key_file"])]
    pub tls_client_cert_file: Option<PathBuf>,
    #[arg(long, env = "LUMEN_TLS_CLIENT_KEY_FILE", requires_all = ["tls", "tls_client_cert_file"])]
    pub tls_client_key_file: Option<PathBuf>,
    /// The name the server's certificate must be valid for (default: the server's host).
    #[arg(long, env = "LUMEN_TLS_SERVER_NAME", requires = "tls")]
    pub tls_server_name: Option<String>,
}

impl TlsArgs {
    /// The client TLS and the name to check the server against, if TLS is on.
    pub fn client(&self, host: &str) -> Option<(ClientTls, String)> {
        let name = self.tls_server_name.clone().unwrap_or_else(|| host.to_string());
        self.client_tls().map(|tls| (tls, name))
    }

    /// The client TLS, if TLS is on; the name to check is the caller's
    /// (a relay has one per node).
    pub fn client_tls(&self) -> Option<ClientTls> {
        self.tls.then(|| ClientTls {
            ca_files: self.tls_ca_cert_files.clone(),
            cert_file: self.tls_client_cert_file.clone(),
            key_file: self.tls_client_key_file.clone(),
        })
    }
}

/// Why no channel could be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    TlsFile(#[from] TlsFileError),
    #[error("TLS with {server}: {reason}")]
    Tls { server: String, reason: String },
    #[error(
        "cannot reach the observer at {server} (is lumen-observer running? try --server or LUMEN_SERVER): {cause}"
    )]
    Unreachable { server: String, cause: String },
    #[error(
        "cannot reach a relay at {DEFAULT_RELAY} or an observer at {DEFAULT_OBSERVER} (is lumen-relay or \
         lumen-observer running? try --server or LUMEN_SERVER): {cause}"
    )]
    NoDefault { cause: String },
}

/// How much a server may send before the client has taken it, per stream
/// and per connection (HTTP/2 flow control). The defaults (64 KiB) hold a
/// node to about a hundred flows per round trip.
const STREAM_WINDOW: u32 = 1 << 20;
const CONNECTION_WINDOW: u32 = 4 << 20;

/// Lumen's HTTP/2 settings for every client of an observer or a relay (the
/// CLI, the relay towards its nodes, the UI): no Nagle delay, 1 MiB frames,
/// windows with room for a relay's stream of many nodes.
pub fn http2(endpoint: Endpoint) -> Endpoint {
    endpoint
        .tcp_nodelay(true)
        .max_frame_size(lumen_proto::MAX_FRAME_SIZE)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
}

/// The innermost cause: tonic's transport errors repeat their cause in
/// their own message.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A channel to an observer's Unix socket.
pub async fn connect_unix(path: &Path) -> Result<Channel, lumen_proto::tonic::transport::Error> {
    let path = path.to_path_buf();
    http2(Endpoint::from_static("http://lumen"))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
}

/// A channel to `target`, with TLS if `tls` says so; `timeout` bounds the
/// TCP connect.
pub async fn connect(target: &Target, tls: &TlsArgs, timeout: Duration) -> Result<Channel, ConnectError> {
    let unreachable = |e: &(dyn std::error::Error + 'static)| ConnectError::Unreachable {
        server: target.to_string(),
        cause: root_cause(e),
    };
    let (address, host) = match target {
        Target::Unix(path) => return connect_unix(path).await.map_err(|e| unreachable(&e)),
        Target::Tcp { address, host } => (address, host),
    };
    let tls = tls.client(host);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
        .map_err(|_| TargetError {
            given: target.to_string(),
            reason: "not a valid URI authority",
        })?
        .connect_timeout(timeout);
    endpoint = http2(endpoint);
    if let Some((tls, name)) = tls {
        let config = tls.config(&name)?;
        endpoint = endpoint.tls_config(config).map_err(|e| ConnectError::Tls {
            server: target.to_string(),
            reason: e.to_string(),
        })?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| match crate::tls::explain(&error_chain(&e)) {
            Some(reason) => ConnectError::Tls {
                server: target.to_string(),
                reason,
            },
            None => unreachable(&e),
        })
}

/// The server `given` (`--server`), or when it is empty the relay on
/// [`DEFAULT_RELAY`] if one answers within half a second, else the local
/// observer. Returns the channel and the server it reached.
pub async fn connect_default(given: &str, tls: &TlsArgs) -> Result<(Channel, Target), ConnectError> {
    if !given.is_empty() {
        let target = Target::parse(given)?;
        let channel = connect(&target, tls, Duration::from_secs(5)).await?;
        return Ok((channel, target));
    }
    let relay = Target::parse(DEFAULT_RELAY).expect("a valid default");
    if let Ok(channel) = connect(&relay, tls, Duration::from_millis(500)).await {
        return Ok((channel, relay));
    }
    let observer = Target::parse(DEFAULT_OBSERVER).expect("a valid default");
    match connect(&observer, tls, Duration::from_secs(5)).await {
        Ok(channel) => Ok((channel, observer)),
        Err(ConnectError::Unreachable { cause, .. }) => Err(ConnectError::NoDefault { cause }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_absent_socket_is_unreachable_with_the_reason() {
        let target = Target::parse("unix:///nonexistent/observer.sock").unwrap();
        let err = connect(&target, &TlsArgs::default(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot reach the observer at unix:///nonexistent/observer.sock (is lumen-observer running? try \
             --server or LUMEN_SERVER): No such file or directory (os error 2)"
        );
    }

    #[tokio::test]
    async fn a_refused_port_is_unreachable() {
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = Target::parse(&format!("127.0.0.1:{port}")).unwrap();
        let err = connect(&target, &TlsArgs::default(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ConnectError::Unreachable { cause, .. } if cause.contains("Connection refused")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_missing_certificate_file_is_named() {
        let target = Target::parse("127.0.0.1:1").unwrap();
        let tls = TlsArgs {
            tls: true,
            tls_ca_cert_files: vec!["/nonexistent/ca.pem".into()],
            ..Default::default()
        };
        let err = connect(&target, &tls, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/ca.pem: cannot read the CA certificate: No such file or directory (os error 2)"
        );
    }
}
