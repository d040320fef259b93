//! An observer's real gRPC server fed datapath records by a producer thread
//! at a steady rate, and a real relay following it: the stream that the
//! `lumen top` and web UI benchmarks put their client under. Everything
//! stops when it is dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser as _;
use lumen_observer::hub::Hub;
use lumen_observer::parser::{EndpointMeta, Snapshot};
use lumen_probes::abi;
use lumen_relay::{RelayConfig, RelayHandle};

/// Pod `p`'s IPv4 address: 10.9.x.y, 250 a /24.
pub fn pod_ip(p: u32) -> [u8; 4] {
    [10, 9, (p / 250) as u8, (p % 250 + 1) as u8]
}

/// `pods` pods, pod `p` of workload `svc<app>` (`app_of(p)`, identity
/// 1000 + app) in namespace `team<app % namespaces>`, by address and id.
pub fn pods(pods: u32, app_of: impl Fn(u32) -> u32, namespaces: u32) -> Snapshot {
    let mut s = Snapshot::default();
    for p in 0..pods {
        let app = app_of(p);
        let ns = format!("team{}", app % namespaces);
        let meta = Arc::new(EndpointMeta {
            id: p + 1,
            identity: 1000 + app,
            namespace: ns.clone(),
            pod_name: format!("svc{app}-5c8d7f9b4-{p:05}"),
            labels: vec![
                format!("k8s:app=svc{app}"),
                format!("k8s:io.kubernetes.pod.namespace={ns}"),
            ],
            ..Default::default()
        });
        s.endpoints.insert(std::net::IpAddr::from(pod_ip(p)), meta.clone());
        s.endpoints_by_id.insert(p + 1, meta);
    }
    s
}

/// Record `i` at `now_ns`: pod `src` (identity `ids.0`) to pod `dst`
/// (`ids.1`) on TCP 8080, seen arriving at `dst`, established; every 50th
/// a SYN dropped by policy.
pub fn tcp_record(i: u64, now_ns: u64, (src, dst): (u32, u32), ids: (u32, u32)) -> abi::Event {
    let mut ev = abi::Event {
        timestamp_ns: now_ns,
        endpoint_id: dst + 1,
        src_identity: ids.0,
        dst_identity: ids.1,
        family: 4,
        proto: 6,
        direction: abi::DIR_INGRESS,
        obs_point: abi::OBS_TO_ENDPOINT,
        verdict: abi::VERDICT_FORWARDED,
        ct_state: abi::CT_ESTABLISHED,
        sport: 30_000 + (i % 20_000) as u16,
        dport: 8080,
        tcp_flags: 0x18,
        pkt_len: 66,
        ..Default::default()
    };
    ev.saddr[..4].copy_from_slice(&pod_ip(src));
    ev.daddr[..4].copy_from_slice(&pod_ip(dst));
    if i.is_multiple_of(50) {
        ev.verdict = abi::VERDICT_DROPPED;
        ev.drop_reason = abi::DROP_POLICY_DENIED;
        ev.ct_state = abi::CT_NEW;
        ev.tcp_flags = 0x02;
    }
    ev
}

pub struct Stream {
    pub hub: Arc<Hub>,
    /// Where the relay listens.
    pub relay: SocketAddr,
    stop: Arc<AtomicBool>,
    producer: Option<JoinHandle<()>>,
    relay_handle: Option<RelayHandle>,
    server_stop: tokio::sync::watch::Sender<bool>,
    dir: PathBuf,
}

impl Stream {
    /// `rate` records a second from `record(i, now_ns)`, a batch every
    /// 10 ms, into a hub of 1,000,000 flows enriched with `snapshot`; the
    /// server runs on `rt`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        snapshot: Snapshot,
        rate: u64,
        record: fn(u64, u64) -> abi::Event,
    ) -> Stream {
        let hub = Hub::new("bench-node", 1_000_000);
        hub.publish(snapshot);
        let dir = std::env::temp_dir().join(format!("lumen-bench-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (server_stop, stop_rx) = tokio::sync::watch::channel(false);
        let observer: SocketAddr = rt.block_on(async {
            let unix = lumen_observer::server::bind_unix(&dir.join("observer.sock")).unwrap();
            let tcp = lumen_observer::server::bind_tcp("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let address = tcp.local_addr().unwrap();
            let peers = lumen_observer::peer::Peers::new(vec![]);
            tokio::spawn(lumen_observer::server::serve(
                hub.clone(),
                peers,
                unix,
                Some(tcp),
                stop_rx,
            ));
            address
        });
        let relay = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let relay_handle = RelayHandle::spawn(RelayConfig::parse_from([
            "lumen-relay",
            "--listen-address",
            &relay.to_string(),
            "--peer",
            &observer.to_string(),
        ]));
        let stop = Arc::new(AtomicBool::new(false));
        let producer = std::thread::spawn({
            let (hub, stop) = (hub.clone(), stop.clone());
            move || {
                let start = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
                    hub.push((n..due).map(|i| record(i, now)));
                    n = due;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        Stream {
            hub,
            relay,
            stop,
            producer: Some(producer),
            relay_handle: Some(relay_handle),
            server_stop,
            dir,
        }
    }

    /// Flows the observer has stored so far.
    pub fn seen_flows(&self) -> u64 {
        self.hub.status().seen_flows
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(producer) = self.producer.take() {
            let _ = producer.join();
        }
        drop(self.relay_handle.take());
        let _ = self.server_stop.send(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
