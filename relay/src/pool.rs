//! The relay's connections: one per node's observer, found through a static
//! list or through an observer's `peer.Peer/Notify`, each kept up by its own
//! task that reconnects with exponential backoff and jitter. Everyone who
//! needs the current set watches it (`Pool::subscribe`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lumen_proto::observer::{observer_client::ObserverClient, GetNodesRequest};
use lumen_proto::peer::{peer_client::PeerClient, ChangeNotificationType, NotifyRequest};
use lumen_proto::relay::NodeState;
use lumen_proto::tonic::transport::{Channel, Endpoint};
use lumen_rpc::telemetry::InternalEvent;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::RelayMetrics;
use crate::telemetry::{
    PeerConnectFailed, PeerDisconnected, PeerDiscoveryFailed, PeerReconnected, PeerRetryScheduled, Telemetry,
};

/// How the pool reconnects.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// First wait after a failure; it doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub connect_timeout: Duration,
    /// How often a connected node is checked.
    pub check_interval: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            check_interval: Duration::from_secs(1),
        }
    }
}

/// The error of a node whose first connection attempt is under way.
pub const NOT_CONNECTED_YET: &str = "not connected yet";

/// One node as the relay sees it.
#[derive(Clone, Debug)]
pub struct PeerView {
    /// The node's name (its address until the node told it).
    pub name: String,
    pub address: String,
    pub state: NodeState,
    pub version: String,
    /// Why it is not connected.
    pub error: Option<String>,
    /// Set while connected.
    pub channel: Option<Channel>,
}

/// Every node, by address.
pub type Peers = Arc<BTreeMap<String, PeerView>>;

/// Where the nodes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discovery {
    Static(Vec<String>),
    /// An observer's address, asked for the cluster's nodes.
    PeerService(String),
}

pub struct Pool {
    peers: watch::Sender<Peers>,
    /// TLS towards observers, and a server name that overrides theirs.
    tls: std::sync::Mutex<(Option<lumen_rpc::tls::ClientTls>, Option<String>)>,
    /// The name each node's certificate must be valid for, by address.
    server_names: std::sync::Mutex<BTreeMap<String, String>>,
    tasks: std::sync::Mutex<BTreeMap<String, JoinHandle<()>>>,
    discovery: std::sync::Mutex<Option<JoinHandle<()>>>,
    timing: Timing,
    telemetry: Arc<Telemetry>,
    metrics: Arc<RelayMetrics>,
}

/// Exponential backoff with ±20 % jitter, so that many relays (or many
/// nodes coming back at once) do not retry in lockstep.
pub struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
    state: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            next: initial,
            initial,
            max,
            state: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        // xorshift64: plenty for jitter, no dependency.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let jitter = 0.8 + 0.4 * (self.state % 1_000) as f64 / 1_000.0;
        let wait = self.next.mul_f64(jitter);
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

