//! Hubble's flow metrics over `flow.Flow`: the same names, labels, label
//! values, options and configuration forms, so that Hubble's dashboards
//! and alerts work unchanged; without Hubble's leaks: a cap on series per
//! metric, and the series of a deleted pod removed after a grace period.
//!
//! Pure: no kernel, no clock (time is passed in), no I/O. The observer
//! feeds it flows from the hub and serves [`Registry::render`] on
//! `/metrics`.
//!
//! | metric (`--metrics` name) | series | labels |
//! |---|---|---|
//! | `flow` | `hubble_flows_processed_total` | `protocol`, `type`, `subtype`, `verdict` |
//! | `drop` | `hubble_drop_total` | `reason`, `protocol` |
//! | `tcp` | `hubble_tcp_flags_total` | `flag`, `family` |
//! | `port-distribution` | `hubble_port_distribution_total` | `protocol`, `port` |
//! | `icmp` | `hubble_icmp_total` | `family`, `type` |
//! | `flows-to-world` | `hubble_flows_to_world_total` | `protocol`, `verdict`, `port` with option `port` |
//! | `policy` | `hubble_policy_verdicts_total` | `direction`, `match`, `action` |
//! | `flow-io` (Lumen's) | `lumen_flow_io_bytes_total`: bytes, not flows | `protocol`, `verdict`, `direction` |
//!
//! Every metric also takes the context options (`sourceContext`, …, see
//! [`context`](crate::context)). `dns`, `http`, `httpV2` and `kafka` are
//! accepted with their options but have no series: Lumen has no L7 flows.
//! `flow-io` counts the bytes of flows whose packet length is known
//! ([`Registry::process_sized`], [`Registry::process_alike`]): an
//! observer's, not a relay's (flows carry no byte count).
//!
//! ```
//! use lumen_metrics::{MetricsConfig, Registry, Settings};
//! use lumen_proto::flow::{CiliumEventType, DropReason, Flow, Layer4, Tcp, Verdict, layer4::Protocol};
//!
//! let registry = Registry::new(Settings::default());
//! registry.configure(&MetricsConfig::parse_flag("drop:sourceContext=pod"))?;
//! let denied = Flow {
//!     verdict: Verdict::Dropped as i32,
//!     drop_reason_desc: DropReason::PolicyDenied as i32,
//!     event_type: Some(CiliumEventType { r#type: 1, sub_type: 133 }),
//!     l4: Some(Layer4 { protocol: Some(Protocol::Tcp(Tcp::default())) }),
//!     ..Default::default()
//! };
//! registry.process([&denied, &denied]);
//! assert!(registry
//!     .render()
//!     .contains("hubble_drop_total{protocol=\"TCP\",reason=\"POLICY_DENIED\",source=\"\"} 2\n"));
//! # Ok::<(), lumen_metrics::ConfigError>(())
//! ```

pub mod config;
pub mod context;
mod error;
pub mod exposition;
#[cfg(test)]
mod fixtures;
mod handlers;
mod labels;
mod registry;
mod series;

pub use config::{ContextOption, MetricConfig, MetricsConfig};
pub use error::{ConfigError, OptionError};
pub use handlers::FLOW_IO;
pub use registry::{encode, Alike, Counts, Reads, Registry, Settings, DEFAULT_GRACE_PERIOD, DEFAULT_MAX_SERIES};
