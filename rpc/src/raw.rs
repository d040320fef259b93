//! `GetFlows` answers passed through as their encoded bytes.
//!
//! A relay neither looks into nor changes the flows it merges: it needs each
//! response's time (to order them) and nothing else. Decoding a whole flow
//! and encoding it again costs several times what moving its bytes does, so
//! the relay's `GetFlows` reads responses as [`RawFlowsResponse`] (the bytes
//! as received, and the time read from them) and writes those bytes as they
//! are. On the wire nothing differs: a client sees the observers' own
//! `GetFlowsResponse` messages.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use lumen_proto::tonic;
use prost::bytes::{Buf, BufMut, Bytes};
use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::codegen::tokio_stream::Stream;
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{NamedService, ServerStreamingService};
use tonic::Status;
use tonic_prost::{ProstDecoder, ProstEncoder};

use lumen_proto::observer::observer_server::{Observer, ObserverServer};
use lumen_proto::observer::{GetFlowsRequest, GetFlowsResponse};

/// One encoded `observer.GetFlowsResponse` and its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFlowsResponse {
    bytes: Bytes,
    time_ns: i128,
}

/// The only field of a `GetFlowsResponse` a relay reads: `time` (1001).
/// Decoding into it skips every other field without looking into it.
#[derive(Clone, PartialEq, Message)]
struct TimeOnly {
    #[prost(message, optional, tag = "1001")]
    time: Option<prost_types::Timestamp>,
}

fn nanos(t: Option<&prost_types::Timestamp>) -> i128 {
    t.map_or(0, |t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
}

impl RawFlowsResponse {
    /// Reads the time of an encoded response; the bytes are kept as they
    /// are. Fails when they are not a well-formed message.
    pub fn parse(bytes: Bytes) -> Result<RawFlowsResponse, prost::DecodeError> {
        let header = TimeOnly::decode(bytes.as_ref())?;
        Ok(RawFlowsResponse {
            time_ns: nanos(header.time.as_ref()),
            bytes,
        })
    }

    /// Bytes a writer of `GetFlowsResponse`s made itself, with the time it
    /// wrote into them: nothing to read back. (A debug build checks.)
    pub fn from_encoded(bytes: Bytes, time_ns: i128) -> RawFlowsResponse {
        debug_assert_eq!(
            RawFlowsResponse::parse(bytes.clone()).map(|r| r.time_ns),
            Ok(time_ns),
            "the time written into the response"
        );
        RawFlowsResponse { bytes, time_ns }
    }

    /// A response the relay makes itself (a node status event).
    pub fn encode(response: &GetFlowsResponse) -> RawFlowsResponse {
        RawFlowsResponse {
            time_ns: nanos(response.time.as_ref()),
            bytes: response.encode_to_vec().into(),
        }
    }

    /// Nanoseconds since the epoch (0 when the response has no time).
    pub fn time_ns(&self) -> i128 {
        self.time_ns
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The whole message.
    pub fn decode(&self) -> Result<GetFlowsResponse, prost::DecodeError> {
        GetFlowsResponse::decode(self.bytes.as_ref())
    }
}

/// Reads encoded responses without decoding them.
#[derive(Debug, Default)]
pub struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = RawFlowsResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<RawFlowsResponse>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        RawFlowsResponse::parse(bytes)
            .map(Some)
            .map_err(|e| Status::internal(format!("malformed GetFlowsResponse: {e}")))
    }
}

/// Writes encoded responses as they are.
#[derive(Debug, Default)]
pub struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = RawFlowsResponse;
    type Error = Status;

    fn encode(&mut self, item: RawFlowsResponse, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item.bytes);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        // Flows are moved, not built: bigger writes, fewer frames.
        BufferSettings::new(64 * 1024, 128 * 1024)
    }
}

/// The client side of a pass-through `GetFlows`: the request is encoded as
/// usual, the answers stay encoded.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawFlowsClientCodec;

