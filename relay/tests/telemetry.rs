//! The relay's own counters move when the pool really fails, retries,
//! loses and regains a node (real sockets, the observer's own gRPC server,
//! no kernel needed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lumen_observer::hub::Hub;
use lumen_proto::relay::NodeState;
use lumen_relay::pool::{Discovery, Pool, Timing};
use lumen_relay::telemetry::Telemetry;
use tokio::sync::watch;

const FAST: Timing = Timing {
    initial_backoff: Duration::from_millis(20),
    max_backoff: Duration::from_millis(50),
    connect_timeout: Duration::from_millis(500),
    check_interval: Duration::from_millis(50),
};

/// An observer's gRPC server on `address`, until the sender is dropped.
async fn start_node(address: SocketAddr, dir: &std::path::Path) -> (SocketAddr, watch::Sender<bool>) {
    let _ = std::fs::remove_file(dir.join("observer.sock"));
    let unix = lumen_observer::server::bind_unix(&dir.join("observer.sock")).unwrap();
    let tcp = lumen_observer::server::bind_tcp(address).await.unwrap();
    let address = tcp.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let peers = lumen_observer::peer::Peers::new(vec![]);
    tokio::spawn(lumen_observer::server::serve(
        Hub::new("n1", 10),
        peers,
        unix,
        Some(tcp),
        rx,
    ));
    (address, stop)
}

/// Waits until `done` holds of the pool's counters (at most 10 s).
async fn until(telemetry: &Telemetry, done: impl Fn(&Telemetry) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(telemetry) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", telemetry.snapshot());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_refuses_connections_counts_failures_and_retries() {
    let address = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let pool = Pool::new(FAST);
    pool.start(Discovery::Static(vec![address.clone()]));
    let t = pool.telemetry().clone();
    until(&t, |t| {
        t.peer_connect_failures.get(&address) >= 3 && t.peer_retries.get(&address) >= 3
    })
    .await;
    pool.stop();
    assert_eq!(t.peer_reconnects.get(&address), 0);
    assert_eq!(t.peer_disconnects.get(&address), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_goes_away_and_comes_back_counts_one_disconnect_and_one_reconnect() {
    let dir = std::env::temp_dir().join(format!("lumen-relay-telemetry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (address, stop) = start_node("127.0.0.1:0".parse().unwrap(), &dir).await;
    let peer = address.to_string();
    let pool: Arc<Pool> = Pool::new(FAST);
    pool.start(Discovery::Static(vec![peer.clone()]));
    let t = pool.telemetry().clone();
    let state = |pool: &Pool| pool.peers().get(&peer).map(|p| p.state);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state(&pool) != Some(NodeState::NodeConnected) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        (
            t.peer_connect_failures.get(&peer),
            t.peer_disconnects.get(&peer),
            t.peer_reconnects.get(&peer)
        ),
        (0, 0, 0),
        "connecting the first time is no failure and no reconnect"
    );

    stop.send(true).unwrap();
    until(&t, |t| t.peer_disconnects.get(&peer) == 1).await;
    let (_, _stop) = start_node(address, &dir).await;
    until(&t, |t| t.peer_reconnects.get(&peer) == 1).await;
    assert_eq!(t.peer_disconnects.get(&peer), 1);
    assert!(t.peer_retries.get(&peer) >= 1);
    pool.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