fn seed(text: &str) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    text.bytes().fold(t ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The connection settings of every node's endpoint: Lumen's HTTP/2
/// settings (`lumen_rpc::http2`) and the dial timeout.
fn configure(e: Endpoint, timing: &Timing) -> Endpoint {
    lumen_rpc::http2(e.connect_timeout(timing.connect_timeout))
}

/// `host:port` → a plain HTTP/2 endpoint.
pub fn endpoint(address: &str, timing: &Timing) -> Result<Endpoint, String> {
    Endpoint::from_shared(format!("http://{address}"))
        .map(|e| configure(e, timing))
        .map_err(|e| format!("invalid peer address {address:?}: {e}"))
}

impl Pool {
    pub fn new(timing: Timing) -> Arc<Pool> {
        Arc::new(Pool {
            peers: watch::channel(Arc::new(BTreeMap::new())).0,
            tls: std::sync::Mutex::new((None, None)),
            server_names: std::sync::Mutex::new(BTreeMap::new()),
            tasks: std::sync::Mutex::new(BTreeMap::new()),
            discovery: std::sync::Mutex::new(None),
            timing,
            telemetry: Arc::default(),
            metrics: Arc::default(),
        })
    }

    /// Starts finding and connecting nodes.
    pub fn start(self: &Arc<Pool>, discovery: Discovery) {
        match discovery {
            Discovery::Static(addresses) => {
                for a in addresses {
                    self.add(&a, &a);
                }
            }
            Discovery::PeerService(address) => {
                let pool = self.clone();
                let task = tokio::spawn(async move { pool.follow_peer_service(address).await });
                *self.discovery.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
            }
        }
    }

    /// Speaks TLS to every node from now on (set before `start`).
    pub fn set_tls(&self, tls: Option<lumen_rpc::tls::ClientTls>, server_name: Option<String>) {
        *self.tls.lock().unwrap_or_else(|e| e.into_inner()) = (tls, server_name);
    }

    /// The endpoint of a node, with TLS when configured: the certificate must
    /// be valid for the override name, else the name discovery gave, else
    /// the address's host.
    fn endpoint_of(&self, address: &str) -> Result<Endpoint, String> {
        let (tls, name_override) = self.tls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(tls) = tls else {
            return endpoint(address, &self.timing);
        };
        let host = address
            .rsplit_once(':')
            .map_or(address, |(h, _)| h)
            .trim_matches(['[', ']']);
        let name = name_override
            .or_else(|| {
                self.server_names
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(address)
                    .cloned()
            })
            .unwrap_or_else(|| host.to_string());
        let config = tls.config(&name).map_err(|e| e.to_string())?;
        Endpoint::from_shared(format!("https://{address}"))
            .and_then(|e| e.tls_config(config))
            .map(|e| configure(e, &self.timing))
            .map_err(|e| format!("invalid peer address {address:?}: {e}"))
    }

    /// A fresh backoff for retrying `address`, with the pool's timing and
    /// its own jitter.
    pub fn backoff(&self, address: &str) -> Backoff {
        Backoff::new(self.timing.initial_backoff, self.timing.max_backoff, seed(address))
    }

    /// The relay's own counters.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    /// What the relay's streams count (flows per node, sort buffers, clients).
    pub fn metrics(&self) -> &Arc<RelayMetrics> {
        &self.metrics
    }

    pub fn subscribe(&self) -> watch::Receiver<Peers> {
        self.peers.subscribe()
    }

    pub fn peers(&self) -> Peers {
        self.peers.borrow().clone()
    }

    fn update(&self, address: &str, f: impl FnOnce(&mut PeerView)) {
        self.peers.send_if_modified(|peers| {
            let Some(view) = peers.get(address) else { return false };
            let mut view = view.clone();
            f(&mut view);
            Arc::make_mut(peers).insert(address.to_string(), view);
            true
        });
    }

    /// Adds a node and starts its connection task (no-op if known).
    pub fn add(self: &Arc<Pool>, name: &str, address: &str) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if tasks.contains_key(address) {
            return;
        }
        self.peers.send_modify(|peers| {
            Arc::make_mut(peers).insert(
                address.to_string(),
                PeerView {
                    name: name.to_string(),
                    address: address.to_string(),
                    state: NodeState::NodeUnavailable,
                    version: String::new(),
                    error: Some(NOT_CONNECTED_YET.into()),
                    channel: None,
                },
            );
        });
        let pool = self.clone();
        let addr = address.to_string();
        tasks.insert(
            address.to_string(),
            tokio::spawn(async move { pool.keep_connected(addr).await }),
        );
    }

    /// Forgets a node (it left the cluster).
    pub fn remove(&self, address: &str) {
        if let Some(task) = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).remove(address) {
            task.abort();
        }
        let mut name = None;
        self.peers.send_modify(|peers| {
            name = Arc::make_mut(peers).remove(address).map(|p| p.name);
        });
        self.telemetry.forget_peer(address);
        // Its flow series go with it: a deleted node's series would stay forever.
        if let Some(name) = name {
            self.metrics.flows.remove(&name);
        }
    }

    /// Stops every task; the pool is empty afterwards.
    pub fn stop(&self) {
        if let Some(task) = self.discovery.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        let addresses: Vec<String> = self.peers().keys().cloned().collect();
        for a in addresses {
            self.remove(&a);
        }
    }

    async fn keep_connected(self: Arc<Pool>, address: String) {
        let timing = self.timing;
        let mut backoff = Backoff::new(timing.initial_backoff, timing.max_backoff, seed(&address));
        let mut connected_before = false;
        loop {
            match self.connect(&address).await {
                Ok(channel) => {
                    if connected_before {
                        PeerReconnected { peer: &address }.emit(&self.telemetry);
                    } else {
                        tracing::info!(%address, "node connected");
                    }
                    connected_before = true;
                    backoff.reset();
                    self.watch_connected(&address, channel).await;
                }
                Err(error) => {
                    PeerConnectFailed {
                        peer: &address,
                        reason: &error,
                    }
                    .emit(&self.telemetry);
                    self.update(&address, |v| {
                        if v.state != NodeState::NodeError || v.error.as_deref() != Some(&error) {
                            v.state = if error.starts_with("TLS with") {
                                NodeState::NodeError
                            } else {
                                NodeState::NodeUnavailable
                            };
                        }
                        v.error = Some(error);
                        v.channel = None;
                    });
                }
            }
            let wait = backoff.next_wait();
            PeerRetryScheduled { peer: &address, wait }.emit(&self.telemetry);
            tokio::time::sleep(wait).await;
        }
    }

    /// Connects and asks the node who it is. A certificate problem makes
    /// the node NODE_ERROR, with the problem in words.
    async fn connect(&self, address: &str) -> Result<Channel, String> {
        let channel = match self.endpoint_of(address)?.connect().await {
            Ok(c) => c,
            Err(e) => {
                let chain = error_chain(&e);
                if let Some(reason) = lumen_rpc::tls::explain(&chain) {
                    let message = format!("TLS with {address}: {reason}");
                    self.update(address, |v| {
                        v.state = NodeState::NodeError;
                        v.error = Some(message.clone());
                        v.channel = None;
                    });
                    return Err(message);
                }
                return Err(format!("cannot connect to {address}: {chain}"));
            }
        };
        let mut client = ObserverClient::new(channel.clone());
        let ask = client.get_nodes(GetNodesRequest {});
        let nodes = match tokio::time::timeout(self.timing.connect_timeout, ask).await {
            Err(_) => return Err(format!("{address} did not answer GetNodes in time")),
            Ok(Ok(r)) => r.into_inner(),
            // With TLS 1.3 a server refuses a client certificate only after
            // the handshake: it shows on the first call.
            Ok(Err(status)) => {
                let chain = error_chain(&status);
                return Err(match lumen_rpc::tls::explain(&chain) {
                    Some(reason) => format!("TLS with {address}: {reason}"),
                    None => format!("{address}: GetNodes failed: {chain}"),
                });
            }
        };
        let node = nodes.nodes.into_iter().next().unwrap_or_default();
        self.update(address, |v| {
            if !node.name.is_empty() {
                v.name = node.name;
            }
            v.version = node.version;
            v.state = NodeState::NodeConnected;
            v.error = None;
            v.channel = Some(channel.clone());
        });
        Ok(channel)
    }

    /// Checks a connected node until it stops answering.
    async fn watch_connected(&self, address: &str, channel: Channel) {
        let mut client = ObserverClient::new(channel);
        loop {
            tokio::time::sleep(self.timing.check_interval).await;
            let check = client.server_status(lumen_proto::observer::ServerStatusRequest {});
            let (state, error) = match tokio::time::timeout(self.timing.connect_timeout, check).await {
                Ok(Ok(_)) => continue,
                Ok(Err(s)) => match lumen_rpc::tls::explain(&error_chain(&s)) {
                    Some(reason) => (NodeState::NodeError, format!("TLS with {address}: {reason}")),
                    None => (NodeState::NodeUnavailable, format!("{address}: {}", s.message())),
                },
                Err(_) => (NodeState::NodeUnavailable, format!("{address} stopped answering")),
            };
            PeerDisconnected {
                peer: address,
                reason: &error,
            }
            .emit(&self.telemetry);
            self.update(address, |v| {
                v.state = state;
                v.error = Some(error);
                v.channel = None;
            });
            return;
        }
    }

    /// The name a node's certificate is checked against: the one the peer
    /// service gives, else the node's name.
    fn remember_server_name(&self, change: &lumen_proto::peer::ChangeNotification) {
        let name = change
            .tls
            .as_ref()
            .map(|t| t.server_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| change.name.clone());
        self.server_names
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(change.address.clone(), name);
    }

    /// Keeps the pool's nodes equal to what an observer's peer service says.
    async fn follow_peer_service(self: Arc<Pool>, address: String) {
        let timing = self.timing;
        let mut backoff = Backoff::new(timing.initial_backoff, timing.max_backoff, seed(&address));
        loop {
            let result = async {
                let channel = self
                    .endpoint_of(&address)?
                    .connect()
                    .await
                    .map_err(|e| format!("cannot connect to the peer service {address}: {}", error_chain(&e)))?;
                let mut stream = PeerClient::new(channel)
                    .notify(NotifyRequest {})
                    .await
                    .map_err(|s| format!("peer service {address}: {}", s.message()))?
                    .into_inner();
                backoff.reset();
                while let Some(change) = stream
                    .message()
                    .await
                    .map_err(|s| format!("peer service {address}: {}", s.message()))?
                {
                    match ChangeNotificationType::try_from(change.r#type) {
                        Ok(ChangeNotificationType::PeerAdded) => {
                            self.remember_server_name(&change);
                            self.add(&change.name, &change.address)
                        }
                        Ok(ChangeNotificationType::PeerDeleted) => self.remove(&change.address),
                        Ok(ChangeNotificationType::PeerUpdated) => {
                            // The address may have changed: drop what has the name.
                            let stale: Vec<String> = self
                                .peers()
                                .values()
                                .filter(|p| p.name == change.name && p.address != change.address)
                                .map(|p| p.address.clone())
                                .collect();
                            for a in stale {
                                self.remove(&a);
                            }
                            self.remember_server_name(&change);
                            self.add(&change.name, &change.address);
                        }
                        _ => tracing::warn!(?change, "unknown peer change"),
                    }
                }
                Err::<(), String>(format!("peer service {address} ended the stream"))
            }
            .await;
            if let Err(error) = result {
                PeerDiscoveryFailed {
                    service: &address,
                    reason: &error,
                }
                .emit(&self.telemetry);
            }
            tokio::time::sleep(backoff.next_wait()).await;
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An error and its causes, `outer: inner: …`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1_000), 42);
        let waits: Vec<Duration> = (0..6).map(|_| b.next_wait()).collect();
        let nominal = [100u64, 200, 400, 800, 1_000, 1_000];
        for (w, n) in waits.iter().zip(nominal) {
            let n = Duration::from_millis(n);
            assert!(*w >= n.mul_f64(0.8) && *w <= n.mul_f64(1.2), "{w:?} around {n:?}");
        }
        assert_ne!(waits[4], waits[5], "jitter varies the waits");
        b.reset();
        assert!(b.next_wait() <= Duration::from_millis(120));
    }
}
