//! What the UI knows: the recent responses of the server in a bounded ring,
//! a lumen-model per view, and the health of the link.
//!
//! A view is a filter line (the flags of `lumen observe`) and a unit. It is
//! made on first use from the flows in the ring, then fed every new flow
//! its filters pass. Views nobody asked for in [`VIEW_IDLE`] are dropped
//! when room is needed, so memory is bounded by the ring and [`MAX_VIEWS`]
//! models, whatever the flow rate and the number of browsers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lumen_flow::FlowFilterSet;
use lumen_model::{Config, Model, NodeKey, Unit};
use lumen_proto::flow::Flow;
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::GetFlowsResponse;
use lumen_rpc::FollowEvent;
use serde::Serialize;

use crate::query::{QueryError, Select};

/// Views kept at most.
pub const MAX_VIEWS: usize = 16;
/// A view unused for this long may be dropped to make room.
pub const VIEW_IDLE: Duration = Duration::from_secs(60);
/// Labels and identities remembered per node of a view.
const LABELS_PER_NODE: usize = 32;
const IDENTITIES_PER_NODE: usize = 8;
/// Nodes of a view whose labels are remembered.
const NODES_WITH_LABELS: usize = 5_000;
/// Flows of a view's history (the server's, asked for when it was made)
/// kept for its table: the newest, as many as a table shows by default
/// (16 views of the last N minutes hold at most some 30 MiB of them).
pub const HISTORY_ROWS: usize = crate::query::DEFAULT_LIMIT;
/// The numbers of the flows of views' histories start here, far above any
/// the ring reaches and below 2^53, which the page's numbers hold exactly.
pub const HISTORY_SEQ0: u64 = 1 << 52;

/// The hub behind a mutex: the link writes, the API reads.
pub struct Shared(Mutex<Hub>);

impl Shared {
    pub fn new(hub: Hub) -> Shared {
        Shared(Mutex::new(hub))
    }

    pub fn lock(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock leaves counters, not broken
        // invariants: keep serving.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The server's own account of itself (its status, polled).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerInfo {
    /// `relay` or `observer`.
    pub kind: &'static str,
    pub version: String,
    pub connected_nodes: u32,
    pub unavailable_nodes: Vec<String>,
    /// Name and state (`NODE_CONNECTED`) of every node it knows.
    pub nodes: Vec<(String, String)>,
}

/// The link's state, as the banner shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum LinkState {
    /// No answer yet.
    Connecting,
    Connected {
        since_ms: u64,
    },
    Reconnecting {
        reason: String,
        retry_in_ms: u64,
        since_ms: u64,
    },
}

/// The health of the pipeline: what the banner and badges say.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    pub link: LinkState,
    /// The last status poll's answer, if one came.
    pub server: Option<ServerInfo>,
    /// Why the last status poll failed, if it did.
    pub status_error: Option<String>,
    /// Nodes the server says it cannot reach (its status, and node status
    /// events in the stream), sorted.
    pub unavailable_nodes: Vec<String>,
    /// Events lost anywhere on the way, as the stream reported them.
    pub lost_events: u64,
    /// Responses taken in since start, and kept in the ring now.
    pub received: u64,
    pub ring: usize,
    pub ring_capacity: usize,
}

/// A response in the ring, numbered in arrival order.
pub struct Stored {
    pub seq: u64,
    pub response: Arc<GetFlowsResponse>,
}

/// A node's labels and identities, as the flows told them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Details {
    pub labels: Vec<String>,
    pub identities: Vec<u32>,
}

impl Details {
    fn note(&mut self, endpoint: Option<&lumen_proto::flow::Endpoint>) {
        let Some(ep) = endpoint else { return };
        for l in &ep.labels {
            if self.labels.len() < LABELS_PER_NODE && !self.labels.contains(l) {
                self.labels.push(l.clone());
                self.labels.sort();
            }
        }
        if ep.identity != 0 && self.identities.len() < IDENTITIES_PER_NODE && !self.identities.contains(&ep.identity) {
            self.identities.push(ep.identity);
            self.identities.sort_unstable();
        }
    }
}

