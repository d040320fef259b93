//! Hubble's `peer.Peer` service: where the cluster's observers listen, so a
//! relay can find them. Standalone, the nodes come from a YAML file that is
//! polled while the observer runs; without one, this node announces itself.
//!
//! The current set lives in a `watch` channel: the watcher never waits for a
//! client, and each `Notify` stream keeps the set it last sent and sends the
//! difference to the newest one, so a slow client skips intermediate states
//! but always ends up with the current set.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lumen_proto::peer::peer_server::Peer;
use lumen_proto::peer::{ChangeNotification, ChangeNotificationType, NotifyRequest, Tls};
use lumen_proto::tonic::{self, Request, Response, Status};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::source::{self, Document, FileError};

/// How often the nodes file is checked for a new version.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Notifications buffered per client.
const CLIENT_BUFFER: usize = 64;

/// One observer of the cluster, as the nodes file declares it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NodeEntry {
    pub name: String,
    /// Where the node's Observer gRPC API listens.
    #[serde(deserialize_with = "socket_addr")]
    pub address: SocketAddr,
    /// Name to verify the node's certificate against; none: no TLS.
    #[serde(default)]
    pub tls_server_name: Option<String>,
}

fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    use serde::de::Error;
    const FORM: &str = "IP:PORT, IPv6 in brackets and quoted: \"[fd01::1]:4244\"";
    // Unquoted, `[fd01::1]:4244` is a YAML list: say so rather than "invalid type".
    match serde_yaml_ng::Value::deserialize(d)? {
        serde_yaml_ng::Value::String(text) => text
            .parse()
            .map_err(|_| D::Error::custom(format!("address {text:?} is not {FORM}"))),
        _ => Err(D::Error::custom(format!("address is not a string: write {FORM}"))),
    }
}

impl NodeEntry {
    fn notification(&self, kind: ChangeNotificationType) -> ChangeNotification {
        ChangeNotification {
            name: self.name.clone(),
            address: self.address.to_string(),
            r#type: kind as i32,
            tls: self.tls_server_name.clone().map(|server_name| Tls { server_name }),
        }
    }
}

/// What a client that knows `old` must be told to know `new`, in name order:
/// ADDED for new names, DELETED (with the old address) for vanished ones,
/// UPDATED when the address or TLS server name changed.
pub fn diff(old: &[NodeEntry], new: &[NodeEntry]) -> Vec<ChangeNotification> {
    fn by_name(nodes: &[NodeEntry]) -> BTreeMap<&str, &NodeEntry> {
        nodes.iter().map(|n| (n.name.as_str(), n)).collect()
    }
    let (old, new) = (by_name(old), by_name(new));
    let names: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    names
        .into_iter()
        .filter_map(|name| match (old.get(name), new.get(name)) {
            (None, Some(n)) => Some(n.notification(ChangeNotificationType::PeerAdded)),
            (Some(o), None) => Some(o.notification(ChangeNotificationType::PeerDeleted)),
            (Some(o), Some(n)) if o != n => Some(n.notification(ChangeNotificationType::PeerUpdated)),
            _ => None,
        })
        .collect()
}

/// A node name as `--node-name` accepts it: letters, digits, '-', '_' and
/// '.', not starting with '.' (it names a directory).
pub fn is_node_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name
            .split('.')
            .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesFile {
    nodes: Vec<NodeEntry>,
}

/// Reads and validates a nodes file; the nodes come sorted by name.
pub fn load_file(path: &Path) -> Result<Vec<NodeEntry>, FileError> {
    check(source::read(path, "nodes")?)
}

/// Parses and validates the text of a nodes file (named `file` in errors).
pub fn parse(text: &str, file: &Path) -> Result<Vec<NodeEntry>, FileError> {
    check(source::parse(text, file, "nodes")?)
}

