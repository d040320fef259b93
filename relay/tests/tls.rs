//! Relay ↔ observer over mutual TLS: the happy path, and each certificate
//! problem reported as one (node NODE_ERROR, saying which certificate and
//! why). Certificates are made for the test with rcgen; the observer is its
//! real gRPC server over TCP, fed directly (no kernel needed).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lumen_observer::hub::Hub;
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::observer_client::ObserverClient;
use lumen_proto::observer::{GetFlowsRequest, GetNodesRequest, ServerStatusRequest};
use lumen_proto::relay::NodeState;
use lumen_relay::daemon::RelayTls;
use lumen_relay::{RelayConfig, RelayHandle};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use tokio::sync::watch;

const NAME: &str = "node1.lumen.local";

struct Pki {
    dir: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    Ca {
        cert: params.self_signed(&key).unwrap(),
        key,
    }
}

impl Pki {
    fn new(test: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("lumen-tls-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Pki { dir }
    }

    fn write(&self, name: &str, pem: String) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    }

    fn ca(&self, name: &str, ca: &Ca) -> PathBuf {
        self.write(&format!("{name}.pem"), ca.cert.pem())
    }

    /// A leaf certificate signed by `ca`: (cert file, key file).
    fn leaf(&self, name: &str, ca: &Ca, dns: &str, expired: bool) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![dns.to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
        (
            self.write(&format!("{name}.crt"), cert.pem()),
            self.write(&format!("{name}.key"), key.serialize_pem()),
        )
    }
}

/// An observer serving over TLS on 127.0.0.1, requiring a client
/// certificate from `client_ca`.
async fn node(cert: &Path, key: &Path, client_ca: &Path, dir: &Path) -> (SocketAddr, watch::Sender<bool>) {
    std::fs::create_dir_all(dir).unwrap();
    let hub = Hub::new("node1", 100);
    let unix = lumen_observer::server::bind_unix(&dir.join("observer.sock")).unwrap();
    let tcp = lumen_observer::server::bind_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let address = tcp.local_addr().unwrap();
    let tls = lumen_rpc::tls::server_config(cert, key, &[client_ca.to_path_buf()]).unwrap();
    let (stop, rx) = watch::channel(false);
    let peers = lumen_observer::peer::Peers::new(vec![]);
    tokio::spawn(lumen_observer::server::serve_tls(
        hub,
        peers,
        unix,
        Some(tcp),
        Some(tls),
        rx,
    ));
    (address, stop)
}

fn relay(peer: SocketAddr, tls: RelayTls) -> RelayHandle {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    RelayHandle::spawn(RelayConfig {
        listen_address: listen,
        peers: vec![peer.to_string()],
        peer_service: None,
        sort_buffer_len_max: 100,
        sort_buffer_drain_timeout: Duration::from_millis(50),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        dial_timeout: Duration::from_millis(500),
        export: Default::default(),
        otlp: Default::default(),
        metrics_listen_address: None,
        tls,
    })
}

/// The relay's view of the node once it has tried: (state, message).
async fn node_state(relay: &RelayHandle) -> (i32, String) {
    let mut c = loop {
        if let Ok(c) = ObserverClient::connect(format!("http://{}", relay.address)).await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for _ in 0..100 {
        let nodes = c.get_nodes(GetNodesRequest {}).await.unwrap().into_inner().nodes;
        let n = &nodes[0];
        if n.state != NodeState::NodeUnavailable as i32 {
            let mut follow = c
                .get_flows(GetFlowsRequest {
                    follow: true,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            // The stream says the same, once it has seen the node as GetNodes did.
            let mut seen = Vec::new();
            loop {
                let r = tokio::time::timeout(Duration::from_secs(5), follow.message())
                    .await
                    .unwrap_or_else(|_| panic!("no status {} within 5 s; saw {seen:?}", n.state))
                    .unwrap()
                    .unwrap();
                if let Some(ResponseTypes::NodeStatus(s)) = r.response_types {
                    if s.state_change == n.state {
                        return (n.state, s.message);
                    }
                    seen.push((s.state_change, s.message));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the relay never reached the node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_connects_and_every_certificate_problem_is_named() {
    let pki = Pki::new("mtls");
    let (root, other) = (ca("lumen test CA"), ca("some other CA"));
    let root_file = pki.ca("root", &root);
    let other_file = pki.ca("other", &other);
    let (server_crt, server_key) = pki.leaf("server", &root, NAME, false);
    let (expired_crt, expired_key) = pki.leaf("expired", &root, NAME, true);
    let (client_crt, client_key) = pki.leaf("client", &root, "relay.lumen.local", false);
    let tls = |ca: &PathBuf, name: &str, client: bool| RelayTls {
        client: lumen_rpc::TlsArgs {
            tls: true,
            tls_ca_cert_files: vec![ca.clone()],
            tls_client_cert_file: client.then(|| client_crt.clone()),
            tls_client_key_file: client.then(|| client_key.clone()),
            tls_server_name: Some(name.to_string()),
        },
        ..Default::default()
    };
    let (address, _stop) = node(&server_crt, &server_key, &root_file, &pki.dir.join("a")).await;

    // Everything right: connected, and the API answers through the relay.
    let ok = relay(address, tls(&root_file, NAME, true));
    assert_eq!(node_state(&ok).await, (NodeState::NodeConnected as i32, String::new()));
    let mut c = ObserverClient::connect(format!("http://{}", ok.address)).await.unwrap();
    let s = c.server_status(ServerStatusRequest {}).await.unwrap().into_inner();
    assert_eq!((s.num_connected_nodes, s.max_flows), (Some(1), 100));

    let error = NodeState::NodeError as i32;
    let unknown_ca = relay(address, tls(&other_file, NAME, true));
    assert_eq!(
        node_state(&unknown_ca).await,
        (
            error,
            format!("TLS with {address}: the server's certificate was refused: it is signed by a CA this client does not trust")
        )
    );
    let wrong_name = relay(address, tls(&root_file, "node2.lumen.local", true));
    assert_eq!(
        node_state(&wrong_name).await,
        (
            error,
            format!("TLS with {address}: the server's certificate was refused: it is not valid for the server name asked for")
        )
    );
    let no_client_cert = relay(address, tls(&root_file, NAME, false));
    assert_eq!(
        node_state(&no_client_cert).await,
        (
            error,
            format!(
                "TLS with {address}: this client's certificate was refused: the server requires one and none was sent"
            )
        )
    );
    let (expired_address, _stop2) = node(&expired_crt, &expired_key, &root_file, &pki.dir.join("b")).await;
    let expired = relay(expired_address, tls(&root_file, NAME, true));
    assert_eq!(
        node_state(&expired).await,
        (
            error,
            format!("TLS with {expired_address}: the server's certificate was refused: it has expired")
        )
    );
}
