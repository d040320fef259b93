//! The relay's `/metrics`, scraped over HTTP from a relay in front of real
//! observers' gRPC servers (in-process, fed with known records; no root):
//! exact values for the node states, flows per node, the sort buffer, the
//! out-of-order count and the open streams.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser as _;
use lumen_observer::hub::Hub;
use lumen_probes::abi;
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::{GetFlowsRequest, GetFlowsResponse, GetNodesRequest, ServerStatusRequest};
use lumen_proto::tonic::transport::Channel;
use lumen_proto::tonic::Streaming;
use lumen_relay::{RelayConfig, RelayHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

#[path = "../../observer/tests/support/prometheus.rs"]
mod prometheus_support;

struct Node {
    hub: Arc<Hub>,
    address: SocketAddr,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn start_node(name: &str) -> Node {
    let hub = Hub::new(name, 1024);
    let dir = tempfile::Builder::new()
        .prefix("lumen-relay-metrics-")
        .tempdir()
        .unwrap();
    let unix = lumen_observer::server::bind_unix(&dir.path().join("observer.sock")).unwrap();
    let tcp = lumen_observer::server::bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let address = tcp.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let peers = lumen_observer::peer::Peers::new(vec![]);
    tokio::spawn(lumen_observer::server::serve(hub.clone(), peers, unix, Some(tcp), rx));
    Node {
        hub,
        address,
        _stop: stop,
        _dir: dir,
    }
}

/// A forwarded TCP record at `timestamp_ns` (wall clock).
fn record(timestamp_ns: u64) -> abi::Event {
    let mut ev = abi::Event {
        timestamp_ns,
        family: 4,
        proto: 6,
        direction: abi::DIR_INGRESS,
        obs_point: abi::OBS_TO_ENDPOINT,
        verdict: abi::VERDICT_FORWARDED,
        sport: 30_000,
        dport: 8080,
        tcp_flags: 0x18,
        pkt_len: 66,
        ..Default::default()
    };
    ev.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
    ev.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
    ev
}

fn wall_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET /metrics`, the body.
async fn scrape(address: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(address).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// The series of `name` (all label sets), as lines.
fn series(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .map(String::from)
        .collect()
}

/// Scrapes until every line of `want` is there (10 s at most).
async fn until_scraped(address: SocketAddr, want: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(address).await;
        if want.iter().all(|w| text.lines().any(|l| l == *w)) {
            return text;
        }
        assert!(Instant::now() < deadline, "never {want:?} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A relay of `peers`, serving on a free port and `/metrics` on another,
/// with `extra` flags: the relay and the two addresses.
fn relay(peers: &[SocketAddr], extra: &[&str]) -> (RelayHandle, SocketAddr, SocketAddr) {
    let (listen, metrics) = (free_port(), free_port());
    let (listen_arg, metrics_arg) = (listen.to_string(), metrics.to_string());
    let peers = peers.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
    let mut args = vec![
        "lumen-relay",
        "--listen-address",
        &listen_arg,
        "--peer",
        &peers,
        "--metrics-listen-address",
        &metrics_arg,
    ];
    args.extend_from_slice(extra);
    (RelayHandle::spawn(RelayConfig::parse_from(args)), listen, metrics)
}

/// A node that is down: an address whose port this test holds, bound but
/// not listening, so that connecting is refused. A port only picked and
/// let go (`free_port`) may be taken by another test's server meanwhile,
/// and a relay connecting to that waits on it: a flow then came too late.
struct Down {
    address: SocketAddr,
    _held: tokio::net::TcpSocket,
}

fn down_node() -> Down {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    Down {
        address: socket.local_addr().unwrap(),
        _held: socket,
    }
}

/// Nodes a (5 flows stored) and b (3, interleaved in time), and a third
/// that is down.
async fn two_nodes_and_one_down() -> (Node, Node, Down) {
    let (a, b) = (start_node("a").await, start_node("b").await);
    let t0 = wall_ns() - 10_000_000_000;
    a.hub.push((0..5).map(|i| record(t0 + i * 1_000)));
    b.hub.push((0..3).map(|i| record(t0 + 500 + i * 1_000)));
    (a, b, down_node())
}

async fn connect(address: SocketAddr) -> ObserverClient<Channel> {
    for _ in 0..200 {
        if let Ok(c) = ObserverClient::connect(format!("http://{address}")).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing listens on {address}")
}

/// The next flow's time in `stream`, skipping node status events.
async fn next_flow_ns(stream: &mut Streaming<GetFlowsResponse>) -> i128 {
    loop {
        let r = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a flow within 10 s")
            .unwrap()
            .expect("the stream goes on");
        if let Some(ResponseTypes::Flow(_)) = r.response_types {
            let t = r.time.unwrap();
            return i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
        }
    }
}

/// Nodes a and b up, a third down; a sort buffer of one flow whose window
/// never runs out, so that flows leave only when the buffer is full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_serves_exact_node_states_flow_counts_and_stream_gauges() {
    let (a, b, down_node) = two_nodes_and_one_down().await;
    let down = down_node.address;
    let (relay, listen, metrics) = relay(
        &[a.address, b.address, down],
        &[
            "--sort-buffer-len-max",
            "1",
            "--sort-buffer-drain-timeout",
            "1h",
            "--initial-backoff",
            "100ms",
            "--max-backoff",
            "200ms",
        ],
    );
    let mut client = connect(listen).await;

    // Two nodes connected, one refusing connections between attempts.
    let text = until_scraped(
        metrics,
        &[
            "hubble_relay_pool_peer_connection_status{status=\"READY\"} 2",
            "hubble_relay_pool_peer_connection_status{status=\"TRANSIENT_FAILURE\"} 1",
        ],
    )
    .await;
    assert_eq!(
        series(&text, "hubble_relay_pool_peer_connection_status"),
        [
            "hubble_relay_pool_peer_connection_status{status=\"CONNECTING\"} 0",
            "hubble_relay_pool_peer_connection_status{status=\"IDLE\"} 0",
            "hubble_relay_pool_peer_connection_status{status=\"NIL_CONNECTION\"} 0",
            "hubble_relay_pool_peer_connection_status{status=\"READY\"} 2",
            "hubble_relay_pool_peer_connection_status{status=\"SHUTDOWN\"} 0",
            "hubble_relay_pool_peer_connection_status{status=\"TRANSIENT_FAILURE\"} 1",
        ]
    );
    assert!(
        series(&text, "lumen_relay_flows_total").is_empty(),
        "no flows asked for yet"
    );
    assert_eq!(series(&text, "lumen_relay_clients"), ["lumen_relay_clients 0"]);

    // A non-follow query: every stored flow, counted per node.
    let mut history = client
        .get_flows(GetFlowsRequest {
            number: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut flows = 0;
    while let Some(r) = history.message().await.unwrap() {
        flows += usize::from(matches!(r.response_types, Some(ResponseTypes::Flow(_))));
    }
    assert_eq!(flows, 8);
    drop(history);
    let counted = [
        "lumen_relay_flows_total{node=\"a\"} 5",
        "lumen_relay_flows_total{node=\"b\"} 3",
        "lumen_relay_flows_out_of_order_total 0",
        "lumen_relay_clients 0",
    ];
    let text = until_scraped(metrics, &counted).await;
    assert_eq!(series(&text, "lumen_relay_flows_total"), &counted[..2]);

    // Status calls read; they must not move a flow or loss counter.
    for _ in 0..3 {
        client.server_status(ServerStatusRequest {}).await.unwrap();
        client.get_nodes(GetNodesRequest {}).await.unwrap();
    }
    let after = scrape(metrics).await;
    for name in [
        "lumen_relay_flows_total",
        "lumen_relay_flows_out_of_order_total",
        "lumen_relay_node_stream_errors_total",
    ] {
        assert_eq!(series(&after, name), series(&text, name), "{name} moved");
    }

    // A follow stream: counted while open; its buffer holds one flow.
    let mut follow = client
        .get_flows(GetFlowsRequest {
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The opening node status says the stream hears from a and b.
    tokio::time::timeout(Duration::from_secs(10), follow.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    until_scraped(metrics, &["lumen_relay_clients 1", "lumen_relay_sort_buffer_flows 0"]).await;
    let t1 = wall_ns();
    a.hub.push([record(t1 + 2_000)]);
    until_scraped(metrics, &["lumen_relay_sort_buffer_flows 1"]).await;
    // a@+3 fills the buffer: a@+2 leaves, in order.
    a.hub.push([record(t1 + 3_000)]);
    assert_eq!(next_flow_ns(&mut follow).await, i128::from(t1 + 2_000));
    // b@+1 comes after a@+2 left: the full buffer passes it on out of order.
    b.hub.push([record(t1 + 1_000)]);
    assert_eq!(next_flow_ns(&mut follow).await, i128::from(t1 + 1_000));
    until_scraped(
        metrics,
        &[
            "lumen_relay_flows_out_of_order_total 1",
            "lumen_relay_sort_buffer_flows 1",
            "lumen_relay_clients 1",
            "lumen_relay_flows_total{node=\"a\"} 7",
            "lumen_relay_flows_total{node=\"b\"} 4",
        ],
    )
    .await;

    // The client leaves: its stream and what its buffer held are no more.
    drop(follow);
    until_scraped(metrics, &["lumen_relay_clients 0", "lumen_relay_sort_buffer_flows 0"]).await;
    relay.stop().unwrap();
}

#[test]
fn the_metrics_address_takes_host_port_or_port_only_and_is_off_by_default() {
    let parse = |args: &[&str]| {
        RelayConfig::try_parse_from(["lumen-relay", "--peer", "10.0.0.1:4244"].iter().chain(args))
            .map(|c| c.metrics_listen_address)
    };
    assert_eq!(parse(&[]).unwrap(), None);
    assert_eq!(
        parse(&["--metrics-listen-address", ":9966"]).unwrap(),
        Some("0.0.0.0:9966".parse().unwrap())
    );
    assert_eq!(
        parse(&["--metrics-listen-address", "127.0.0.1:9966"]).unwrap(),
        Some("127.0.0.1:9966".parse().unwrap())
    );
    let err = parse(&["--metrics-listen-address", "9966"]).unwrap_err().to_string();
    assert!(err.contains("\"9966\" is not HOST:PORT or :PORT"), "{err}");
}

/// The relay's panels of `dashboards/*.json` (those reading `hubble_relay_*`
/// and `lumen_relay_*`; the observer's test runs the others) against a real
/// Prometheus scraping this relay: each must parse and return data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's prometheus package: run scripts/test.sh"]
async fn every_relay_dashboard_query_returns_data_from_a_real_prometheus() {
    use prometheus_support::{dashboard_queries, reads_relay, Prometheus};
    let (a, b, down_node) = two_nodes_and_one_down().await;
    let down = down_node.address;
    let (relay, listen, metrics) = relay(&[a.address, b.address, down], &[]);
    // A client following: the flows per node and the client gauge have data.
    let mut client = connect(listen).await;
    let mut follow = client
        .get_flows(GetFlowsRequest {
            number: 100,
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    next_flow_ns(&mut follow).await;
    until_scraped(
        metrics,
        &["lumen_relay_flows_total{node=\"a\"} 5", "lumen_relay_clients 1"],
    )
    .await;

    let queries = dashboard_queries(reads_relay);
    assert_eq!(queries.len(), 5, "{queries:#?}");
    let failures = tokio::task::spawn_blocking(move || {
        let prometheus = Prometheus::start(&[("lumen-relay", metrics)], free_port(), None);
        prometheus.failures(&queries, Instant::now() + Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert!(
        failures.is_empty(),
        "relay dashboard queries failed:\n{}",
        failures.join("\n")
    );
    drop(follow);
    relay.stop().unwrap();
}

/// `--export-file-path` on the relay: the cluster's flows, merged in time
/// order from every node, one Hubble-style line each, with each flow's node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_exports_the_clusters_flows_in_time_order() {
    let (a, b) = (start_node("a").await, start_node("b").await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.log");
    let (relay, listen, metrics) = relay(&[a.address, b.address], &["--export-file-path", file.to_str().unwrap()]);
    // The export's own follow stream is open and hears from both nodes.
    connect(listen).await;
    until_scraped(
        metrics,
        &[
            "lumen_relay_clients 1",
            "hubble_relay_pool_peer_connection_status{status=\"READY\"} 2",
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = wall_ns();
    a.hub.push([record(t + 1_000), record(t + 3_000)]);
    b.hub.push([record(t + 2_000)]);

    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if lines.len() >= 3 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let nodes: Vec<&str> = lines.iter().map(|l| l["node_name"].as_str().unwrap()).collect();
    assert_eq!(nodes, ["a", "b", "a"], "{lines:#?}");
    for l in &lines {
        assert_eq!(l["flow"]["node_name"], l["node_name"]);
        assert_eq!(l["flow"]["time"], l["time"]);
        assert_eq!(l["flow"]["l4"]["TCP"]["destination_port"], 8080);
    }
    until_scraped(
        metrics,
        &[
            "lumen_exporter_exported_total{exporter=\"static\"} 3",
            "lumen_exporter_dropped_total{exporter=\"static\",reason=\"queue_full\"} 0",
        ],
    )
    .await;
    relay.stop().unwrap();
}