/// The flows of one filter line, folded under one unit.
pub struct View {
    pub filters: FlowFilterSet,
    pub model: Model,
    pub details: HashMap<NodeKey, Details>,
    /// Streams open on it now.
    pub users: usize,
    pub last_used: Instant,
    /// A view of the last N minutes: flows before this time (unix ns) are
    /// not its own, and those up to `until_ns` (if not 0) came from the
    /// server's history.
    pub from_ns: u64,
    pub until_ns: u64,
    /// The newest flows of its history (for the table), numbered from
    /// [`HISTORY_SEQ0`] up.
    pub history: VecDeque<Stored>,
    /// What went wrong with its history, if anything (the page says it).
    pub notice: Option<String>,
}

/// A flow's time in unix nanoseconds (0 without one).
pub fn time_ns(flow: &Flow) -> u64 {
    flow.time
        .as_ref()
        .map_or(0, |t| (t.seconds.max(0) as u64) * 1_000_000_000 + t.nanos.max(0) as u64)
}

impl View {
    fn new(filters: FlowFilterSet, unit: Unit) -> View {
        View {
            filters,
            model: Model::new(Config {
                unit,
                ..Config::default()
            }),
            details: HashMap::new(),
            users: 0,
            last_used: Instant::now(),
            from_ns: 0,
            until_ns: 0,
            history: VecDeque::new(),
            notice: None,
        }
    }

    /// Whether the ring's `flow` is this view's: after its history, and
    /// not before the time it starts at.
    pub fn owns(&self, flow: &Flow) -> bool {
        let t = time_ns(flow);
        t >= self.from_ns && (self.until_ns == 0 || t > self.until_ns)
    }

    fn take(&mut self, response: &GetFlowsResponse) {
        let flow = match &response.response_types {
            Some(ResponseTypes::Flow(flow)) if !self.filters.matches(flow) => return,
            Some(ResponseTypes::Flow(flow)) => Some(flow),
            _ => None,
        };
        let details = &mut self.details;
        self.model.ingest_response_then(response, |source, destination| {
            let Some(flow) = flow else { return };
            let full = details.len() >= NODES_WITH_LABELS;
            let (src_ep, dst_ep) = match flow.is_reply {
                Some(true) => (flow.destination.as_ref(), flow.source.as_ref()),
                _ => (flow.source.as_ref(), flow.destination.as_ref()),
            };
            for (key, ep) in [(source, src_ep), (destination, dst_ep)] {
                match details.get_mut(key) {
                    Some(d) => d.note(ep),
                    None if !full => details.entry(key.clone()).or_default().note(ep),
                    None => {}
                }
            }
        });
    }

    /// Whether the table of a view with `select` shows `flow`.
    pub fn selects(&self, select: &Select, flow: &Flow) -> bool {
        match select {
            Select::Nothing => true,
            Select::Node(n) => self
                .model
                .connection_of(flow)
                .is_some_and(|(s, d, _, _)| s == *n || d == *n),
            Select::Edge(from, to) => self
                .model
                .connection_of(flow)
                .is_some_and(|(s, d, _, _)| s == *from && d == *to),
        }
    }
}

/// Which view: its filter line, unit and time.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ViewKey {
    pub filter: String,
    pub unit: Unit,
    /// The last this long, from the server's history (see [`Backfill`]).
    pub last: Option<Duration>,
}

/// A view of the last N minutes being made from the server's history,
/// outside the hub's lock: the responses the server still holds from
/// `from` to `until` are taken in, then [`Hub::keep`] adds what the ring
/// got after `until` and keeps it.
pub struct Backfill {
    view: View,
    responses: u64,
    /// The time of the newest flow taken in (unix ns).
    newest_ns: u64,
}

impl Backfill {
    /// Takes in one response of the history.
    pub fn take(&mut self, response: GetFlowsResponse) {
        self.responses += 1;
        let response = Arc::new(response);
        self.view.take(&response);
        if let Some(ResponseTypes::Flow(f)) = &response.response_types {
            self.newest_ns = self.newest_ns.max(time_ns(f));
            if self.view.filters.matches(f) {
                if self.view.history.len() == HISTORY_ROWS {
                    self.view.history.pop_front();
                }
                self.view.history.push_back(Stored { seq: 0, response });
            }
        }
    }

    /// The history ended early: the view says why, and takes the ring's
    /// flows after the newest that came (the history comes in time order).
    pub fn cut_short(&mut self, notice: String) {
        self.view.notice = Some(notice);
        self.view.until_ns = self.newest_ns;
    }

