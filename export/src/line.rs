//! One line of a flow log: a `GetFlowsResponse` in the protobuf JSON
//! mapping with proto field names, as Hubble's exporter writes its
//! `ExportEvent`s (the two messages have the same JSON).

use std::time::SystemTime;

use lumen_flow::format::{self, FormatError};
use lumen_flow::mask::FlowMask;
use lumen_proto::flow::{Flow, LostEvent};
use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use lumen_proto::prost_types::Timestamp;

/// `{"flow":{…},"node_name":…,"time":…}` and a newline. The node is the
/// flow's, or `node_name` when the flow has none; the time is the flow's.
/// Lumen's `extensions` are written only when the mask names them, as
/// GetFlows sends them (Hubble's tools cannot read them).
pub fn flow(flow: &Flow, mask: Option<&FlowMask>, node_name: &str, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let node = match flow.node_name.as_str() {
        "" => node_name,
        n => n,
    };
    // Unmasked, the common case: written straight from the flow.
    if mask.is_none() && lumen_flow::jsonpb::write_flow_line(flow, node, flow.time.as_ref(), out) {
        out.push(b'\n');
        return Ok(());
    }
    let written = match mask {
        Some(m) => m.apply(flow),
        None => Flow {
            extensions: None,
            ..flow.clone()
        },
    };
    response(
        GetFlowsResponse {
            node_name: node.to_string(),
            time: flow.time,
            response_types: Some(ResponseTypes::Flow(written)),
        },
        out,
    )
}

/// `{"lost_events":{…},"node_name":…,"time":…}` and a newline.
pub fn lost(event: &LostEvent, node_name: &str, time: SystemTime, out: &mut Vec<u8>) -> Result<(), FormatError> {
    response(
        GetFlowsResponse {
            node_name: node_name.to_string(),
            time: Some(timestamp(time)),
            response_types: Some(ResponseTypes::LostEvents(*event)),
        },
        out,
    )
}

pub(crate) fn response(response: GetFlowsResponse, out: &mut Vec<u8>) -> Result<(), FormatError> {
    out.extend_from_slice(format::jsonpb(&response)?.as_bytes());
    out.push(b'\n');
    Ok(())
}

pub(crate) fn timestamp(t: SystemTime) -> Timestamp {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}
