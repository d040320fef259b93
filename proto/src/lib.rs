//! Hubble-compatible gRPC API for Lumen.
//!
//! Generated at build time (without `protoc`) from the `.proto` files in
//! `proto/`, which transcribe the published Cilium/Hubble API v1 (`flow`,
//! `observer`, `peer`, `relay`) plus Lumen's own `lumen.v1` extensions.
//! Both tonic clients and servers are generated:
//!
//! * [`observer::observer_server::ObserverServer`] /
//!   [`observer::observer_client::ObserverClient`] (`/observer.Observer/*`)
//! * [`peer::peer_server::PeerServer`] / [`peer::peer_client::PeerClient`]
//!   (`/peer.Peer/Notify`)
//! * [`lumen::v1::control_server::ControlServer`] /
//!   [`lumen::v1::control_client::ControlClient`] (`/lumen.v1.Control/*`):
//!   the observer's control API (endpoints, policies, aggregation)
//!
//! Lumen-specific data never goes into Hubble's messages: it is packed as a
//! [`lumen::v1::FlowExtension`] into `flow::Flow::extensions`
//! (see [`lumen::v1::FlowExtension::to_any`]).

/// Hubble `flow` package: `Flow` and everything it references, filters, events.
#[allow(clippy::all, clippy::pedantic, deprecated, missing_docs, rustdoc::all)]
pub mod flow {
    tonic::include_proto!("flow");
}

/// Hubble `relay` package: node status messages.
#[allow(clippy::all, clippy::pedantic, deprecated, missing_docs, rustdoc::all)]
pub mod relay {
    tonic::include_proto!("relay");
}

/// Hubble `observer` package: the `Observer` service and its messages.
#[allow(clippy::all, clippy::pedantic, deprecated, missing_docs, rustdoc::all)]
pub mod observer {
    tonic::include_proto!("observer");
}

/// Hubble `peer` package: the `Peer` service (peer discovery for relays).
#[allow(clippy::all, clippy::pedantic, deprecated, missing_docs, rustdoc::all)]
pub mod peer {
    tonic::include_proto!("peer");
}

pub mod names;

/// Lumen's own protobuf packages.
pub mod lumen {
    /// `lumen.v1`: extension messages carried in Hubble `Any` fields, and
    /// the observer's `Control` service.
    #[allow(clippy::all, clippy::pedantic, deprecated, missing_docs, rustdoc::all)]
    pub mod v1 {
        tonic::include_proto!("lumen.v1");

        impl FlowExtension {
            /// Type URL used when packing this message into a `google.protobuf.Any`.
            pub const TYPE_URL: &'static str = "type.googleapis.com/lumen.v1.FlowExtension";

            /// Packs this extension for `flow::Flow::extensions`.
            pub fn to_any(&self) -> prost_types::Any {
                prost_types::Any {
                    type_url: Self::TYPE_URL.to_string(),
                    value: prost::Message::encode_to_vec(self),
                }
            }

            /// Unpacks an `Any` if it carries a `FlowExtension`; `None` for other types.
            pub fn from_any(any: &prost_types::Any) -> Option<Result<Self, prost::DecodeError>> {
                (any.type_url == Self::TYPE_URL).then(|| <Self as prost::Message>::decode(any.value.as_slice()))
            }
        }
    }
}

/// Encoded `google.protobuf.FileDescriptorSet` of all files above (with their
/// google well-known imports, without comments), e.g. for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lumen_proto_descriptor.bin"));

/// Service name Hubble clients query on the standard gRPC health service
/// (`grpc.health.v1.Health/Check`).
pub const HEALTH_SERVICE_NAME: &str = "hubble.server.Observer";

/// ServerStatus metadata: events the kernel ring buffer could not take
/// (Hubble's message has no field for it; Hubble clients ignore metadata).
pub const LOST_KERNEL_HEADER: &str = "lumen-lost-kernel-events";
/// ServerStatus metadata: flows clients missed by reading too slowly.
pub const LOST_CLIENT_HEADER: &str = "lumen-lost-client-flows";
/// ServerStatus metadata: records the flow export dropped (its queues full
/// or writes failing), when the server exports.
pub const EXPORTER_DROPPED_HEADER: &str = "lumen-exporter-dropped";

/// The largest HTTP/2 frame Lumen's clients accept (HTTP/2's default is
/// 16 KiB). A flow is a few hundred bytes and flows come by the thousand:
/// fewer, larger frames cut the relay's CPU time per flow by about a fifth
/// (`cargo bench -p lumen-relay --bench relay`).
pub const MAX_FRAME_SIZE: u32 = 1 << 20;

pub use prost;
pub use prost_types;
pub use tonic;
pub use tonic_health;

/// GetFlows request metadata by which a client says it understands Lumen's
/// `Flow.extensions` (`lumen.v1.FlowExtension`). Hubble's clients cannot
/// decode an `Any` they do not know, so a flow carries its extension only
/// when the request has this header (any value) or names `extensions` in its
/// field mask; the relay passes the header on to its nodes.
pub const EXTENSIONS_HEADER: &str = "lumen-extensions";

/// `message` as a request carrying [`EXTENSIONS_HEADER`]: what Lumen's own
/// clients send so that their flows keep Lumen's extension.
pub fn with_extensions<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(EXTENSIONS_HEADER, tonic::metadata::MetadataValue::from_static("1"));
    request
}