    /// Responses taken in.
    pub fn responses(&self) -> u64 {
        self.responses
    }
}

pub struct Hub {
    ring: VecDeque<Stored>,
    capacity: usize,
    next_seq: u64,
    views: HashMap<ViewKey, View>,
    link: LinkState,
    server: Option<ServerInfo>,
    status_error: Option<String>,
    /// From node status events: node → its last state.
    node_states: BTreeMap<String, String>,
    lost_events: u64,
    idle: Duration,
    next_history_seq: u64,
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// Where a view of `key` made at `now` starts (unix ns; 0: at the start).
fn from_ns(key: &ViewKey, now: SystemTime) -> u64 {
    key.last
        .map_or(0, |last| unix_ns(now.checked_sub(last).unwrap_or(UNIX_EPOCH)))
}

impl Hub {
    /// A hub keeping the last `capacity` responses.
    pub fn new(capacity: usize) -> Hub {
        Hub {
            ring: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity: capacity.max(1),
            next_seq: 0,
            views: HashMap::new(),
            link: LinkState::Connecting,
            server: None,
            status_error: None,
            node_states: BTreeMap::new(),
            lost_events: 0,
            idle: VIEW_IDLE,
            next_history_seq: HISTORY_SEQ0,
        }
    }

    /// Views unused for `idle` may be dropped (default [`VIEW_IDLE`]).
    pub fn idle_after(mut self, idle: Duration) -> Hub {
        self.idle = idle;
        self
    }

    /// Takes in one event of the follow stream, at `now`.
    pub fn follow(&mut self, event: FollowEvent, now: SystemTime) {
        match event {
            FollowEvent::Connected => {
                self.link = LinkState::Connected { since_ms: unix_ms(now) };
            }
            FollowEvent::Disconnected { reason, retry_in } => {
                let since_ms = match &self.link {
                    LinkState::Reconnecting { since_ms, .. } => *since_ms,
                    _ => unix_ms(now),
                };
                self.link = LinkState::Reconnecting {
                    reason,
                    retry_in_ms: retry_in.as_millis() as u64,
                    since_ms,
                };
            }
            FollowEvent::Response(response) => self.respond(*response),
        }
    }

    /// Takes in one response of the server.
    pub fn respond(&mut self, response: GetFlowsResponse) {
        match &response.response_types {
            Some(ResponseTypes::NodeStatus(event)) => {
                let state = event.state_change().as_str_name().to_string();
                for n in &event.node_names {
                    self.node_states.insert(n.clone(), state.clone());
                }
            }
            Some(ResponseTypes::LostEvents(event)) => self.lost_events += event.num_events_lost,
            _ => {}
        }
        let response = Arc::new(response);
        for view in self.views.values_mut() {
            view.take(&response);
        }
        if self.ring.len() == self.capacity {
            self.ring.pop_front();
        }
        self.ring.push_back(Stored {
            seq: self.next_seq,
            response,
        });
        self.next_seq += 1;
    }

    /// Takes in a status poll's answer.
    pub fn status(&mut self, info: Result<ServerInfo, String>) {
        match info {
            Ok(info) => {
                self.server = Some(info);
                self.status_error = None;
            }
            Err(e) => self.status_error = Some(e),
        }
    }

    pub fn health(&self) -> Health {
        let mut unavailable: Vec<String> = self
            .server
            .iter()
            .flat_map(|s| s.unavailable_nodes.iter().cloned())
            .chain(
                self.node_states
                    .iter()
                    .filter(|(_, s)| !matches!(s.as_str(), "NODE_CONNECTED" | "UNKNOWN_NODE_STATE"))
                    .map(|(n, _)| n.clone()),
            )
            .collect();
        unavailable.sort();
        unavailable.dedup();
        Health {
            link: self.link.clone(),
            server: self.server.clone(),
            status_error: self.status_error.clone(),
            unavailable_nodes: unavailable,
            lost_events: self.lost_events,
            received: self.next_seq,
            ring: self.ring.len(),
            ring_capacity: self.capacity,
        }
    }

    /// The view of `key`, made from the ring if it is new (a view of the
    /// last N minutes from the ring's flows of that time: see [`Backfill`]
    /// for one from the server's history). Fails when the filter line is
    /// not valid, or when every view is in use.
    pub fn view(&mut self, key: &ViewKey) -> Result<&mut View, QueryError> {
        if !self.views.contains_key(key) {
            let mut view = View::new(compile(&key.filter)?, key.unit);
            view.from_ns = from_ns(key, SystemTime::now());
            self.add(key, view)?;
        }
        let view = self.views.get_mut(key).expect("inserted above");
        view.last_used = Instant::now();
        Ok(view)
    }

