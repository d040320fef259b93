//! The one client for Lumen's gRPC APIs.
//!
//! Every consumer of an observer or a relay (`lumen observe`, `status`,
//! `list`, the coming `lumen top` and `lumen-ui`) connects through this
//! crate, so that where to connect, TLS, HTTP/2 settings and the
//! relay-then-local fallback are written once:
//!
//! * [`Target`]: `host:port` or `unix:///path`, parsed once with a clear error;
//! * [`TlsArgs`]: the TLS flags (`--tls`, `--tls-ca-cert-files`, ...), one
//!   set for every binary that talks to a server;
//! * [`connect`] and [`connect_default`]: a channel with Lumen's HTTP/2
//!   settings ([`http2`]), to the given server or to the relay on
//!   `127.0.0.1:4245` and else the local observer's socket;
//! * [`Follow`]: a follow stream of flows that reconnects with backoff,
//!   resumes from the last flow's time without gaps or duplicates, and says
//!   so in the stream ([`FollowEvent`]).
//!
//! [`serve`] holds what the servers share: sockets, health, stopping with a
//! grace period; [`tls`] reads certificates for clients and servers;
//! [`telemetry`] is the daemons' typed self-telemetry (events that count and
//! log together).
//!
//! It depends on the schema (`lumen-proto`) only, never on the observer, so
//! consumers build without clang, libbpf or aya.

mod connect;
pub mod control;
mod follow;
pub mod raw;
pub mod serve;
pub mod status;
mod target;
pub mod telemetry;
pub mod tls;

pub use connect::{connect, connect_default, connect_unix, http2, ConnectError, TlsArgs};
pub use follow::{Backoff, Connector, Follow, FollowEvent, FollowItem};
pub use target::{Target, TargetError};

/// Where `lumen` looks without `--server`: the relay first...
pub const DEFAULT_RELAY: &str = "127.0.0.1:4245";
/// ...then the local observer.
pub const DEFAULT_OBSERVER: &str = "unix:///var/run/lumen/observer.sock";

/// An error and its causes, `: `-separated (tonic's transport errors keep
/// the useful part in their sources).
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
