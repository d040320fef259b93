//! `GetFlows` responses decoded as far as the model reads them: a flow's
//! time, verdict, drop reason, addresses, ports, endpoints, names,
//! direction, the policies that denied it, and the extension of a dropped
//! or audited flow (who to blame); every
//! other field (the summary, the interface, the policies that allowed it,
//! the node's labels, …) is skipped without being decoded. For a client
//! that counts a fast stream, decoding is most of what it costs.
//!
//! ```
//! use lumen_proto::flow::{Flow, Verdict};
//! use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
//! use lumen_proto::prost::Message;
//!
//! let full = GetFlowsResponse {
//!     response_types: Some(ResponseTypes::Flow(Flow {
//!         verdict: Verdict::Forwarded as i32,
//!         node_labels: vec!["kubernetes.io/hostname=n1".into()],
//!         ..Default::default()
//!     })),
//!     node_name: "n1".into(),
//!     ..Default::default()
//! };
//! let read = lumen_model::decode_response(&full.encode_to_vec())?;
//! let Some(ResponseTypes::Flow(flow)) = &read.response_types else { unreachable!() };
//! assert_eq!(flow.verdict, Verdict::Forwarded as i32);
//! assert!(flow.node_labels.is_empty());
//! assert_eq!(read.node_name, "n1");
//! # Ok::<(), lumen_proto::prost::DecodeError>(())
//! ```

use std::collections::HashMap;

use lumen_proto::flow::{Endpoint, Flow, Verdict};
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::GetFlowsResponse;
use lumen_proto::prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
use lumen_proto::prost::{DecodeError, Message};

/// Whether the model reads the field `tag` of `flow.Flow`: time, uuid,
/// verdict, drop_reason, IP, l4, source, destination, node_name,
/// source_names, destination_names, traffic_direction, drop_reason_desc,
/// is_reply, egress_denied_by, ingress_denied_by and extensions.
fn read(tag: u32) -> bool {
    matches!(
        tag,
        1 | 34 | 2 | 3 | 5 | 6 | 8 | 9 | 11 | 13 | 14 | 22 | 25 | 26 | 21004 | 21005 | EXTENSIONS
    )
}

/// `extensions`, read for dropped and audited flows only (what the model
/// reads of it is who to blame).
const EXTENSIONS: u32 = 150_000;

/// `flow` in a `GetFlowsResponse`.
const RESPONSE_FLOW: u32 = 1;

/// `source` and `destination` in a `Flow`.
const ENDPOINTS: [u32; 2] = [8, 9];

/// Endpoints a [`FlowReader`] remembers before it starts again.
const MAX_ENDPOINTS: usize = 4096;

/// Reads a stream's responses as [`decode_response`] does, remembering the
/// endpoints it decoded by their bytes: a stream names the same few pods
/// over and over, and a copy costs less than decoding them again.
#[derive(Debug, Default)]
pub struct FlowReader {
    endpoints: HashMap<Box<[u8]>, Endpoint, foldhash::fast::RandomState>,
}

impl FlowReader {
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Box<GetFlowsResponse>, DecodeError> {
        decode_with(bytes, Some(self))
    }

    /// The endpoint encoded as `bytes`: a copy of the one decoded last time.
    fn endpoint(&mut self, bytes: &[u8]) -> Result<Endpoint, DecodeError> {
        if let Some(e) = self.endpoints.get(bytes) {
            return Ok(e.clone());
        }
        let e = Endpoint::decode(bytes)?;
        if self.endpoints.len() >= MAX_ENDPOINTS {
            self.endpoints.clear();
        }
        self.endpoints.insert(bytes.into(), e.clone());
        Ok(e)
    }
}

/// An encoded `GetFlowsResponse` with only what the model reads decoded
/// (node status events and lost events whole); the fields it does not read
/// are left at their defaults. Boxed: a `Flow` is over a kilobyte, and is
/// decoded in place rather than moved.
pub fn decode_response(bytes: &[u8]) -> Result<Box<GetFlowsResponse>, DecodeError> {
    decode_with(bytes, None)
}