    /// A view of `key` (of the last N minutes) to make from the server's
    /// history of `[from, until]`; its filters are checked now.
    pub fn backfill(&self, key: &ViewKey, until: SystemTime) -> Result<Backfill, QueryError> {
        let mut view = View::new(compile(&key.filter)?, key.unit);
        view.from_ns = from_ns(key, until);
        view.until_ns = unix_ns(until);
        Ok(Backfill {
            view,
            responses: 0,
            newest_ns: 0,
        })
    }

    /// Keeps the view `backfill` made, with what the ring got after its
    /// history; one kept meanwhile (another browser's) stays.
    pub fn keep(&mut self, key: &ViewKey, backfill: Backfill) -> Result<(), QueryError> {
        if self.views.contains_key(key) {
            return Ok(());
        }
        let mut view = backfill.view;
        for stored in &mut view.history {
            stored.seq = self.next_history_seq;
            self.next_history_seq += 1;
        }
        self.add(key, view)
    }

    /// Adds `view` with the ring's responses that are its own.
    fn add(&mut self, key: &ViewKey, mut view: View) -> Result<(), QueryError> {
        if self.views.len() >= MAX_VIEWS {
            self.evict()?;
        }
        for stored in &self.ring {
            match &stored.response.response_types {
                Some(ResponseTypes::Flow(f)) if !view.owns(f) => {}
                _ => view.take(&stored.response),
            }
        }
        view.last_used = Instant::now();
        self.views.insert(key.clone(), view);
        Ok(())
    }

    /// The view of `key`, if it is kept.
    pub fn peek(&self, key: &ViewKey) -> Option<&View> {
        self.views.get(key)
    }

    /// Drops the least recently used view nobody streams, if it is idle.
    fn evict(&mut self) -> Result<(), QueryError> {
        let idle = self
            .views
            .iter()
            .filter(|(_, v)| v.users == 0 && v.last_used.elapsed() >= self.idle)
            .min_by_key(|(_, v)| v.last_used)
            .map(|(k, _)| k.clone());
        match idle {
            Some(k) => {
                self.views.remove(&k);
                Ok(())
            }
            None => Err(QueryError::Invalid {
                param: "filter",
                reason: format!("the server already keeps {MAX_VIEWS} views in use: try again in a minute"),
            }),
        }
    }

    /// Marks a stream on `key` opened (`+1`) or closed (`-1`).
    pub fn use_view(&mut self, key: &ViewKey, opened: bool) {
        if let Some(v) = self.views.get_mut(key) {
            v.users = if opened { v.users + 1 } else { v.users.saturating_sub(1) };
            v.last_used = Instant::now();
        }
    }

    /// The responses numbered `from` and later that are still in the ring.
    pub fn since(&self, from: u64) -> impl DoubleEndedIterator<Item = &Stored> {
        let first = self.ring.front().map_or(self.next_seq, |s| s.seq);
        let skip = from.saturating_sub(first).min(self.ring.len() as u64) as usize;
        self.ring.range(skip..)
    }

    /// The number the next response will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Response `seq`, if still in the ring or a view's history.
    pub fn get(&self, seq: u64) -> Option<&Stored> {
        if seq >= HISTORY_SEQ0 {
            return self.views.values().find_map(|v| {
                let i = v.history.binary_search_by_key(&seq, |s| s.seq).ok()?;
                v.history.get(i)
            });
        }
        let first = self.ring.front()?.seq;
        self.ring.get(usize::try_from(seq.checked_sub(first)?).ok()?)
    }

    /// Views kept now.
    pub fn views(&self) -> usize {
        self.views.len()
    }
}

/// The filter line's filters, compiled, or the reason they are refused.
pub fn compile(line: &str) -> Result<FlowFilterSet, QueryError> {
    let flags = crate::filters::FilterFlags::parse_line(line).map_err(QueryError::Filter)?;
    lumen_flow::compile(&flags.whitelist, &flags.blacklist).map_err(|e| QueryError::Filter(e.to_string()))
}

#[cfg(test)]
mod tests;
