//! A follow stream that outlives its server: when the connection breaks it
//! says so, waits (exponential backoff with jitter), reconnects, and asks
//! again from the time of the last flow it passed on, dropping what it
//! already passed on, so that a consumer sees every flow the server still
//! holds once, in order.

use std::collections::HashSet;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use lumen_proto::prost::bytes::{Buf, Bytes};
use lumen_proto::prost::{DecodeError, Message};
use lumen_proto::prost_types::Timestamp;
use lumen_proto::tonic::codec::{Codec, DecodeBuf, Decoder};
use lumen_proto::tonic::transport::Channel;
use lumen_proto::tonic::{self, Status, Streaming};
use tonic_prost::ProstEncoder;

/// What a [`Follow`] makes of each response it receives: the whole
/// `GetFlowsResponse`, or a consumer's own reading of the bytes (only the
/// fields it uses decoded, the bytes kept for later).
pub trait FollowItem: Send + Sync + Sized + 'static {
    /// What a stream's decoding keeps from one response to the next (a
    /// new one for each connection).
    type Reader: Default + Send + 'static;

    fn decode(reader: &mut Self::Reader, bytes: Bytes) -> Result<Self, DecodeError>;

    /// The response as far as it was decoded: of a flow, at least its time,
    /// node name and uuid (by which a resumed stream's repeats are known).
    fn response(&self) -> &GetFlowsResponse;
}

impl FollowItem for GetFlowsResponse {
    type Reader = ();

    fn decode(_: &mut (), bytes: Bytes) -> Result<GetFlowsResponse, DecodeError> {
        <GetFlowsResponse as Message>::decode(bytes)
    }

    fn response(&self) -> &GetFlowsResponse {
        self
    }
}

/// What a [`Follow`] hands on.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowEvent<T = GetFlowsResponse> {
    /// The server's stream is open (again).
    Connected,
    /// A response from the server: a flow, lost events, a node's status.
    Response(Box<T>),
    /// The connection could not be made or broke; the next try is in
    /// `retry_in`.
    Disconnected { reason: String, retry_in: Duration },
}

/// Waits between tries: doubling from `initial` up to `max`, with up to a
/// quarter of random jitter so that many clients do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Backoff {
            initial,
            max,
            next: initial,
            seed,
        }
    }

    /// The wait before the next try.
    pub fn next_wait(&mut self) -> Duration {
        // xorshift: jitter needs no quality, only spread.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = base.as_nanos() as u64 / 4;
        base + Duration::from_nanos(if jitter == 0 { 0 } else { self.seed % jitter })
    }

    /// After a success, the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<Channel, String>> + Send>>;
/// Opens a channel to the server, each time the stream (re)connects.
pub type Connector = Box<dyn FnMut() -> Connecting + Send>;

enum State<T> {
    Idle,
    Open(Box<Streaming<T>>),
    Waiting(Duration),
}

/// Decodes each response of the stream as a `T` from its bytes.
struct ItemCodec<T>(PhantomData<fn() -> T>);

impl<T: FollowItem> Codec for ItemCodec<T> {
    type Encode = GetFlowsRequest;
    type Decode = T;
    type Encoder = ProstEncoder<GetFlowsRequest>;
    type Decoder = ItemDecoder<T>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ItemDecoder(T::Reader::default())
    }
}

struct ItemDecoder<T: FollowItem>(T::Reader);

impl<T: FollowItem> Decoder for ItemDecoder<T> {
    type Item = T;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        // One contiguous buffer (taken from the frames received, not
        // copied): decoding from it is faster than from the frames.
        let bytes = src.copy_to_bytes(src.remaining());
        T::decode(&mut self.0, bytes)
            .map(Some)
            .map_err(|e| Status::internal(format!("malformed GetFlowsResponse: {e}")))
    }
}

/// A `GetFlows` follow stream that reconnects. Built from a connector (a
/// function opening a channel) and the request; [`Follow::next`] yields
/// [`FollowEvent`]s and never ends on its own. Each response is handed on
/// as a `T` ([`FollowItem`]).
pub struct Follow<T = GetFlowsResponse> {
    connect: Connector,
    request: GetFlowsRequest,
    /// Asks for Lumen's flow extension (see `lumen_proto::EXTENSIONS_HEADER`).
    extensions: bool,
    backoff: Backoff,
    state: State<T>,
    /// The time of the last flow passed on, and the flows passed on at
    /// exactly that time (a resumed stream starts there and repeats them).
    last_time: Option<Timestamp>,
    /// Many flows can share a time (a batch stamped at once): a set.
    at_last_time: HashSet<Vec<u8>, foldhash::fast::RandomState>,
}

