//! The hub between the reader and the consumers of flows: the flow store
//! (private: consumers read it through a [`Subscription`]), the enrichment
//! snapshots stored flows refer to, and the signals followers wait on
//! (newest sequence number, kernel losses).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use lumen_probes::abi;
use lumen_proto::flow::Flow;
use lumen_rpc::telemetry::InternalEvent;
use tokio::sync::{broadcast, watch};

use crate::parser::{self, Snapshot};
use crate::store::{FlowStore, StoredFlow};
use crate::telemetry::{FlowsOverwrittenBeforeRead, KernelEventsLost, MetricsFellBehind, OutputFellBehind, Telemetry};

mod built;
mod subscription;
pub use subscription::{History, Notice, Subscription};

/// Snapshots kept at most, even if old flows still refer to older ones
/// (those are then named with the oldest snapshot kept). Each is a few
/// hundred bytes per endpoint and policy (what did not change is shared).
const MAX_SNAPSHOTS: usize = 64;

/// Kernel losses kept in the stream at most; a newer one beyond that is
/// added to the newest kept, so counts stay exact.
const MAX_KERNEL_LOSSES: usize = 4096;

/// Deleted endpoints a slow listener may fall behind by before it misses some.
const GONE_BACKLOG: usize = 1024;

/// `flows_rate` is the rate over this window, like Hubble's.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// How often the seen-flows count is sampled for `flows_rate`.
const RATE_SAMPLE: Duration = Duration::from_secs(1);

/// Events the kernel ring buffer could not take, placed in the stream: they
/// were lost before the flow numbered `seq` arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLoss {
    /// Position among all kernel losses since start.
    pub id: u64,
    pub seq: u64,
    pub count: u64,
}

/// Counts the server reports, taken at one instant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HubStatus {
    pub num_flows: u64,
    pub max_flows: u64,
    pub seen_flows: u64,
    pub uptime_ns: u64,
    pub flows_rate: f64,
    pub kernel_lost: u64,
    /// Flows clients missed because they read slower than the store turned over.
    pub client_lost: u64,
}

pub struct Hub {
    node_name: String,
    instance: u64,
    started: Instant,
    store: Mutex<FlowStore>,
    snapshots: RwLock<VecDeque<(u32, Arc<Snapshot>)>>,
    /// Sequence number the next flow gets.
    newest: watch::Sender<u64>,
    /// Events the kernel ring buffer could not take, since start.
    kernel_lost: watch::Sender<u64>,
    /// The same losses by position in the stream, for readers replaying it.
    kernel_losses: Mutex<VecDeque<KernelLoss>>,
    /// Id the next kernel loss gets (ids are never reused, even once every
    /// loss kept is gone), so readers can tell there is none new without a lock.
    next_loss_id: std::sync::atomic::AtomicU64,
    /// Lumen's own counters: also the loss counts ServerStatus reports.
    telemetry: Arc<Telemetry>,
    /// Set once the reader has stored its last record: follows end there.
    closed: std::sync::atomic::AtomicBool,
    /// (when, flows seen by then), a sample per second over the rate window.
    rate_samples: Mutex<VecDeque<(Instant, u64)>>,
    /// Recent records built into flows, shared by the consumers that need them.
    built: built::BuiltFlows,
    /// `(namespace, pod)` of each endpoint a published snapshot no longer
    /// has, for consumers that keep state per pod (the metrics' series).
    gone: broadcast::Sender<(String, String)>,
}

/// A random id per observer start, so flow uuids differ across restarts.
fn random_instance() -> u64 {
    let from_kernel = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim().replace('-', "").get(..16)?, 16).ok());
    from_kernel.unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
    })
}