fn check(doc: Document<NodesFile>) -> Result<Vec<NodeEntry>, FileError> {
    let mut names = HashSet::new();
    for (i, n) in doc.value.nodes.iter().enumerate() {
        if !is_node_name(&n.name) {
            return Err(doc.invalid(
                i,
                format!(
                    "node name {:?} is not valid: use letters, digits, '-', '_' and '.'",
                    n.name
                ),
            ));
        }
        if !names.insert(n.name.as_str()) {
            return Err(doc.invalid(i, format!("node {} is declared twice", n.name)));
        }
        if let Some(server_name) = n.tls_server_name.as_deref().filter(|s| !is_dns_name(s)) {
            return Err(doc.invalid(
                i,
                format!("tls-server-name {server_name:?} of node {} is not a DNS name", n.name),
            ));
        }
    }
    let mut nodes = doc.value.nodes;
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

/// The nodes announced without a nodes file: this one, if it listens on TCP.
pub fn local(node_name: &str, listen_address: Option<SocketAddr>) -> Vec<NodeEntry> {
    listen_address
        .map(|address| NodeEntry {
            name: node_name.to_string(),
            address,
            tls_server_name: None,
        })
        .into_iter()
        .collect()
}

/// The cluster's observers as this node knows them, shared by the file
/// watcher and every `Notify` stream.
pub struct Peers {
    nodes: watch::Sender<Arc<[NodeEntry]>>,
    nodes_file_errors: AtomicU64,
}

impl Peers {
    pub fn new(nodes: Vec<NodeEntry>) -> Arc<Peers> {
        Arc::new(Peers {
            nodes: watch::Sender::new(sorted(nodes)),
            nodes_file_errors: AtomicU64::new(0),
        })
    }

    pub fn current(&self) -> Arc<[NodeEntry]> {
        self.nodes.borrow().clone()
    }

    /// Replaces the set; true if it differs from the current one (only then
    /// are subscribers woken).
    pub fn set(&self, nodes: Vec<NodeEntry>) -> bool {
        let nodes = sorted(nodes);
        self.nodes.send_if_modified(|current| {
            let changed = *current != nodes;
            if changed {
                *current = nodes;
            }
            changed
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<[NodeEntry]>> {
        self.nodes.subscribe()
    }

    /// Versions of the nodes file that could not be used (each counted once).
    pub fn nodes_file_errors(&self) -> u64 {
        self.nodes_file_errors.load(Ordering::Relaxed)
    }

    /// Applies one new version of the nodes file (its contents or why it
    /// could not be read): a valid one replaces the set, an invalid one is
    /// logged and counted and changes nothing. True if the set changed.
    pub fn apply_version(&self, file: &Path, read: std::io::Result<Vec<u8>>) -> bool {
        let loaded = read
            .and_then(|bytes| String::from_utf8(bytes).map_err(std::io::Error::other))
            .map_err(|source| FileError::Read {
                file: file.to_path_buf(),
                source,
            })
            .and_then(|text| parse(&text, file));
        match loaded {
            Ok(nodes) => self.set(nodes),
            Err(e) => {
                self.nodes_file_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %crate::error_chain(&e), "nodes file not applied; keeping the last valid nodes");
                false
            }
        }
    }
}

fn sorted(mut nodes: Vec<NodeEntry>) -> Arc<[NodeEntry]> {
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    nodes.into()
}

/// Polls `file` every [`POLL_INTERVAL`] until shutdown and applies each new
/// version. Versions are told apart by content, not modification time,
/// which can stay the same across quick rewrites.
pub async fn watch_file(peers: Arc<Peers>, file: PathBuf, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let read = tokio::fs::read(&file).await;
        let version = read.as_ref().map(Clone::clone).map_err(std::io::Error::kind);
        if last.as_ref() == Some(&version) {
            continue;
        }
        last = Some(version);
        if peers.apply_version(&file, read) {
            tracing::info!(file = %file.display(), nodes = peers.current().len(), "nodes file applied");
        }
    }
}

/// Sends one client every node as ADDED, then each change, until the client
/// leaves or shutdown.
async fn stream_changes(
    mut nodes: watch::Receiver<Arc<[NodeEntry]>>,
    tx: mpsc::Sender<Result<ChangeNotification, Status>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sent: Arc<[NodeEntry]> = Arc::new([]);
    loop {
        let current = nodes.borrow_and_update().clone();
        for change in diff(&sent, &current) {
            tokio::select! {
                r = tx.send(Ok(change)) => if r.is_err() { return },
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
        sent = current;
        tokio::select! {
            r = nodes.changed() => if r.is_err() { return },
            _ = tx.closed() => return,
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// The `peer.Peer` service of one node.
pub struct PeerService {
    peers: Arc<Peers>,
    shutdown: watch::Receiver<bool>,
}

impl PeerService {
    pub fn new(peers: Arc<Peers>, shutdown: watch::Receiver<bool>) -> PeerService {
        PeerService { peers, shutdown }
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    type NotifyStream = ReceiverStream<Result<ChangeNotification, Status>>;

    async fn notify(&self, _: Request<NotifyRequest>) -> Result<Response<Self::NotifyStream>, Status> {
        let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
        tokio::spawn(stream_changes(self.peers.subscribe(), tx, self.shutdown.clone()));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChangeNotificationType::{PeerAdded, PeerDeleted, PeerUpdated};

    fn node(name: &str, address: &str, tls: Option<&str>) -> NodeEntry {
        NodeEntry {
            name: name.into(),
            address: address.parse().unwrap(),
            tls_server_name: tls.map(Into::into),
        }
    }

    fn change(kind: ChangeNotificationType, name: &str, address: &str, tls: Option<&str>) -> ChangeNotification {
        node(name, address, tls).notification(kind)
    }

    #[test]
    fn diff_names_what_was_added_deleted_and_updated_in_name_order() {
        let old = [
            node("d", "10.0.0.4:4244", None),
            node("a", "10.0.0.1:4244", None),
            node("b", "10.0.0.2:4244", Some("b.lumen.local")),
            node("c", "10.0.0.3:4244", None),
        ];
        let new = [
            node("e", "[fd01::5]:4244", None),
            node("b", "10.0.0.2:4244", None),
            node("c", "10.0.0.3:4244", None),
            node("d", "10.0.0.40:4244", None),
        ];
        assert_eq!(
            diff(&old, &new),
            [
                change(PeerDeleted, "a", "10.0.0.1:4244", None),
                change(PeerUpdated, "b", "10.0.0.2:4244", None),
                change(PeerUpdated, "d", "10.0.0.40:4244", None),
                change(PeerAdded, "e", "[fd01::5]:4244", None),
            ]
        );
        assert_eq!(
            diff(&[], &old[..2]),
            [
                change(PeerAdded, "a", "10.0.0.1:4244", None),
                change(PeerAdded, "d", "10.0.0.4:4244", None),
            ]
        );
        assert_eq!(
            diff(&old[2..3], &[]),
            [change(PeerDeleted, "b", "10.0.0.2:4244", Some("b.lumen.local"))]
        );
        assert_eq!(diff(&old, &old), []);
    }

    #[test]
    fn notifications_carry_tls_only_when_a_server_name_is_given() {
        let n = change(PeerAdded, "n1", "192.168.200.1:4244", Some("n1.lumen.local"));
        assert_eq!(
            n,
            ChangeNotification {
                name: "n1".into(),
                address: "192.168.200.1:4244".into(),
                r#type: 1,
                tls: Some(Tls {
                    server_name: "n1.lumen.local".into()
                }),
            }
        );
        assert_eq!(change(PeerAdded, "n1", "192.168.200.1:4244", None).tls, None);
    }

    #[test]
    fn parses_a_valid_file_sorted_by_name() {
        let text = "# the cluster\nnodes:\n  - name: node2\n    address: 192.168.200.2:4244\n    tls-server-name: node2.lumen.local\n  - name: node1\n    address: \"[fd01::1]:4244\"\n";
        assert_eq!(
            parse(text, Path::new("nodes.yaml")).unwrap(),
            [
                node("node1", "[fd01::1]:4244", None),
                node("node2", "192.168.200.2:4244", Some("node2.lumen.local")),
            ]
        );
        assert_eq!(parse("nodes: []\n", Path::new("nodes.yaml")).unwrap(), []);
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let item = "nodes:\n  - name: a\n    address: 10.0.0.1:4244\n";
        let cases = [
            (
                format!("{item}  - name: a\n    address: 10.0.0.2:4244\n"),
                "nodes.yaml:4: node a is declared twice",
            ),
            (
                "nodes:\n  - name: .a\n    address: 10.0.0.1:4244\n".to_string(),
                "nodes.yaml:2: node name \".a\" is not valid: use letters, digits, '-', '_' and '.'",
            ),
            (
                "nodes:\n  - name: \"\"\n    address: 10.0.0.1:4244\n".to_string(),
                "nodes.yaml:2: node name \"\" is not valid: use letters, digits, '-', '_' and '.'",
            ),
            (
                "nodes:\n  - name: a\n    address: 10.0.0.1\n".to_string(),
                "nodes.yaml:2:5: nodes[0]: address \"10.0.0.1\" is not IP:PORT, IPv6 in brackets and quoted: \"[fd01::1]:4244\"",
            ),
            (
                "nodes:\n  - name: a\n    address: fd01::1:4244\n".to_string(),
                "nodes.yaml:2:5: nodes[0]: address \"fd01::1:4244\" is not IP:PORT, IPv6 in brackets and quoted: \"[fd01::1]:4244\"",
            ),
            (
                "nodes:\n  - name: a\n    address: [fd01::1]:4244\n".to_string(),
                "nodes.yaml:2:5: nodes[0]: address is not a string: write IP:PORT, IPv6 in brackets and quoted: \"[fd01::1]:4244\"",
            ),
            (
                format!("{item}    tls_server_name: a.local\n"),
                "nodes.yaml:4:5: nodes[0]: unknown field `tls_server_name`, expected one of `name`, `address`, `tls-server-name`",
            ),
            (
                format!("{item}    tls-server-name: \"a .local\"\n"),
                "nodes.yaml:2: tls-server-name \"a .local\" of node a is not a DNS name",
            ),
            (
                "nodes:\n  - name: a\n".to_string(),
                "nodes.yaml:2:5: nodes[0]: missing field `address`",
            ),
            (
                format!("{item}peers: []\n"),
                "nodes.yaml:4:1: unknown field `peers`, expected `nodes`",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&text, Path::new("nodes.yaml")).unwrap_err();
            assert_eq!(err.to_string(), expected, "{text}");
        }
    }

    #[test]
    fn without_a_file_a_node_announces_itself_if_it_listens_on_tcp() {
        assert_eq!(local("n1", None), []);
        assert_eq!(
            local("n1", Some("10.1.0.1:4244".parse().unwrap())),
            [node("n1", "10.1.0.1:4244", None)]
        );
    }

    #[test]
    fn an_invalid_version_is_counted_and_keeps_the_last_valid_set() {
        let file = Path::new("nodes.yaml");
        let peers = Peers::new(vec![node("a", "10.0.0.1:4244", None)]);
        let b = b"nodes:\n  - name: b\n    address: 10.0.0.2:4244\n".to_vec();
        assert!(peers.apply_version(file, Ok(b.clone())));
        assert_eq!(&*peers.current(), [node("b", "10.0.0.2:4244", None)]);
        assert!(!peers.apply_version(file, Ok(b"nodes: [\n".to_vec())));
        assert!(!peers.apply_version(file, Err(std::io::ErrorKind::NotFound.into())));
        assert!(!peers.apply_version(file, Ok(vec![0xff, 0xfe])));
        assert_eq!(peers.nodes_file_errors(), 3);
        assert_eq!(&*peers.current(), [node("b", "10.0.0.2:4244", None)]);
        // The same nodes written differently change nothing.
        assert!(!peers.apply_version(file, Ok([b"# same\n".as_slice(), &b].concat())));
        assert_eq!(peers.nodes_file_errors(), 3);
    }

    async fn next(rx: &mut ReceiverStream<Result<ChangeNotification, Status>>) -> Option<ChangeNotification> {
        use tokio_stream::StreamExt;
        let r = tokio::time::timeout(Duration::from_secs(2), rx.next()).await;
        r.expect("a notification or the end of the stream").map(Result::unwrap)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn notify_sends_every_node_then_changes_and_ends_on_shutdown() {
        let peers = Peers::new(vec![node("b", "10.0.0.2:4244", None), node("a", "10.0.0.1:4244", None)]);
        let (stop, shutdown) = watch::channel(false);
        let service = PeerService::new(peers.clone(), shutdown);
        let mut rx = service
            .notify(Request::new(NotifyRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(next(&mut rx).await, Some(change(PeerAdded, "a", "10.0.0.1:4244", None)));
        assert_eq!(next(&mut rx).await, Some(change(PeerAdded, "b", "10.0.0.2:4244", None)));
        assert!(peers.set(vec![node("a", "10.0.0.9:4244", Some("a.local"))]));
        assert_eq!(
            next(&mut rx).await,
            Some(change(PeerUpdated, "a", "10.0.0.9:4244", Some("a.local")))
        );
        assert_eq!(
            next(&mut rx).await,
            Some(change(PeerDeleted, "b", "10.0.0.2:4244", None))
        );
        stop.send_replace(true);
        assert_eq!(next(&mut rx).await, None);
    }

    // A current-thread runtime: the stream task runs only when the test yields.
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_client_gets_the_difference_to_the_newest_set() {
        let peers = Peers::new(vec![node("a", "10.0.0.1:4244", None)]);
        let (_stop, shutdown) = watch::channel(false);
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(stream_changes(peers.subscribe(), tx, shutdown));
        // The task sends ADDED a and fills the channel.
        tokio::task::yield_now().await;
        peers.set(vec![node("a", "10.0.0.1:4244", None), node("b", "10.0.0.2:4244", None)]);
        peers.set(vec![node("c", "10.0.0.3:4244", None)]);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rx.recv().await.unwrap().unwrap());
        }
        assert_eq!(
            got,
            [
                change(PeerAdded, "a", "10.0.0.1:4244", None),
                change(PeerDeleted, "a", "10.0.0.1:4244", None),
                change(PeerAdded, "c", "10.0.0.3:4244", None),
            ]
        );
    }

    async fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + 3 * POLL_INTERVAL;
        while !done() {
            assert!(std::time::Instant::now() < deadline, "not yet: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_watcher_applies_valid_versions_and_counts_each_bad_one_once() {
        let file = std::env::temp_dir().join(format!("lumen-test-{}-nodes.yaml", std::process::id()));
        std::fs::write(&file, "nodes:\n  - name: a\n    address: 10.0.0.1:4244\n").unwrap();
        let peers = Peers::new(Vec::new());
        let (stop, shutdown) = watch::channel(false);
        let watcher = tokio::spawn(watch_file(peers.clone(), file.clone(), shutdown));
        eventually("the file was applied", || !peers.current().is_empty()).await;
        assert_eq!(&*peers.current(), [node("a", "10.0.0.1:4244", None)]);
        std::fs::write(&file, "nodes:\n  - name: a\n    addres: 10.0.0.1:4244\n").unwrap();
        eventually("the bad version was noticed", || peers.nodes_file_errors() > 0).await;
        tokio::time::sleep(2 * POLL_INTERVAL).await;
        assert_eq!(peers.nodes_file_errors(), 1, "one bad version, counted once");
        assert_eq!(&*peers.current(), [node("a", "10.0.0.1:4244", None)]);
        std::fs::write(&file, "nodes:\n  - name: b\n    address: 10.0.0.2:4244\n").unwrap();
        eventually("the next valid version was applied", || peers.current()[0].name == "b").await;
        stop.send_replace(true);
        watcher.await.unwrap();
        std::fs::remove_file(&file).unwrap();
    }
}
