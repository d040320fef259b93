//! Where the observer is reached: the Unix socket (always, plain) and TCP
//! (optionally with TLS), serving the Observer, Peer and health services,
//! and a client helper for the Unix socket.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use lumen_proto::observer::observer_server::ObserverServer;
use lumen_proto::tonic;
use lumen_proto::{tonic_health, HEALTH_SERVICE_NAME};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;

use super::service::ObserverService;
use crate::hub::Hub;

/// A gRPC channel to a server on a Unix socket (tonic dials only TCP by
/// itself): for the CLI, tests and benchmarks.
pub async fn connect_unix(path: &Path) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_path_buf();
    tonic::transport::Endpoint::from_static("http://lumen")
        .max_frame_size(lumen_proto::MAX_FRAME_SIZE)
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
}

/// Binds the Unix socket, replacing a stale socket file.
pub fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    UnixListener::bind(path)
}

pub async fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the Observer, Peer and health services until `shutdown` turns true.
pub async fn serve(
    hub: Arc<Hub>,
    peers: Arc<crate::peer::Peers>,
    unix: UnixListener,
    tcp: Option<TcpListener>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    serve_tls(hub, peers, unix, tcp, None, shutdown).await
}

/// [`serve`], with TLS (and mTLS, if it names client CAs) on the TCP
/// listener; the Unix socket stays local and plain.
pub async fn serve_tls(
    hub: Arc<Hub>,
    peers: Arc<crate::peer::Peers>,
    unix: UnixListener,
    tcp: Option<TcpListener>,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(HEALTH_SERVICE_NAME, tonic_health::ServingStatus::Serving)
        .await;
    let router = |mut builder: tonic::transport::Server| {
        builder
            .add_service(health.clone())
            .add_service(ObserverServer::new(ObserverService::new(hub.clone(), shutdown.clone())))
            .add_service(lumen_proto::peer::peer_server::PeerServer::new(
                crate::peer::PeerService::new(peers.clone(), shutdown.clone()),
            ))
    };
    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let shutdown_after = shutdown.clone();
    let on_unix = router(tonic::transport::Server::builder())
        .serve_with_incoming_shutdown(UnixListenerStream::new(unix), stop(shutdown.clone()));
    // The TCP listener may speak TLS; the same services either way.
    let tcp_builder = match tls {
        Some(tls) => tonic::transport::Server::builder().tls_config(tls)?,
        None => tonic::transport::Server::builder(),
    };
    let tcp_router = router(tcp_builder);
    let on_tcp = tcp.map(|tcp| tcp_router.serve_with_incoming_shutdown(nodelay(tcp), stop(shutdown.clone())));
    let both = async move {
        match on_tcp {
            Some(on_tcp) => tokio::try_join!(on_unix, on_tcp).map(|_| ()),
            None => on_unix.await,
        }
    };
    // A graceful shutdown waits for clients to hang up; a relay keeps its
    // connection open, so give them a moment and then go anyway.
    tokio::select! {
        served = both => served,
        _ = async {
            stop(shutdown_after.clone()).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    }
}

/// Accepted connections without Nagle's delay: a flow is a small write and
/// must not wait for the next (tonic sets TCP_NODELAY only on connections it
/// dials).
fn nodelay(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// How long open connections may take to close once the observer stops.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(500);
