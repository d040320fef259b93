//! Where the observer is reached: the Unix socket (always, plain) and TCP
//! (optionally with TLS), serving the Observer, Peer and health services,
//! and a client helper for the Unix socket.

use std::net::SocketAddr;
use std::sync::Arc;

use lumen_proto::tonic;
use lumen_rpc::serve::{stopped, tcp_incoming, with_grace};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;

use super::service::ObserverService;
use crate::hub::Hub;

pub use lumen_rpc::connect_unix;
pub use lumen_rpc::serve::bind_unix;

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
    let health = lumen_rpc::serve::health().await;
    let router = |mut builder: tonic::transport::Server| {
        builder
            .add_service(health.clone())
            .add_service(ObserverService::new(hub.clone(), shutdown.clone()).into_server())
            .add_service(lumen_proto::peer::peer_server::PeerServer::new(
                crate::peer::PeerService::new(peers.clone(), shutdown.clone()),
            ))
    };
    let on_unix = router(tonic::transport::Server::builder())
        .serve_with_incoming_shutdown(UnixListenerStream::new(unix), stopped(shutdown.clone()));
    // The TCP listener may speak TLS; the same services either way.
    let tcp_builder = match tls {
        Some(tls) => tonic::transport::Server::builder().tls_config(tls)?,
        None => tonic::transport::Server::builder(),
    };
    let tcp_router = router(tcp_builder);
    let on_tcp = tcp.map(|tcp| tcp_router.serve_with_incoming_shutdown(tcp_incoming(tcp), stopped(shutdown.clone())));
    let both = async move {
        match on_tcp {
            Some(on_tcp) => tokio::try_join!(on_unix, on_tcp).map(|_| ()),
            None => on_unix.await,
        }
    };
    with_grace(both, shutdown).await
}
