//! The server stage: Hubble's `observer.Observer` service over the hub, plus
//! the standard gRPC health service, on a Unix socket and optionally TCP.
//!
//! `GetFlows` follows Hubble's local observer: `first` starts at the oldest
//! flow held; otherwise the reader rewinds from the newest flow until it has
//! `number` matching flows (all held when `number` is 0) or reaches `since`;
//! `follow` then keeps streaming. Each client has its own task, bounded
//! channel and subscription to the hub.
//!
//! - `query`: the request checked, compiled and planned (start, admit);
//! - `prefilter`: the test on the stored record before a flow is built;
//! - `stream`: one client's subscription turned into responses;
//! - `service`: the gRPC service;
//! - `listen`: sockets, TLS, serving and shutdown.

mod listen;
mod prefilter;
mod query;
mod service;
mod stream;

pub use listen::{bind_tcp, bind_unix, connect_unix, serve, serve_tls};
pub use lumen_proto::{LOST_CLIENT_HEADER, LOST_KERNEL_HEADER};
pub use prefilter::Prefilter;
pub use query::{Admit, Query, RequestError};
pub use service::ObserverService;

#[cfg(test)]
mod tests;
