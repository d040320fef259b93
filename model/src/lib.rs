//! What `lumen top` and `lumen-ui` show: flows folded into bounded tables.
//!
//! A [`Model`] is a pure, deterministic fold. [`Model::ingest`] counts a
//! flow at the flow's own time; [`Model::snapshot`] takes `now` from the
//! caller and returns plain, serialisable rows (the JSON of `lumen top
//! --once -o json` and of the UI). There is no clock and no thread: the
//! consumer owns both, and tests replay flows at synthetic times.
//!
//! * Endpoints become [`NodeKey`]s under a [`Unit`] (workload by default).
//!   Replies count for the connection they answer.
//! * Tables: connections (source, destination, port, protocol), edges (the
//!   connections of each node pair, for the map), workloads (per node of
//!   the unit), drops (by reason, policy, destination), cluster nodes, and
//!   lost events.
//! * Rates come from fixed rings of one-second and one-minute buckets per
//!   entry ([`Window`]), exact over whole buckets from 1 s to 10 min.
//! * Every table has a capacity and evicts its least recently seen entry,
//!   counting the eviction in the snapshot; the lists inside an entry (pods,
//!   drop reasons, policies, ports) are capped too, with a count of the
//!   rest. Memory depends on [`Config`], never on the flow rate.
//! * [`Table::query`] sorts a snapshot's table by any column, keeps a
//!   namespace or node selection, and cuts it to the top N.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use lumen_model::{Config, ConnectionColumn, Model, Query, Windows};
//! use lumen_proto::flow::{Endpoint, Flow, Verdict};
//! use lumen_proto::prost_types::Timestamp;
//!
//! let pod = |app: &str| Endpoint {
//!     identity: 1000,
//!     namespace: "shop".into(),
//!     labels: vec![format!("k8s:app={app}")],
//!     ..Default::default()
//! };
//! let mut model = Model::new(Config::default());
//! for second in 0..20 {
//!     model.ingest(&Flow {
//!         time: Some(Timestamp { seconds: 1_700_000_000 + second, nanos: 0 }),
//!         verdict: Verdict::Forwarded as i32,
//!         source: Some(pod("web")),
//!         destination: Some(pod("db")),
//!         ..Default::default()
//!     });
//! }
//! let now = UNIX_EPOCH + Duration::from_secs(1_700_000_020);
//! let snapshot = model.snapshot(now, Windows::default());
//! let top = snapshot.connections.query(&Query::top(ConnectionColumn::FlowsPerSec, 10));
//! assert_eq!(top.rows[0].source.to_string(), "shop/web");
//! assert_eq!((top.rows[0].flows, top.rows[0].flows_per_sec), (20, 1.0));
//! ```

mod connections;
mod decode;
mod drops;
mod key;
mod lru;
mod model;
mod nodes;
mod table;
mod window;
mod workloads;

#[cfg(test)]
mod tests;

pub use connections::{ConnectionColumn, ConnectionRow, Counted, EdgeColumn, EdgeRow, Health, Port};
pub use decode::{decode_response, FlowReader};
pub use drops::{DropColumn, DropKey, DropRow, DropTables, Reason};
pub use key::{NodeKey, NodeKind, PolicyRef, Protocol, Unit};
pub use model::{Config, Model, Snapshot, Totals};
pub use nodes::{LossRow, NodeColumn, NodeRow, Usage};
pub use table::{Order, Query, Row, Selection, Table};
pub use window::{Window, Windows, HISTORY_SECS};
pub use workloads::{WorkloadColumn, WorkloadRow};