fn decode_with(mut bytes: &[u8], mut reader: Option<&mut FlowReader>) -> Result<Box<GetFlowsResponse>, DecodeError> {
    let mut response = Box::<GetFlowsResponse>::default();
    while !bytes.is_empty() {
        let (tag, wire_type) = decode_key(&mut bytes)?;
        if tag != RESPONSE_FLOW || wire_type != WireType::LengthDelimited {
            response.merge_field(tag, wire_type, &mut bytes, DecodeContext::default())?;
            continue;
        }
        let flow_bytes = delimited(&mut bytes, tag)?;
        // A second flow field merges into the first, as protobuf does.
        if !matches!(response.response_types, Some(ResponseTypes::Flow(_))) {
            response.response_types = Some(ResponseTypes::Flow(Flow::default()));
        }
        let Some(ResponseTypes::Flow(flow)) = &mut response.response_types else {
            unreachable!("set above")
        };
        merge_read_fields(flow, flow_bytes, reader.as_deref_mut())?;
    }
    Ok(response)
}

/// The bytes of the length-delimited field `tag` whose key was just read
/// from `bytes`, which then start after it.
fn delimited<'a>(bytes: &mut &'a [u8], tag: u32) -> Result<&'a [u8], DecodeError> {
    let mut at_length = *bytes;
    let len = decode_varint(bytes)?;
    if len > bytes.len() as u64 {
        // Past the end: prost's own error for it.
        let past = skip_field(WireType::LengthDelimited, tag, &mut at_length, DecodeContext::default());
        return Err(past.expect_err("a length past the end does not skip"));
    }
    let (field, rest) = bytes.split_at(len as usize);
    *bytes = rest;
    Ok(field)
}

/// Merges the fields of an encoded `flow.Flow` the model reads into `flow`
/// and skips the others; endpoints through `reader`, if given.
fn merge_read_fields(
    flow: &mut Flow,
    mut bytes: &[u8],
    mut reader: Option<&mut FlowReader>,
) -> Result<(), DecodeError> {
    while !bytes.is_empty() {
        let (tag, wire_type) = decode_key(&mut bytes)?;
        if let (Some(reader), true, WireType::LengthDelimited) =
            (reader.as_deref_mut(), ENDPOINTS.contains(&tag), wire_type)
        {
            let target = if tag == ENDPOINTS[0] {
                &mut flow.source
            } else {
                &mut flow.destination
            };
            // A field given twice merges: only a first one is copied.
            if target.is_none() {
                *target = Some(reader.endpoint(delimited(&mut bytes, tag)?)?);
                continue;
            }
        }
        let blamed = || {
            [Verdict::Unknown, Verdict::Dropped, Verdict::Audit]
                .map(|v| v as i32)
                .contains(&flow.verdict)
        };
        if read(tag) && (tag != EXTENSIONS || blamed()) {
            flow.merge_field(tag, wire_type, &mut bytes, DecodeContext::default())?;
        } else {
            skip_field(wire_type, tag, &mut bytes, DecodeContext::default())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use lumen_proto::flow::{LostEvent, LostEventSource};

    use super::*;

    #[test]
    fn malformed_responses_are_errors_and_other_items_decode_whole() {
        let response = GetFlowsResponse {
            response_types: Some(ResponseTypes::Flow(Flow {
                node_name: "n1".into(),
                verdict: Verdict::Forwarded as i32,
                ..Default::default()
            })),
            node_name: "n1".into(),
            time: None,
        };
        let bytes = response.encode_to_vec();
        assert_eq!(*decode_response(&bytes).unwrap(), response);
        let mut reader = FlowReader::default();
        assert_eq!(*reader.decode(&bytes).unwrap(), response);
        // Cut inside a field (the flow's first, then the response's node
        // name): its length, or a field's in it, runs past the end. Cut
        // between the two, what is there decodes.
        // The node name field: a two-byte key (1000), a length, "n1".
        let flow_end = bytes.len() - 5;
        for cut in (1..bytes.len()).filter(|c| *c != flow_end) {
            assert!(
                decode_response(&bytes[..cut]).is_err(),
                "cut at {cut} of {}",
                bytes.len()
            );
            assert!(reader.decode(&bytes[..cut]).is_err(), "cut at {cut} of {}", bytes.len());
        }
        assert_eq!(decode_response(&bytes[..flow_end]).unwrap().node_name, "");
        let lost = GetFlowsResponse {
            response_types: Some(ResponseTypes::LostEvents(LostEvent {
                source: LostEventSource::PerfEventRingBuffer as i32,
                num_events_lost: 7,
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(*decode_response(&lost.encode_to_vec()).unwrap(), lost);
        assert_eq!(*decode_response(&[]).unwrap(), GetFlowsResponse::default());
    }
}
