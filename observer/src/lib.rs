//! Lumen's node observer as a library: the binary is a thin wrapper, and
//! tests and `lumen demo` start the same code in-process.
//!
//! Stages: `datapath` (load, pin, attach, write maps) → `state` (endpoints,
//! identities, rules) → `reader` (ring buffer) → `decode` (pure) →
//! `output` (JSON lines). `control` serves runtime changes.

pub mod control;
pub mod counters;
pub mod daemon;
pub mod datapath;
pub mod decode;
pub mod endpoint;
pub mod identity;
pub mod output;
pub mod reader;
pub mod rules;
pub mod source;
pub mod state;

pub use daemon::{run, Aggregation, ObserverConfig, ObserverError, ObserverHandle};
