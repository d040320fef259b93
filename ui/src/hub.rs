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
}

impl View {
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

/// Which view: its filter line and unit.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ViewKey {
    pub filter: String,
    pub unit: Unit,
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
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
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

    /// The view of `key`, made from the ring if it is new. Fails when the
    /// filter line is not valid, or when every view is in use.
    pub fn view(&mut self, key: &ViewKey) -> Result<&mut View, QueryError> {
        if !self.views.contains_key(key) {
            let filters = compile(&key.filter)?;
            if self.views.len() >= MAX_VIEWS {
                self.evict()?;
            }
            let mut view = View {
                filters,
                model: Model::new(Config {
                    unit: key.unit,
                    ..Config::default()
                }),
                details: HashMap::new(),
                users: 0,
                last_used: Instant::now(),
            };
            for stored in &self.ring {
                view.take(&stored.response);
            }
            self.views.insert(key.clone(), view);
        }
        let view = self.views.get_mut(key).expect("inserted above");
        view.last_used = Instant::now();
        Ok(view)
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

    /// Response `seq`, if still in the ring.
    pub fn get(&self, seq: u64) -> Option<&Stored> {
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