impl Codec for RawFlowsClientCodec {
    type Encode = GetFlowsRequest;
    type Decode = RawFlowsResponse;
    type Encoder = ProstEncoder<GetFlowsRequest>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// The server side of a pass-through `GetFlows`: the request is decoded as
/// usual, the answers are written as they came.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawFlowsServerCodec;

impl Codec for RawFlowsServerCodec {
    type Encode = RawFlowsResponse;
    type Decode = GetFlowsRequest;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder<GetFlowsRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// A `GetFlows` whose answers are already encoded.
pub trait RawFlows: Send + Sync + 'static {
    /// The answer to `request` (with its metadata, such as
    /// [`lumen_proto::EXTENSIONS_HEADER`]), response by response; an error refuses it.
    fn raw_flows(&self, request: tonic::Request<GetFlowsRequest>) -> Result<RawFlowsStream, Status>;
}

pub type RawFlowsStream = Pin<Box<dyn Stream<Item = Result<RawFlowsResponse, Status>> + Send + 'static>>;

pub(crate) const GET_FLOWS: &str = "/observer.Observer/GetFlows";

/// `observer.Observer` served from a service whose `GetFlows` answers are
/// already encoded ([`RawFlows`]); every other call goes to its typed
/// [`Observer`] implementation.
pub struct RawObserverServer<T: Observer + RawFlows> {
    inner: Arc<T>,
    typed: ObserverServer<T>,
}

impl<T: Observer + RawFlows> RawObserverServer<T> {
    pub fn new(inner: T) -> RawObserverServer<T> {
        let inner = Arc::new(inner);
        RawObserverServer {
            typed: ObserverServer::from_arc(inner.clone()),
            inner,
        }
    }
}

impl<T: Observer + RawFlows> Clone for RawObserverServer<T> {
    fn clone(&self) -> Self {
        RawObserverServer {
            inner: self.inner.clone(),
            typed: self.typed.clone(),
        }
    }
}

impl<T: Observer + RawFlows> NamedService for RawObserverServer<T> {
    const NAME: &'static str = "observer.Observer";
}

impl<T, B> Service<http::Request<B>> for RawObserverServer<T>
where
    T: Observer + RawFlows,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != GET_FLOWS {
            return self.typed.call(req);
        }
        let method = Method(self.inner.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawFlowsServerCodec);
            Ok(grpc.server_streaming(method, req).await)
        })
    }
}

struct Method<T>(Arc<T>);

impl<T: RawFlows> ServerStreamingService<GetFlowsRequest> for Method<T> {
    type Response = RawFlowsResponse;
    type ResponseStream = RawFlowsStream;
    type Future = BoxFuture<tonic::Response<RawFlowsStream>, Status>;

    fn call(&mut self, request: tonic::Request<GetFlowsRequest>) -> Self::Future {
        let answer = self.0.raw_flows(request).map(tonic::Response::new);
        Box::pin(async move { answer })
    }
}

/// Opens a `GetFlows` stream whose answers stay encoded.
pub async fn get_flows<T>(
    client: &mut tonic::client::Grpc<T>,
    request: tonic::Request<GetFlowsRequest>,
) -> Result<Streaming<RawFlowsResponse>, Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError>,
    T::Error: Into<StdError>,
{
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(format!("not ready: {}", e.into())))?;
    let path = http::uri::PathAndQuery::from_static(GET_FLOWS);
    Ok(client
        .server_streaming(request, path, RawFlowsClientCodec)
        .await?
        .into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_proto::flow::Flow;
    use lumen_proto::observer::get_flows_response::ResponseTypes;

    fn response(seconds: i64, nanos: i32) -> GetFlowsResponse {
        GetFlowsResponse {
            node_name: "n1".into(),
            time: Some(prost_types::Timestamp { seconds, nanos }),
            response_types: Some(ResponseTypes::Flow(Flow {
                node_name: "n1".into(),
                source_names: vec!["a.example".into()],
                ..Default::default()
            })),
        }
    }

    #[test]
    fn the_time_is_read_and_the_bytes_kept_as_they_are() {
        let r = response(1_700_000_000, 123_456_789);
        let bytes = Bytes::from(r.encode_to_vec());
        let raw = RawFlowsResponse::parse(bytes.clone()).unwrap();
        assert_eq!(raw.time_ns(), 1_700_000_000_123_456_789);
        assert_eq!(raw.bytes(), &bytes);
        assert_eq!(raw.decode().unwrap(), r);
        assert_eq!(RawFlowsResponse::encode(&r), raw);
    }

    #[test]
    fn a_response_without_time_sorts_first_and_malformed_bytes_are_refused() {
        let untimed = GetFlowsResponse {
            time: None,
            ..response(5, 0)
        };
        assert_eq!(RawFlowsResponse::encode(&untimed).time_ns(), 0);
        // Field 1 (the flow) claims 100 bytes; 2 follow.
        let truncated = Bytes::from_static(&[0x0a, 100, 0x01, 0x02]);
        assert!(RawFlowsResponse::parse(truncated).is_err());
    }
}