impl<T: FollowItem> Follow<T> {
    /// `request` must follow; its filters, mask and `since` apply to the
    /// first connection, later ones resume after the last flow.
    pub fn new(connect: Connector, mut request: GetFlowsRequest, extensions: bool, backoff: Backoff) -> Follow<T> {
        request.follow = true;
        Follow {
            connect,
            request,
            extensions,
            backoff,
            state: State::Idle,
            last_time: None,
            at_last_time: HashSet::default(),
        }
    }

    /// The request for the next connection: from the last flow's time on.
    fn resume_request(&self) -> GetFlowsRequest {
        let mut request = self.request.clone();
        if let Some(t) = self.last_time {
            request.since = Some(t);
            request.number = 0;
            request.first = false;
        }
        request
    }

    /// Whether `response` was passed on before (a flow at the last time,
    /// repeated by a resumed stream, or older), and notes it if not.
    fn seen(&mut self, response: &GetFlowsResponse) -> bool {
        let Some(ResponseTypes::Flow(flow)) = &response.response_types else {
            return false;
        };
        let Some(time) = flow.time else { return false };
        let at = (time.seconds, time.nanos);
        // A flow is known by its node and uuid; only one without a uuid
        // costs an encoding.
        let identity = |flow: &lumen_proto::flow::Flow| match flow.uuid.is_empty() {
            true => flow.encode_to_vec(),
            false => [flow.node_name.as_bytes(), b"\0", flow.uuid.as_bytes()].concat(),
        };
        match self.last_time.map(|t| (t.seconds, t.nanos)) {
            Some(last) if at < last => true,
            Some(last) if at == last => !self.at_last_time.insert(identity(flow)),
            _ => {
                self.last_time = Some(time);
                self.at_last_time.clear();
                self.at_last_time.insert(identity(flow));
                false
            }
        }
    }

    async fn open(&mut self) -> Result<Streaming<T>, String> {
        let channel = (self.connect)().await?;
        let mut client = tonic::client::Grpc::new(channel).max_decoding_message_size(16 << 20);
        let request = self.resume_request();
        let request = if self.extensions {
            lumen_proto::with_extensions(request)
        } else {
            tonic::Request::new(request)
        };
        let status = |s: Status| format!("{}: {}", s.code(), s.message());
        client
            .ready()
            .await
            .map_err(|e| format!("{}: {e}", tonic::Code::Unavailable))?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(crate::raw::GET_FLOWS);
        client
            .server_streaming(request, path, ItemCodec::<T>(PhantomData))
            .await
            .map(|r| r.into_inner())
            .map_err(status)
    }

    fn broke(&mut self, reason: String) -> FollowEvent<T> {
        let retry_in = self.backoff.next_wait();
        self.state = State::Waiting(retry_in);
        FollowEvent::Disconnected { reason, retry_in }
    }

    /// The next event. Cancel-safe while the stream is open: a response is
    /// never lost by dropping the future.
    pub async fn next(&mut self) -> FollowEvent<T> {
        loop {
            let stream = match &mut self.state {
                State::Open(stream) => stream,
                State::Waiting(wait) => {
                    tokio::time::sleep(*wait).await;
                    self.state = State::Idle;
                    continue;
                }
                State::Idle => match self.open().await {
                    Ok(stream) => {
                        self.backoff.reset();
                        self.state = State::Open(Box::new(stream));
                        return FollowEvent::Connected;
                    }
                    Err(reason) => return self.broke(reason),
                },
            };
            // Tonic's `message` keeps its progress in the stream.
            match stream.message().await {
                Ok(Some(response)) => {
                    if !self.seen(response.response()) {
                        return FollowEvent::Response(Box::new(response));
                    }
                }
                Ok(None) => return self.broke("the server ended the stream".into()),
                Err(s) => return self.broke(format!("{}: {}", s.code(), s.message())),
            }
        }
    }

    /// The next event if one has arrived, without waiting: for a consumer
    /// that takes what has arrived in one go. `None` while the stream is not
    /// open (connecting and waiting to retry are left to [`Follow::next`]).
    pub fn ready(&mut self) -> Option<FollowEvent<T>> {
        if !matches!(self.state, State::Open(_)) {
            return None;
        }
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::pin::pin!(self.next()).poll(&mut cx) {
            std::task::Poll::Ready(event) => Some(event),
            std::task::Poll::Pending => None,
        }
    }
}

#[cfg(test)]
mod tests;
