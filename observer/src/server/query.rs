//! Planning one `GetFlows` call: the request checked and compiled, where in
//! the store it starts, and which flows read forward go out. The window
//! semantics (number, first, follow, since, until) are lumen-flow's
//! [`Plan`], shared with the relay and the CLI's `--input-file`.

use std::sync::Arc;

use lumen_flow::plan::{Plan, Start};
use lumen_flow::FlowFilterSet;
use lumen_proto::observer::GetFlowsRequest;

pub use lumen_flow::plan::Admit;
pub use lumen_flow::request::RequestError;

use super::prefilter::Prefilter;
use crate::hub::{Hub, Subscription};
use crate::store::StoredFlow;

/// A validated `GetFlowsRequest`.
pub struct Query {
    pub plan: Plan,
    pub filters: FlowFilterSet,
    /// A cheap test on the stored record that never rejects a flow the
    /// filters accept; only flows passing it are built and matched.
    pub prefilter: Prefilter,
    /// The flow fields the client asked for, if it named any.
    pub mask: Option<lumen_flow::mask::FlowMask>,
    /// Whether flows go out with Lumen's extension (only to clients that
    /// ask: see [`lumen_flow::request::Checked::sends_extensions`]).
    pub extensions: bool,
}

impl Query {
    /// `extensions_header`: the request carried
    /// [`lumen_proto::EXTENSIONS_HEADER`].
    pub fn new(req: &GetFlowsRequest, extensions_header: bool) -> Result<Query, RequestError> {
        let checked = lumen_flow::request::check(req)?;
        Ok(Query {
            extensions: checked.sends_extensions(extensions_header),
            plan: checked.plan,
            filters: checked.filters,
            prefilter: Prefilter::new(&req.whitelist),
            mask: checked.mask,
        })
    }

    /// Whether a stored flow passes the request's filters.
    pub fn matches(&self, hub: &Hub, f: &StoredFlow) -> bool {
        self.prefilter.may_match(hub, f) && (self.filters.is_empty() || self.filters.matches(&hub.to_flow(f)))
    }

    /// Sequence number to start reading at. `newest_first` walks the flows
    /// held back from the newest; `oldest` is the oldest held and `next` the
    /// sequence number the next flow gets.
    pub fn start(
        &self,
        newest_first: impl IntoIterator<Item = StoredFlow>,
        oldest: u64,
        next: u64,
        matches: impl Fn(&StoredFlow) -> bool,
    ) -> u64 {
        match self.plan.start(newest_first, |f| f.event.timestamp_ns, matches) {
            Start::Oldest => oldest,
            Start::Next => next,
            Start::At(f) => f.seq,
            Start::After(f) => f.seq + 1,
        }
    }

    /// Whether a flow read forward goes out; `sent` flows went out before.
    pub fn admit(&self, sent: u64, f: &StoredFlow, matches: impl FnOnce() -> bool) -> Admit {
        self.plan.admit(sent, f.event.timestamp_ns, matches)
    }

    /// The hub's stream from where this request starts.
    pub fn subscribe(&self, hub: &Arc<Hub>) -> Subscription {
        hub.subscribe(self.plan.follow, |h| {
            self.start(h.newest_first(), h.oldest, h.next, |f| self.matches(h.hub(), f))
        })
    }
}
