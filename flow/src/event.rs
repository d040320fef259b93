//! Filters on what kind of event a flow is: `event_type`, `reply`,
//! `interface`, and Cilium's monitor message type numbers.

use lumen_proto::flow::{EventTypeFilter, Flow, NetworkInterface, Verdict};

/// Cilium monitor message types (`pkg/monitor/api`), the numbers carried in
/// `Flow.event_type.type` and matched by `EventTypeFilter.type`.
pub mod monitor_type {
    /// Datapath drop notification; sub-type is the drop reason.
    pub const DROP: i32 = 1;
    pub const DEBUG: i32 = 2;
    pub const CAPTURE: i32 = 3;
    /// Datapath trace notification; sub-type is the observation point.
    pub const TRACE: i32 = 4;
    pub const POLICY_VERDICT: i32 = 5;
    pub const RECORDER_CAPTURE: i32 = 6;
    pub const TRACE_SOCK: i32 = 7;
    /// L7 proxy access log (Hubble's `l7` event type).
    pub const ACCESS_LOG: i32 = 129;
    pub const AGENT: i32 = 130;
}

/// `event_type`: type 0 in the filter matches any type; the sub-type is
/// compared only when `match_sub_type` is set (0 is a valid sub-type).
#[derive(Debug, Clone)]
pub(crate) struct EventTypeMatcher(pub(crate) Vec<EventTypeFilter>);

impl EventTypeMatcher {
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let Some(ev) = flow.event_type.as_ref() else {
            return false;
        };
        self.0
            .iter()
            .any(|f| (f.r#type == 0 || f.r#type == ev.r#type) && (!f.match_sub_type || f.sub_type == ev.sub_type))
    }
}

/// `reply`, against `Flow.is_reply`. A flow that does not know whether it
/// is a reply matches no reply filter, except that, like Hubble, a dropped
/// flow without `is_reply` counts as not a reply (older clients, Hubble UI
/// among them, filter drops with `reply: [false]`).
#[derive(Debug, Clone)]
pub(crate) struct ReplyMatcher(pub(crate) Vec<bool>);

impl ReplyMatcher {
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let is_reply = match flow.is_reply {
            Some(r) => r,
            None if flow.verdict == Verdict::Dropped as i32 => false,
            None => return false,
        };
        self.0.contains(&is_reply)
    }
}

/// `interface`: a non-zero index and a non-empty name must each equal the
/// flow's; an entry with neither matches any flow that has an interface.
#[derive(Debug, Clone)]
pub(crate) struct InterfaceMatcher(pub(crate) Vec<NetworkInterface>);

impl InterfaceMatcher {
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let Some(iface) = flow.interface.as_ref() else {
            return false;
        };
        self.0
            .iter()
            .any(|f| (f.index == 0 || f.index == iface.index) && (f.name.is_empty() || f.name == iface.name))
    }
}
