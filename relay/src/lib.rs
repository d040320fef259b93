//! Lumen's relay as a library: `pool` (one connection per node, found
//! through a static list or an observer's peer service) → `merge` (a
//! bounded, time-ordered sort window) → `server` (Hubble's Observer API for
//! the whole cluster), and `metrics` (`/metrics` for Prometheus, when
//! asked for). The binary is a thin wrapper; tests start the same code
//! in-process.

pub mod daemon;
pub mod export;
pub mod merge;
pub mod metrics;
pub mod pool;
pub mod server;
pub mod telemetry;

pub use daemon::{run, RelayConfig, RelayHandle};
