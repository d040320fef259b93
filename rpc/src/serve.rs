//! What every Lumen server does alike (the observer's and the relay's):
//! bind its sockets, accept TCP without Nagle's delay, report health under
//! Hubble's service name, and stop when told, waiting a moment for clients
//! to hang up.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use lumen_proto::tonic::transport::server::TcpIncoming;
use lumen_proto::tonic_health::pb::health_server::{Health, HealthServer};
use lumen_proto::tonic_health::server::health_reporter;
use lumen_proto::tonic_health::ServingStatus;
use lumen_proto::HEALTH_SERVICE_NAME;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

/// How long open connections may take to close once a server stops: a
/// graceful shutdown waits for clients to hang up, and a relay or a
/// follower keeps its stream open.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Binds a Unix socket, creating its directory and replacing a stale
/// socket file.
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

/// Accepted connections without Nagle's delay: a flow is a small write and
/// must not wait for the next (tonic sets TCP_NODELAY only on connections
/// it dials).
pub fn tcp_incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The gRPC health service, reporting [`HEALTH_SERVICE_NAME`] (what Hubble's
/// clients ask for) as serving.
pub async fn health() -> HealthServer<impl Health> {
    let (reporter, service) = health_reporter();
    reporter
        .set_service_status(HEALTH_SERVICE_NAME, ServingStatus::Serving)
        .await;
    service
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Runs `serving` (a server started with [`stopped`] as its shutdown
/// signal) until it ends, or until [`SHUTDOWN_GRACE`] after `shutdown`
/// turned true, whichever is first.
pub async fn with_grace<E>(
    serving: impl Future<Output = Result<(), E>>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), E> {
    tokio::select! {
        served = serving => served,
        _ = async {
            stopped(shutdown).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_socket_file_is_replaced_and_its_directory_made() {
        let dir = std::env::temp_dir().join(format!("lumen-rpc-bind-{}", std::process::id()));
        let path = dir.join("a/b/observer.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            drop(bind_unix(&path).unwrap());
            assert!(path.exists(), "the socket file stays after the listener");
            let again = bind_unix(&path).unwrap();
            assert_eq!(again.local_addr().unwrap().as_pathname(), Some(path.as_path()));
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_will_not_end_is_left_after_the_grace() {
        let (tx, rx) = watch::channel(false);
        let never = std::future::pending::<Result<(), ()>>();
        let started = tokio::time::Instant::now();
        tx.send(true).unwrap();
        assert_eq!(with_grace(never, rx).await, Ok(()));
        assert_eq!(started.elapsed(), SHUTDOWN_GRACE);
    }
}