impl Hub {
    pub fn new(node_name: &str, max_flows: usize) -> Arc<Hub> {
        let snapshot = Snapshot {
            node_name: node_name.to_string(),
            ..Default::default()
        };
        Arc::new(Hub {
            node_name: node_name.to_string(),
            instance: random_instance(),
            started: Instant::now(),
            store: Mutex::new(FlowStore::new(max_flows)),
            snapshots: RwLock::new(VecDeque::from([(0, Arc::new(snapshot))])),
            newest: watch::channel(0).0,
            kernel_lost: watch::channel(0).0,
            kernel_losses: Mutex::new(VecDeque::new()),
            next_loss_id: std::sync::atomic::AtomicU64::new(0),
            telemetry: Arc::default(),
            closed: std::sync::atomic::AtomicBool::new(false),
            rate_samples: Mutex::new(VecDeque::new()),
            built: built::BuiltFlows::default(),
            gone: broadcast::channel(GONE_BACKLOG).0,
        })
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub fn instance(&self) -> u64 {
        self.instance
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The counters, for a service that outlives a borrow of the hub.
    pub fn telemetry_handle(&self) -> Arc<Telemetry> {
        self.telemetry.clone()
    }

    pub fn uptime_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// The store, for readers that copy out what they need and let go.
    fn store(&self) -> MutexGuard<'_, FlowStore> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `snapshot` the one new flows are named with.
    pub fn publish(&self, mut snapshot: Snapshot) {
        snapshot.node_name = self.node_name.clone();
        let oldest_needed = {
            let store = self.store();
            store.get(store.oldest()).map(|f| f.names)
        };
        let snapshot = Arc::new(snapshot);
        let mut snaps = self.snapshots.write().unwrap_or_else(|e| e.into_inner());
        let previous = snaps.back().map(|(_, s)| s.clone());
        let id = snaps.back().map_or(0, |(id, _)| id.wrapping_add(1));
        snaps.push_back((id, snapshot.clone()));
        // Ids only grow while the observer runs (2^32 applies would be needed
        // to wrap), so flows still held refer to ids >= the oldest flow's.
        while snaps.len() > 1 && (snaps.len() > MAX_SNAPSHOTS || oldest_needed.is_none_or(|n| snaps[0].0 < n)) {
            snaps.pop_front();
        }
        drop(snaps);
        if let Some(previous) = previous.filter(|_| self.gone.receiver_count() > 0) {
            let pod = |m: &Arc<parser::EndpointMeta>| (m.namespace.clone(), m.pod_name.clone());
            let now: std::collections::HashSet<_> = snapshot.endpoints_by_id.values().map(pod).collect();
            for gone in previous.endpoints_by_id.values().map(pod).filter(|p| !now.contains(p)) {
                let _ = self.gone.send(gone);
            }
        }
    }

    /// Every endpoint that goes from now on, as `(namespace, pod)`, in the
    /// order they go (a listener more than 1024 behind misses the oldest).
    pub fn endpoints_gone(&self) -> broadcast::Receiver<(String, String)> {
        self.gone.subscribe()
    }

    fn current_snapshot_id(&self) -> u32 {
        let snaps = self.snapshots.read().unwrap_or_else(|e| e.into_inner());
        snaps.back().map_or(0, |(id, _)| *id)
    }

    /// The snapshot a flow was stored under (the oldest kept if it is gone).
    pub fn snapshot(&self, id: u32) -> Arc<Snapshot> {
        let snaps = self.snapshots.read().unwrap_or_else(|e| e.into_inner());
        let found = snaps.iter().find(|(i, _)| *i == id).or(snaps.front());
        found.expect("at least one snapshot").1.clone()
    }

    /// The newest snapshot (endpoints known now).
    pub fn current(&self) -> Arc<Snapshot> {
        self.snapshot(self.current_snapshot_id())
    }

    /// Stores a batch of records whose timestamps are wall-clock ns, then
    /// wakes followers once.
    pub fn push(&self, events: impl IntoIterator<Item = abi::Event>) {
        self.push_captured(events.into_iter().map(|ev| (ev, Box::default())));
    }

    /// [`Hub::push`], each record with the packet bytes captured with it.
    pub fn push_captured(&self, records: impl IntoIterator<Item = (abi::Event, Box<[u8]>)>) {
        let names = self.current_snapshot_id();
        let next = {
            let mut store = self.store();
            for (ev, capture) in records {
                store.push_captured(ev, names, capture);
            }
            store.next_seq()
        };
        self.sample_rate(Instant::now(), next);
        self.newest.send_replace(next);
    }

    fn sample_rate(&self, now: Instant, seen: u64) {
        let mut samples = self.rate_samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples
            .back()
            .is_some_and(|(t, _)| now.duration_since(*t) < RATE_SAMPLE)
        {
            if let Some(last) = samples.back_mut() {
                last.1 = seen;
            }
            return;
        }
        samples.push_back((now, seen));
        // Keep one sample at or before the window's start as its baseline.
        while samples.len() > 1 && now.duration_since(samples[1].0) >= RATE_WINDOW {
            samples.pop_front();
        }
    }

    /// Flows per second over the last minute (over the uptime if shorter).
    fn flows_rate(&self, now: Instant, seen_now: u64) -> f64 {
        let uptime = now.duration_since(self.started);
        let window = uptime.min(RATE_WINDOW);
        let samples = self.rate_samples.lock().unwrap_or_else(|e| e.into_inner());
        // Flows seen when the window opened: the newest sample at or before it.
        let window_start = now - window;
        let base = samples
            .iter()
            .rev()
            .find(|(t, _)| *t <= window_start)
            .map_or(0, |(_, seen)| *seen);
        seen_now.saturating_sub(base) as f64 / window.as_secs_f64().max(1e-9)
    }

    pub fn to_flow(&self, stored: &StoredFlow) -> Flow {
        parser::to_flow(stored, &self.snapshot(stored.names), self.instance)
    }

    /// Ends the stream: no record is stored after this, so followers end
    /// once they have read what is stored (the reader calls this on shutdown,
    /// after its last batch and loss count).
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.newest.send_modify(|_| {});
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records events the kernel ring buffer could not take, at the current
    /// end of the stream.
    pub fn kernel_lost(&self, count: u64) {
        {
            let store = self.store();
            let (seq, oldest) = (store.next_seq(), store.oldest());
            let mut losses = self.kernel_losses.lock().unwrap_or_else(|e| e.into_inner());
            while losses.front().is_some_and(|l| l.seq < oldest) {
                losses.pop_front();
            }
            let full = losses.len() >= MAX_KERNEL_LOSSES;
            match losses.back_mut() {
                Some(last) if full => last.count += count,
                _ => {
                    // Published while the store is locked: a reader that sees
                    // a flow stored after this loss sees the loss too.
                    let id = self.next_loss_id.load(std::sync::atomic::Ordering::Relaxed);
                    losses.push_back(KernelLoss { id, seq, count });
                    self.next_loss_id.store(id + 1, std::sync::atomic::Ordering::Release);
                }
            }
        }
        KernelEventsLost { count }.emit(&self.telemetry);
        self.kernel_lost.send_modify(|n| *n += count);
    }

    /// Id of the first kernel loss at or after stream position `seq`.
    fn first_kernel_loss_at(&self, seq: u64) -> u64 {
        let losses = self.kernel_losses.lock().unwrap_or_else(|e| e.into_inner());
        match losses.iter().find(|l| l.seq >= seq) {
            Some(l) => l.id,
            None => self.next_loss_id.load(std::sync::atomic::Ordering::Acquire),
        }
    }

    /// Kernel losses from id `from` on that happened before flow `upto_seq`
    /// (or at the end of the stream, if that is `upto_seq`).
    fn kernel_losses(&self, from: u64, upto_seq: u64) -> Vec<KernelLoss> {
        if from >= self.next_loss_id.load(std::sync::atomic::Ordering::Acquire) {
            return Vec::new();
        }
        let losses = self.kernel_losses.lock().unwrap_or_else(|e| e.into_inner());
        losses
            .iter()
            .filter(|l| l.id >= from && l.seq <= upto_seq)
            .copied()
            .collect()
    }

    /// Records flows a client of the Observer API was told it missed
    /// (`lumen-lost-client` in ServerStatus).
    pub fn client_lost(&self, count: u64) {
        FlowsOverwrittenBeforeRead { count }.emit(&self.telemetry);
    }

    /// The JSON-lines event output missed `count` flows.
    pub fn output_lost(&self, count: u64) {
        OutputFellBehind { count }.emit(&self.telemetry);
    }

    /// The flow metrics missed `count` flows.
    pub fn metrics_lost(&self, count: u64) {
        MetricsFellBehind { count }.emit(&self.telemetry);
    }

    /// The flow export missed `count` flows.
    pub fn exporters_lost(&self, count: u64) {
        crate::telemetry::ExportFellBehind { count }.emit(&self.telemetry);
    }

    /// A copy of the newest `n` flows held, oldest first.
    #[cfg(test)]
    pub(crate) fn held(&self, n: usize) -> Vec<StoredFlow> {
        self.store().last(n)
    }

    pub fn status(&self) -> HubStatus {
        let (num_flows, max_flows, seen_flows) = {
            let s = self.store();
            (s.len() as u64, s.capacity() as u64, s.seen())
        };
        let uptime = self.started.elapsed();
        HubStatus {
            num_flows,
            max_flows,
            seen_flows,
            uptime_ns: uptime.as_nanos() as u64,
            flows_rate: self.flows_rate(Instant::now(), seen_flows),
            kernel_lost: self.telemetry.lost_kernel.get(),
            client_lost: self.telemetry.lost_store.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::EndpointMeta;

    fn ev(dport: u16) -> abi::Event {
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        abi::Event {
            dport,
            family: 4,
            daddr,
            ..Default::default()
        }
    }

    fn snapshot_with(pod: &str) -> Snapshot {
        let mut s = Snapshot::default();
        let meta = EndpointMeta {
            pod_name: pod.into(),
            namespace: "default".into(),
            ..Default::default()
        };
        s.endpoints.insert("10.0.0.2".parse().unwrap(), Arc::new(meta));
        s
    }

    fn dst_pod(f: &Flow) -> String {
        f.destination.as_ref().unwrap().pod_name.clone()
    }

    #[test]
    fn flows_keep_the_names_they_arrived_under() {
        let hub = Hub::new("n1", 8);
        hub.publish(snapshot_with("old"));
        hub.push([ev(1)]);
        hub.publish(snapshot_with("new"));
        hub.push([ev(2)]);
        let flows = hub.store().last(10);
        assert_eq!(
            flows.iter().map(|f| dst_pod(&hub.to_flow(f))).collect::<Vec<_>>(),
            ["old", "new"]
        );
        assert_eq!(hub.to_flow(&flows[0]).node_name, "n1");
        assert_eq!(*hub.newest.borrow(), 2);
    }

    #[test]
    fn snapshots_no_flow_refers_to_are_dropped() {
        let hub = Hub::new("n1", 1);
        for pod in ["a", "b", "c"] {
            hub.publish(snapshot_with(pod));
            hub.push([ev(1)]);
        }
        hub.publish(snapshot_with("d"));
        // Only the flow stored under "c" is held; "a" and "b" are gone.
        assert_eq!(hub.snapshots.read().unwrap().len(), 2);
        let held = hub.store().last(1)[0];
        assert_eq!(dst_pod(&hub.to_flow(&held)), "c");
    }

    #[test]
    fn endpoints_a_snapshot_no_longer_has_are_told_in_order() {
        let hub = Hub::new("n1", 8);
        let mut gone = hub.endpoints_gone();
        let snap = |pods: &[&str]| {
            let mut s = Snapshot::default();
            for (i, p) in pods.iter().enumerate() {
                let meta = EndpointMeta {
                    id: i as u32 + 1,
                    namespace: "default".into(),
                    pod_name: p.to_string(),
                    ..Default::default()
                };
                s.endpoints_by_id.insert(meta.id, Arc::new(meta));
            }
            s
        };
        hub.publish(snap(&["web", "late"]));
        hub.publish(snap(&["web"]));
        hub.publish(snap(&["web", "late"]));
        hub.publish(snap(&["late"]));
        let pod = |p: &str| Ok(("default".to_string(), p.to_string()));
        assert_eq!(gone.try_recv(), pod("late"));
        assert_eq!(gone.try_recv(), pod("web"));
        assert_eq!(gone.try_recv(), Err(broadcast::error::TryRecvError::Empty));
    }

    #[test]
    fn status_counts_held_seen_and_lost() {
        let hub = Hub::new("n1", 2);
        hub.push([ev(1), ev(2), ev(3)]);
        hub.kernel_lost(4);
        hub.kernel_lost(1);
        let s = hub.status();
        assert_eq!((s.num_flows, s.max_flows, s.seen_flows, s.kernel_lost), (2, 2, 3, 5));
        assert!(s.flows_rate > 0.0 && s.uptime_ns > 0);
        assert_ne!(hub.instance(), 0);
    }

    #[test]
    fn flows_rate_is_over_the_last_minute() {
        let hub = Hub::new("n1", 8);
        let at = |secs| hub.started + Duration::from_secs(secs);
        hub.sample_rate(at(10), 100);
        hub.sample_rate(at(70), 700);
        // Within the first minute: over the uptime.
        assert_eq!(hub.flows_rate(at(20), 100), 5.0);
        // Later: flows seen since the window opened (at 40 s, 100 seen by then) over 60 s.
        assert_eq!(hub.flows_rate(at(100), 1000), 15.0);
        // Nothing for a minute: zero.
        hub.sample_rate(at(200), 1000);
        assert_eq!(hub.flows_rate(at(260), 1000), 0.0);
    }

    #[test]
    fn kernel_losses_keep_their_place_in_the_stream() {
        let hub = Hub::new("n1", 2);
        hub.kernel_lost(1);
        hub.push([ev(1)]);
        hub.kernel_lost(2);
        hub.push([ev(2), ev(3)]);
        hub.kernel_lost(3);
        let seqs = |l: Vec<KernelLoss>| l.iter().map(|l| (l.id, l.seq, l.count)).collect::<Vec<_>>();
        assert_eq!(seqs(hub.kernel_losses(0, 3)), [(1, 1, 2), (2, 3, 3)]);
        assert_eq!(seqs(hub.kernel_losses(0, 2)), [(1, 1, 2)]);
        // Loss 0 preceded a flow no longer held, so it is gone.
        assert_eq!(hub.first_kernel_loss_at(0), 1);
        assert_eq!(hub.first_kernel_loss_at(4), 3);
        assert_eq!(hub.status().kernel_lost, 6);
    }
}
