//! Hubble flow filters, compiled once and matched against flows.
//!
//! The observer, the relay, the CLI (offline `--input-file`) and the UI all
//! filter `flow.Flow`s with the same `FlowFilter` lists Hubble's
//! `GetFlowsRequest` carries. This crate turns those lists into a
//! [`FlowFilterSet`] once per request and answers [`FlowFilterSet::matches`]
//! per flow, with Hubble's semantics:
//!
//! * a flow passes when it matches any whitelist filter (or the whitelist is
//!   empty) and no blacklist filter;
//! * inside one `FlowFilter` every populated field must match (AND);
//! * inside one repeated field any value may match (OR).
//!
//! Everything that can be parsed (CIDRs, label selectors, globs, regexes,
//! ports) is parsed at compile time; matching reads the flow in place and
//! only allocates to percent-decode an HTTP path that has escapes. A field
//! Lumen cannot evaluate is refused with [`FilterError::Unsupported`], never
//! silently ignored.
//!
//! ```
//! use lumen_flow::{compile, FilterError};
//! use lumen_proto::flow::{Endpoint, Flow, FlowFilter, Verdict};
//!
//! let whitelist = [FlowFilter { source_pod: vec!["default/front".into()], ..Default::default() }];
//! let blacklist = [FlowFilter { verdict: vec![Verdict::Dropped as i32], ..Default::default() }];
//! let filters = compile(&whitelist, &blacklist)?;
//!
//! let flow = Flow {
//!     verdict: Verdict::Forwarded as i32,
//!     source: Some(Endpoint { namespace: "default".into(), pod_name: "frontend-7d4f".into(), ..Default::default() }),
//!     ..Default::default()
//! };
//! assert!(filters.matches(&flow));
//!
//! let bad = [FlowFilter { source_ip: vec!["10.0.0.0/33".into()], ..Default::default() }];
//! assert_eq!(
//!     compile(&bad, &[]).unwrap_err().to_string(),
//!     "invalid CIDR \"10.0.0.0/33\" in source_ip: prefix length out of range"
//! );
//! # Ok::<(), FilterError>(())
//! ```

mod cel;
mod describe;
mod endpoint;
mod error;
mod event;
mod filter;
pub mod format;
mod ip;
pub mod jsonpb;
mod l4;
mod l7;
mod label;
pub mod mask;
mod pattern;
pub mod plan;
pub mod request;
pub mod summary;
pub mod tcp;

#[cfg(test)]
mod tests;

use lumen_proto::flow::{Flow, FlowFilter};

pub use describe::describe;
pub use error::{CelError, FilterError, PatternError, SelectorError};
pub use event::monitor_type;
pub use filter::CompiledFilter;
pub use ip::Cidr;

/// A whitelist and a blacklist of compiled filters.
///
/// The default set has both lists empty and matches every flow.
#[derive(Debug, Clone, Default)]
pub struct FlowFilterSet {
    whitelist: Vec<CompiledFilter>,
    blacklist: Vec<CompiledFilter>,
}

impl FlowFilterSet {
    /// Compiles both lists; the first filter that does not compile decides the error.
    pub fn new(whitelist: &[FlowFilter], blacklist: &[FlowFilter]) -> Result<Self, FilterError> {
        let compile_all = |list: &[FlowFilter]| list.iter().map(CompiledFilter::new).collect::<Result<Vec<_>, _>>();
        Ok(Self {
            whitelist: compile_all(whitelist)?,
            blacklist: compile_all(blacklist)?,
        })
    }

    /// Whether `flow` matches any whitelist filter (or the whitelist is
    /// empty) and no blacklist filter.
    pub fn matches(&self, flow: &Flow) -> bool {
        (self.whitelist.is_empty() || self.whitelist.iter().any(|f| f.matches(flow)))
            && !self.blacklist.iter().any(|f| f.matches(flow))
    }

    /// Whether both lists are empty, so that every flow matches without
    /// looking (a server can skip filtering altogether).
    pub fn is_empty(&self) -> bool {
        self.whitelist.is_empty() && self.blacklist.is_empty()
    }
}

/// Compiles a whitelist and a blacklist; see [`FlowFilterSet::new`].
pub fn compile(whitelist: &[FlowFilter], blacklist: &[FlowFilter]) -> Result<FlowFilterSet, FilterError> {
    FlowFilterSet::new(whitelist, blacklist)
}

/// Which endpoint of a flow a filter field refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Source,
    Destination,
}

impl Side {
    pub(crate) fn pick<T>(self, source: T, destination: T) -> T {
        match self {
            Side::Source => source,
            Side::Destination => destination,
        }
    }
}
