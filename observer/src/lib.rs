//! Lumen's node observer as a library: the binary is a thin wrapper, and
//! tests and `lumen demo` start the same code in-process.
//!
//! Stages: `datapath` (load, pin, attach, write maps) → `state` (endpoints,
//! identities, rules) → `reader` (ring buffer) → `decode` (pure) →
//! `output` (JSON lines) and `hub` (flow store) → `parser` → `server`
//! (Hubble's Observer gRPC service) and `metrics` (Prometheus). `control` serves runtime changes
//! (the `lumen.v1.Control` gRPC service).

pub mod control;
pub mod counters;
pub mod daemon;
pub mod datapath;
pub mod decode;
pub mod endpoint;
pub mod export;
pub mod hub;
pub mod metrics;
pub mod output;
pub mod parser;
pub mod peer;
pub mod policies;
pub mod reader;
pub mod server;
pub mod source;
pub mod state;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

/// An error and its causes, `outer: inner: …`, for one-line reports.
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

pub use lumen_policy::identity;

pub use daemon::{run, Aggregation, ObserverConfig, ObserverError, ObserverHandle};
