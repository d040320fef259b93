//! What every server of `GetFlows` checks before answering: an observer for
//! its own flows, a relay before asking its nodes. A request either passes
//! whole or is refused with the reason (gRPC `INVALID_ARGUMENT`).

use lumen_proto::observer::GetFlowsRequest;
use lumen_proto::prost_types::Timestamp;
use lumen_proto::tonic::Status;

use crate::mask::{FlowMask, MaskError};
use crate::plan::Plan;
use crate::{FilterError, FlowFilterSet};

/// A request no server can serve as asked.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("first cannot be specified with follow")]
    FirstWithFollow,
    #[error("invalid filter: {0}")]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Mask(#[from] MaskError),
    #[error("invalid {field} timestamp: {seconds}s {nanos}ns")]
    Timestamp {
        field: &'static str,
        seconds: i64,
        nanos: i32,
    },
}

impl From<RequestError> for Status {
    fn from(e: RequestError) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

/// The parts of a request that need compiling, compiled. Times are
/// wall-clock ns since the epoch.
pub struct Checked {
    /// Which flows of the history: number, first, follow, since, until.
    pub plan: Plan,
    pub filters: FlowFilterSet,
    /// The flow fields the client asked for, if it named any.
    pub mask: Option<FlowMask>,
}

impl Checked {
    /// Whether the flows sent carry Lumen's `extensions`: when the client
    /// named the field in its mask, or sent no mask and
    /// [`lumen_proto::EXTENSIONS_HEADER`] (`header`). Hubble's clients do
    /// neither, and cannot decode an `Any` of a type they do not know.
    pub fn sends_extensions(&self, header: bool) -> bool {
        self.mask.as_ref().map_or(header, |m| m.keeps("extensions"))
    }
}

/// Whether `metadata` carries [`lumen_proto::EXTENSIONS_HEADER`].
pub fn asks_extensions(metadata: &lumen_proto::tonic::metadata::MetadataMap) -> bool {
    metadata.contains_key(lumen_proto::EXTENSIONS_HEADER)
}

/// Checks `req` whole.
pub fn check(req: &GetFlowsRequest) -> Result<Checked, RequestError> {
    Ok(Checked {
        plan: Plan::new(req)?,
        filters: crate::compile(&req.whitelist, &req.blacklist)?,
        mask: FlowMask::new(req.field_mask.as_ref().map_or(&[][..], |m| &m.paths[..]))?,
    })
}

pub(crate) fn timestamp_ns(field: &'static str, t: &Timestamp) -> Result<u64, RequestError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(RequestError::Timestamp {
            field,
            seconds: t.seconds,
            nanos: t.nanos,
        });
    }
    // Before the epoch is before every flow.
    Ok(u64::try_from(t.seconds).map_or(0, |s| s.saturating_mul(1_000_000_000).saturating_add(t.nanos as u64)))
}
