//! The dashboard's state, folded from what the server sends and the keys
//! pressed, and tested without a terminal: flows go into the shared model
//! ([`lumen_model::Model`]), the newest few into a tail for the Flows tab;
//! keys move between tabs, rows, sort columns and drill-down levels.
//! Rendering reads a [`Screen`] taken from it at most ten times a second.

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use lumen_model::{Config, Model, Snapshot, Window, Windows};
use lumen_proto::flow::Flow;
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_rpc::FollowEvent;

use super::conn::{Received, ServerInfo, Update};
use super::tabs::{Level, Tab};
use crate::filters::FilterFlags;

/// Flows kept for the Flows tab and for drilling down to flows.
pub const TAIL: usize = 2000;

/// The rate windows `+` and `-` step through.
pub const WINDOWS: [u32; 6] = [10, 30, 60, 120, 300, 600];

/// A flow of the tail: as received, and, once the Flows tab has shown it,
/// whole.
#[derive(Debug)]
pub struct Tailed {
    /// Boxed as it arrived: moved once.
    received: Box<Received>,
    whole: OnceCell<Flow>,
}

impl Tailed {
    fn flow(&self) -> Option<&Flow> {
        match &self.received.response.response_types {
            Some(ResponseTypes::Flow(f)) => Some(f),
            _ => None,
        }
    }

    /// The whole flow (the decoded part if the bytes do not decode whole).
    fn whole(&self, read: &Flow) -> &Flow {
        self.whole
            .get_or_init(|| self.received.whole_flow().unwrap_or_else(|| read.clone()))
    }
}

/// The link to the server as the header shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum Link {
    Connecting,
    Connected,
    /// Lost; reconnecting in `retry_in` (what is shown stays).
    Disconnected {
        reason: String,
        retry_in: Duration,
    },
}

/// The `/` prompt.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prompt {
    pub text: String,
    /// Why the last text was refused.
    pub error: Option<String>,
}

/// Sort state of one tab: the column index into its columns, and direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    pub column: usize,
    pub ascending: bool,
}

/// Everything the dashboard knows.
pub struct App {
    pub server: String,
    pub info: Option<ServerInfo>,
    pub info_error: Option<String>,
    pub link: Link,
    pub model: Model,
    pub tail: VecDeque<Tailed>,
    /// Flows received since the start (or the last filter change).
    pub received: u64,
    pub tab: Tab,
    /// Drill-down path; empty at the top level of the tab.
    pub path: Vec<Level>,
    pub sort: [Sort; 5],
    pub selected: usize,
    /// While paused, the screen shows this snapshot, and flows that arrive
    /// are counted (and folded in) but not shown.
    pub paused: Option<(Box<Snapshot>, u64)>,
    pub prompt: Option<Prompt>,
    /// The filter flags in force, as typed.
    pub filter_text: String,
    pub filters: FilterFlags,
    pub window: usize,
    pub help: bool,
    pub detail: bool,
    pub quit: bool,
    /// Printed on exit (`y`): the selection as a `lumen observe` command line.
    pub print_on_exit: Option<String>,
    /// A one-line message in the footer (a file written, an error).
    pub message: Option<String>,
    /// Set when the filters changed: the stream must restart with them.
    pub restart: bool,
}

impl App {
    pub fn new(server: &str, filter_text: &str, filters: FilterFlags) -> App {
        App {
            server: server.to_string(),
            info: None,
            info_error: None,
            link: Link::Connecting,
            model: Model::new(Config::default()),
            tail: VecDeque::with_capacity(TAIL),
            received: 0,
            tab: Tab::Workloads,
            path: Vec::new(),
            sort: Tab::ALL.map(|t| t.default_sort()),
            selected: 0,
            paused: None,
            prompt: None,
            filter_text: filter_text.to_string(),
            filters,
            window: 0,
            help: false,
            detail: false,
            quit: false,
            print_on_exit: None,
            message: None,
            restart: false,
        }
    }

    pub fn windows(&self) -> Windows {
        Windows {
            short: Window::from_secs(WINDOWS[self.window]),
            long: Window::from_secs(WINDOWS[self.window].max(60)),
        }
    }

    /// Folds in one update from the server.
    pub fn update(&mut self, update: Update, now: SystemTime) {
        match update {
            Update::Follow(FollowEvent::Connected) => self.link = Link::Connected,
            Update::Follow(FollowEvent::Disconnected { reason, retry_in }) => {
                self.link = Link::Disconnected { reason, retry_in }
            }
            Update::Follow(FollowEvent::Response(r)) => self.response(r, now),
            Update::Follows(events) => {
                for event in events {
                    self.update(Update::Follow(event), now);
                }
            }
            Update::Status(info) => {
                self.info = Some(info);
                self.info_error = None;
            }
            Update::StatusFailed(e) => self.info_error = Some(e),
        }
    }

    /// Folds in one response: a flow, a loss, a node's status.
    pub fn response(&mut self, r: Box<Received>, now: SystemTime) {
        match &r.response.response_types {
            Some(ResponseTypes::Flow(_)) => {
                self.received += 1;
                if let Some((_, arrived)) = &mut self.paused {
                    *arrived += 1;
                }
                self.model.ingest_response(&r.response);
                if self.tail.len() == TAIL {
                    self.tail.pop_front();
                }
                self.tail.push_back(Tailed {
                    received: r,
                    whole: OnceCell::new(),
                });
            }
            Some(ResponseTypes::NodeStatus(status)) => self.model.node_status(status, now),
            Some(ResponseTypes::LostEvents(lost)) => self.model.lost_events(lost, &r.response.node_name, now),
            None => {}
        }
    }

    /// The snapshot the screen shows at `now`: the paused one, or a new one.
    pub fn snapshot(&self, now: SystemTime) -> Snapshot {
        match &self.paused {
            Some((s, _)) => (**s).clone(),
            None => self.model.snapshot(now, self.windows()),
        }
    }

    /// What the current level shows.
    pub fn level(&self) -> Level {
        self.path.last().cloned().unwrap_or(Level::Top(self.tab))
    }

    /// Flows of the tail the current level shows (newest last), whole;
    /// none at a level that lists no flows (so none is decoded whole).
    pub fn flows(&self) -> Vec<&Flow> {
        let level = self.level();
        if !level.lists_flows() {
            return Vec::new();
        }
        self.tail
            .iter()
            .filter_map(|t| Some((t, t.flow()?)))
            .filter(|(_, f)| level.keeps_flow(f, &self.model))
            .map(|(t, f)| t.whole(f))
            .collect()
    }

    /// Restarts the fold (a new filter): what was counted no longer applies.
    pub fn reset(&mut self) {
        self.model = Model::new(Config::default());
        self.tail.clear();
        self.received = 0;
        self.paused = None;
        self.selected = 0;
        self.path.clear();
    }
}
