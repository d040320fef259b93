//! Flow export: flow log files in the format of Hubble's exporter, and
//! OTLP log records and metrics ([`otlp`]), each behind its own bounded
//! queue and thread, so that a slow or full disk or collector never slows
//! the flow pipeline, the gRPC API or the other exporters.
//!
//! * Configuration: the static `--export-*` flags ([`ExportArgs`]) and
//!   Hubble's dynamic `flowLogs:` file ([`FlowLogsConfig`]), re-read while
//!   running ([`Watcher`]); [`Exporters::apply`] starts, restarts and stops
//!   only the flow logs that changed, or nothing with the reason.
//! * Filters are compiled with the code GetFlows uses, field masks with
//!   [`lumen_flow::mask::FlowMask`].
//! * Lines: a `GetFlowsResponse` in the protobuf JSON mapping with proto
//!   field names, one a line: `{"flow":{…},"node_name":"…","time":"…"}`,
//!   and `{"lost_events":{…},"node_name":"…","time":"…"}` for a loss.
//! * Files are rotated by size to `<file>.1` … `<file>.N` (`.gz` with
//!   compression); a failed write is counted and reported, never fatal.
//! * Every export thread runs [`NICE`] nicer than the daemon: when the
//!   CPU is short, the flow pipeline and the API come first, and what an
//!   exporter cannot keep up with is dropped at its queue and counted (a
//!   loss notice that finds the queue full is merged with the others of
//!   its source and written with the next batch, never dropped).
//! * An exporter's thread hands the records it wrote back to the offering
//!   thread, which frees them (its allocator takes back its own memory far
//!   more cheaply).
//! * Drops: [`ExporterStats`] has what
//!   `lumen_exporter_dropped_total{exporter,reason}` serves (reasons
//!   [`DropReason::as_str`]: `queue_full`, `write_error`); a flow the
//!   filters reject is not a drop.
//!
//! ## Aggregated flow logs
//!
//! With `fieldAggregate` (`--export-aggregate-fields`), a flow log writes,
//! at the end of every `aggregationInterval`, one line per distinct
//! combination of those `Flow` fields seen in the interval, in the order
//! first seen: the flow with only those fields, and Hubble's `aggregate`
//! with the flows counted by `traffic_direction`; `time` is the end of the
//! interval and `node_name` the daemon's. Counts of 0 are left out, as the
//! JSON mapping leaves out every default value:
//!
//! ```json
//! {"flow":{"verdict":"DROPPED","source":{"namespace":"default"},
//!   "aggregate":{"ingress_flow_count":2,"egress_flow_count":1}},
//!  "node_name":"node1","time":"2024-01-01T10:00:30Z"}
//! ```
//!
//! (one line in the file). What was counted when the flow log stops is
//! written then.
//!
//! ```
//! use std::sync::Arc;
//! use lumen_export::{Exporters, FlowLogConfig};
//! use lumen_proto::flow::{Flow, Verdict};
//!
//! let dir = tempfile::tempdir()?;
//! let exporters = Exporters::new("node1");
//! exporters.start_static(FlowLogConfig::new("static", dir.path().join("events.log")))?;
//! exporters.offer_flow(&Arc::new(Flow { verdict: Verdict::Forwarded as i32, ..Default::default() }));
//! exporters.shutdown();
//! assert_eq!(
//!     std::fs::read_to_string(dir.path().join("events.log"))?,
//!     "{\"flow\":{\"verdict\":\"FORWARDED\"},\"node_name\":\"node1\"}\n"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aggregate;
mod args;
pub mod config;
mod error;
mod file;
pub mod line;
mod manager;
pub mod otlp;
mod outputs;
mod queue;
mod rotate;
mod watch;

/// What every export thread (a flow log's writer, the OTLP runtime, the
/// OTLP metrics loop) adds to its nice value (up to 19).
pub const NICE: i32 = 10;

/// Lowers the calling thread's CPU priority by [`NICE`]; a failure (a
/// sandbox that forbids it) leaves the thread as it was, logged.
pub(crate) fn lower_priority() {
    // SAFETY: gettid has no preconditions; getpriority and setpriority with
    // PRIO_PROCESS and a thread id read and change only that thread's nice
    // value on Linux (getpriority's -1 is a valid value, not an error, here).
    let changed = unsafe {
        let tid = libc::gettid() as libc::id_t;
        let nice = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (nice + NICE).min(19))
    };
    if changed != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower an export thread's priority");
    }
}

pub use aggregate::Aggregator;
pub use args::{ExportArgs, FlowFilters, STATIC_NAME};
pub use config::{Compiled, FlowLogConfig, FlowLogsConfig};
pub use error::{ConfigError, ReloadError};
pub use file::FlowLogSink;
pub use manager::{Applied, ExportStats, Exporters};
pub use otlp::{Otlp, OtlpArgs, OtlpError, OtlpService, OtlpSettings, OtlpStats};
pub use outputs::{Outputs, OutputsError};
pub use queue::{
    system_clock, Admission, BuiltFlow, Clock, Counters, DropReason, Exporter, ExporterStats, LazyFlow, Outcome,
    Record, Sink, DEFAULT_QUEUE_CAPACITY,
};
pub use rotate::{RotatingFile, Tally};
pub use watch::{ConfigFile, Watcher, POLL};
