//! Hubble's field masks: a `GetFlows` client may name the `Flow` fields it
//! wants (`time`, `verdict`, `source.identity`, `l4.TCP.destination_port`);
//! every other field is left unset in what it receives.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use lumen_proto::flow::Flow;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, ReflectMessage, Value};

/// A field mask path that does not name a field of `flow.Flow`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("field_mask path {path:?}: {message} has no field {field:?}")]
    UnknownField {
        path: String,
        message: String,
        field: String,
    },
    #[error("field_mask path {path:?}: {field:?} is not a message, so it has no fields")]
    NotAMessage { path: String, field: String },
    #[error("field_mask has an empty path")]
    EmptyPath,
}

/// The fields to keep, as a tree of field names; a leaf keeps the whole field.
#[derive(Debug, Default, PartialEq, Eq)]
struct Keep(BTreeMap<String, Keep>);

/// A compiled field mask for `flow.Flow`.
#[derive(Debug, PartialEq, Eq)]
pub struct FlowMask {
    keep: Keep,
}

fn flow_descriptor() -> &'static MessageDescriptor {
    static FLOW: OnceLock<MessageDescriptor> = OnceLock::new();
    FLOW.get_or_init(|| {
        DescriptorPool::decode(lumen_proto::FILE_DESCRIPTOR_SET)
            .expect("lumen-proto ships a valid descriptor set")
            .get_message_by_name("flow.Flow")
            .expect("flow.Flow is in the descriptor set")
    })
}

impl FlowMask {
    /// Compiles the paths of a `FieldMask`; `None` when there are none
    /// (the whole flow is sent).
    pub fn new(paths: &[String]) -> Result<Option<FlowMask>, MaskError> {
        if paths.is_empty() {
            return Ok(None);
        }
        let mut keep = Keep::default();
        for path in paths {
            if path.is_empty() {
                return Err(MaskError::EmptyPath);
            }
            let mut desc = flow_descriptor().clone();
            let mut node = &mut keep;
            let parts: Vec<&str> = path.split('.').collect();
            for (i, part) in parts.iter().enumerate() {
                let field = desc.get_field_by_name(part).ok_or_else(|| MaskError::UnknownField {
                    path: path.clone(),
                    message: desc.full_name().to_string(),
                    field: part.to_string(),
                })?;
                node = node.0.entry(part.to_string()).or_default();
                if i + 1 < parts.len() {
                    match field.kind() {
                        Kind::Message(m) => desc = m,
                        _ => {
                            return Err(MaskError::NotAMessage {
                                path: path.clone(),
                                field: part.to_string(),
                            })
                        }
                    }
                }
            }
        }
        // A path that names a whole field wins over paths into it.
        for path in paths {
            let mut node = &mut keep;
            for part in path.split('.') {
                node = node.0.get_mut(part).expect("inserted above");
            }
            node.0.clear();
        }
        Ok(Some(FlowMask { keep }))
    }

    /// Whether the mask keeps the top-level field `name` (whole or in part).
    pub fn keeps(&self, name: &str) -> bool {
        self.keep.0.contains_key(name)
    }

    /// A copy of `flow` with only the masked fields set.
    pub fn apply(&self, flow: &Flow) -> Flow {
        let mut dynamic = DynamicMessage::decode(flow_descriptor().clone(), flow.encode_to_vec().as_slice())
            .expect("a Flow decodes as flow.Flow");
        prune(&mut dynamic, &self.keep);
        dynamic.transcode_to::<Flow>().expect("a pruned flow.Flow is a Flow")
    }
}

fn prune(message: &mut DynamicMessage, keep: &Keep) {
    let fields: Vec<_> = message.descriptor().fields().collect();
    for field in fields {
        if !message.has_field(&field) {
            continue;
        }
        match keep.0.get(field.name()) {
            None => message.clear_field(&field),
            Some(child) if child.0.is_empty() => {}
            Some(child) => match message.get_field_mut(&field) {
                Value::Message(m) => prune(m, child),
                Value::List(items) => {
                    for item in items.iter_mut() {
                        if let Value::Message(m) = item {
                            prune(m, child);
                        }
                    }
                }
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_proto::flow::{layer4::Protocol, Endpoint, Layer4, Tcp, Verdict};

    fn flow() -> Flow {
        Flow {
            time: Some(prost_types::Timestamp { seconds: 5, nanos: 6 }),
            verdict: Verdict::Dropped as i32,
            node_name: "node1".into(),
            source: Some(Endpoint {
                identity: 300,
                pod_name: "frontend".into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(Protocol::Tcp(Tcp {
                    source_port: 40_000,
                    destination_port: 80,
                    flags: None,
                })),
            }),
            ..Default::default()
        }
    }

    fn mask(paths: &[&str]) -> FlowMask {
        FlowMask::new(&paths.iter().map(|p| p.to_string()).collect::<Vec<_>>())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn keeps_only_the_named_fields() {
        let got = mask(&["time", "verdict", "source.identity", "l4.TCP.destination_port"]).apply(&flow());
        let want = Flow {
            time: Some(prost_types::Timestamp { seconds: 5, nanos: 6 }),
            verdict: Verdict::Dropped as i32,
            source: Some(Endpoint {
                identity: 300,
                ..Default::default()
            }),
            l4: Some(Layer4 {
                protocol: Some(Protocol::Tcp(Tcp {
                    destination_port: 80,
                    ..Default::default()
                })),
            }),
            ..Default::default()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn a_whole_field_wins_over_a_path_into_it() {
        let got = mask(&["source.identity", "source"]).apply(&flow());
        assert_eq!(got.source, flow().source);
        assert_eq!(got.node_name, "");
    }

    #[test]
    fn no_paths_means_no_mask_and_bad_paths_are_named() {
        assert_eq!(FlowMask::new(&[]), Ok(None));
        let err = |p: &str| FlowMask::new(&[p.to_string()]).unwrap_err().to_string();
        assert_eq!(
            err("source.podname"),
            "field_mask path \"source.podname\": flow.Endpoint has no field \"podname\""
        );
        assert_eq!(
            err("verdict.x"),
            "field_mask path \"verdict.x\": \"verdict\" is not a message, so it has no fields"
        );
        assert_eq!(err(""), "field_mask has an empty path");
    }
}
