//! The flow as the program reads it: `_flow` over the flow's encoding, each
//! field decoded when read, with protobuf's defaults for unset fields.

use super::*;

/// What a program can name: `_flow` and the enum constants.
pub(super) struct Variables<'a> {
    pub(super) flow: MessageView<'a>,
    pub(super) enums: &'a HashMap<String, i64>,
}

impl VariableResolver for Variables<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        if variable == FLOW_VARIABLE {
            return Some(CowVal::Borrowed(&self.flow));
        }
        // The interpreter tries every prefix of `_flow.a.b`, also in the
        // container: skip the lookup for those.
        let bare = variable.strip_prefix(CONTAINER).and_then(|v| v.strip_prefix('.'));
        if bare.unwrap_or(variable).starts_with(FLOW_VARIABLE) {
            return None;
        }
        self.enums.get(variable).map(|n| CowVal::owned(CelInt::from(*n)))
    }
}

/// An encoded protobuf message as a CEL struct: a field is found in the
/// bytes and decoded when read, so a program pays only for what it reads.
/// An unset message is the empty encoding, whose fields are all defaults.
#[derive(Debug, Clone)]
pub(super) struct MessageView<'a> {
    ty: &'static Type,
    desc: MessageDescriptor,
    bytes: &'a [u8],
}

impl<'a> MessageView<'a> {
    pub(super) fn new(desc: MessageDescriptor, bytes: &'a [u8]) -> Self {
        let ty = &schema().types[desc.full_name()];
        Self { ty, desc, bytes }
    }

    fn field(&self, name: &str) -> Result<Box<dyn Val + 'a>, ExecutionError> {
        let (test, name) = match name.strip_prefix(PRESENCE) {
            Some(name) => (true, name),
            None => (false, name),
        };
        let field = self
            .desc
            .get_field_by_name(name)
            .ok_or_else(|| ExecutionError::no_such_key(name))?;
        let number = field.number();
        let found = Fields(self.bytes)
            .filter(|f| f.as_ref().map_or(true, |(n, _)| *n == number))
            .map(|f| f.map(|(_, wire)| wire))
            .collect::<Result<Vec<_>, _>>()?;
        // prost writes no default value, so a field is set when it is written.
        if test {
            if found.is_empty() {
                return Err(ExecutionError::no_such_key(name));
            }
            return Ok(Box::new(CelBool::from(true)));
        }
        let kind = field.kind();
        if field.is_map() {
            let entry = kind.as_message().expect("a map field is a message");
            let (key_kind, value_kind) = (entry.map_entry_key_field().kind(), entry.map_entry_value_field().kind());
            let mut map = HashMap::with_capacity(found.len());
            for wire in found {
                let Wire::Bytes(entry) = wire else {
                    return Err(malformed());
                };
                let key = CelMapKey::try_from(value_or_default(&key_kind, last(entry, 1)?)?)?;
                map.insert(key, value_or_default(&value_kind, last(entry, 2)?)?);
            }
            return Ok(Box::new(CelMap::from(map)));
        }
        if field.is_list() {
            let mut items = Vec::with_capacity(found.len());
            for wire in found {
                match (wire, packed_wire_type(&kind)) {
                    (Wire::Bytes(mut packed), Some(wire_type)) => {
                        while !packed.is_empty() {
                            items.push(value(&kind, Fields::read_value(&mut packed, wire_type)?)?);
                        }
                    }
                    (wire, _) => items.push(value(&kind, wire)?),
                }
            }
            return Ok(Box::new(CelList::from(items)));
        }
        match (found.into_iter().next_back(), &kind) {
            (Some(wire), _) => value(&kind, wire),
            (None, Kind::Message(m)) if m.full_name() == "google.protobuf.Any" => {
                Err(ExecutionError::no_such_key(name))
            }
            (None, Kind::Message(m)) if wrapped(m.full_name()).is_some() => Ok(Box::new(CelNull)),
            (None, kind) => value_or_default(kind, None),
        }
    }
}

impl Val for MessageView<'_> {
    fn get_type(&self) -> &Type {
        self.ty
    }

    fn cel_type() -> &'static Type {
        panic!("a message's CEL type depends on the message")
    }

    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v>
    where
        Self: 'v,
    {
        Box::new(self.clone())
    }

    fn as_indexer<'b, 'v>(&'b self) -> Option<&'b (dyn Indexer + 'v)>
    where
        Self: 'v,
    {
        Some(self)
    }
}

impl Indexer for MessageView<'_> {
    fn get<'b, 'v>(&'b self, idx: &dyn Val) -> Result<CowVal<'b, 'v>, ExecutionError>
    where
        Self: 'v,
    {
        let name = idx
            .downcast_ref::<CelString>()
            .ok_or_else(|| ExecutionError::no_such_key("(not a field name)"))?;
        self.field(name.inner()).map(CowVal::Owned)
    }

    fn steal<'v>(self: Box<Self>, idx: &dyn Val) -> Result<Box<dyn Val + 'v>, ExecutionError>
    where
        Self: 'v,
    {
        self.get(idx).map(CowVal::into_owned)
    }
}

/// One field as written: its payload, by wire type.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// The fields of an encoded message in the order written, as
/// `(number, payload)`.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn read(&mut self) -> Result<(u32, Wire<'a>), ExecutionError> {
        let key = varint(&mut self.0)?;
        let number = u32::try_from(key >> 3).map_err(|_| malformed())?;
        Ok((number, Self::read_value(&mut self.0, (key & 7) as u8)?))
    }

    fn read_value(buf: &mut &'a [u8], wire_type: u8) -> Result<Wire<'a>, ExecutionError> {
        Ok(match wire_type {
            0 => Wire::Varint(varint(buf)?),
            1 => Wire::Fixed64(u64::from_le_bytes(take(buf, 8)?.try_into().expect("8 bytes"))),
            2 => {
                let len = varint(buf)?;
                Wire::Bytes(take(buf, usize::try_from(len).map_err(|_| malformed())?)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(take(buf, 4)?.try_into().expect("4 bytes"))),
            _ => return Err(malformed()),
        })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), ExecutionError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.read();
        if field.is_err() {
            self.0 = &[];
        }
        Some(field)
    }
}

fn varint(buf: &mut &[u8]) -> Result<u64, ExecutionError> {
    let mut value = 0;
    for (i, byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    Err(malformed())
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], ExecutionError> {
    let (head, tail) = buf.split_at_checked(n).ok_or_else(malformed)?;
    *buf = tail;
    Ok(head)
}

fn malformed() -> ExecutionError {
    ExecutionError::function_error("_flow", "malformed protobuf encoding")
}

/// The last value written for field `number`: the one that counts.
fn last<'a>(bytes: &'a [u8], number: u32) -> Result<Option<Wire<'a>>, ExecutionError> {
    Fields(bytes).try_fold(None, |last, f| {
        f.map(|(n, wire)| if n == number { Some(wire) } else { last })
    })
}

/// The wire type of a packed repeated field of `kind`, if it can be packed.
fn packed_wire_type(kind: &Kind) -> Option<u8> {
    match kind {
        Kind::String | Kind::Bytes | Kind::Message(_) => None,
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => Some(1),
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => Some(5),
        _ => Some(0),
    }
}

/// A value of `kind` as written, borrowing strings and messages.
fn value<'a>(kind: &Kind, wire: Wire<'a>) -> Result<Box<dyn Val + 'a>, ExecutionError> {
    // Integers are truncated to their declared width, as protobuf decoders do.
    Ok(match (kind, wire) {
        (Kind::Bool, Wire::Varint(v)) => Box::new(CelBool::from(v != 0)),
        (Kind::Int32 | Kind::Enum(_), Wire::Varint(v)) => Box::new(CelInt::from(i64::from(v as i32))),
        (Kind::Int64, Wire::Varint(v)) => Box::new(CelInt::from(v as i64)),
        (Kind::Sint32, Wire::Varint(v)) => {
            Box::new(CelInt::from(i64::from((v as u32 >> 1) as i32 ^ -((v & 1) as i32))))
        }
        (Kind::Sint64, Wire::Varint(v)) => Box::new(CelInt::from((v >> 1) as i64 ^ -((v & 1) as i64))),
        (Kind::Uint32, Wire::Varint(v)) => Box::new(CelUInt::from(u64::from(v as u32))),
        (Kind::Uint64, Wire::Varint(v)) => Box::new(CelUInt::from(v)),
        (Kind::Fixed64, Wire::Fixed64(v)) => Box::new(CelUInt::from(v)),
        (Kind::Sfixed64, Wire::Fixed64(v)) => Box::new(CelInt::from(v as i64)),
        (Kind::Double, Wire::Fixed64(v)) => Box::new(CelDouble::from(f64::from_bits(v))),
        (Kind::Fixed32, Wire::Fixed32(v)) => Box::new(CelUInt::from(u64::from(v))),
        (Kind::Sfixed32, Wire::Fixed32(v)) => Box::new(CelInt::from(i64::from(v as i32))),
        (Kind::Float, Wire::Fixed32(v)) => Box::new(CelDouble::from(f64::from(f32::from_bits(v)))),
        (Kind::String, Wire::Bytes(b)) => Box::new(CelString::from(std::str::from_utf8(b).map_err(|_| malformed())?)),
        (Kind::Bytes, Wire::Bytes(b)) => Box::new(CelBytes::from(b)),
        (Kind::Message(m), Wire::Bytes(b)) => message(m, b)?,
        _ => return Err(malformed()),
    })
}

/// The value written, else the default of `kind` (as for an unset field).
fn value_or_default<'a>(kind: &Kind, wire: Option<Wire<'a>>) -> Result<Box<dyn Val + 'a>, ExecutionError> {
    Ok(match (wire, kind) {
        (Some(wire), _) => value(kind, wire)?,
        (None, Kind::Message(m)) => message(m, &[])?,
        (None, Kind::Double | Kind::Float) => Box::new(CelDouble::from(0.0)),
        (None, Kind::Uint32 | Kind::Uint64 | Kind::Fixed32 | Kind::Fixed64) => Box::new(CelUInt::from(0)),
        (None, Kind::Bool) => Box::new(CelBool::from(false)),
        (None, Kind::String) => Box::new(CelString::from("")),
        (None, Kind::Bytes) => Box::new(CelBytes::from(&[][..])),
        (None, Kind::Enum(e)) => Box::new(CelInt::from(i64::from(e.default_value().number()))),
        (None, _) => Box::new(CelInt::from(0)),
    })
}

/// A message, with the well-known types as cel-go unwraps them.
fn message<'a>(desc: &MessageDescriptor, bytes: &'a [u8]) -> Result<Box<dyn Val + 'a>, ExecutionError> {
    let out_of_range = |what| ExecutionError::function_error(what, "out of range");
    let seconds_nanos = || -> Result<(i64, i32), ExecutionError> {
        let int = |wire| match wire {
            Some(Wire::Varint(v)) => Ok(v),
            None => Ok(0),
            Some(_) => Err(malformed()),
        };
        Ok((int(last(bytes, 1)?)? as i64, int(last(bytes, 2)?)? as i32))
    };
    Ok(match desc.full_name() {
        "google.protobuf.Timestamp" => {
            let (seconds, nanos) = seconds_nanos()?;
            let time = u32::try_from(nanos)
                .ok()
                .and_then(|n| chrono::DateTime::from_timestamp(seconds, n))
                .ok_or_else(|| out_of_range("timestamp"))?;
            Box::new(CelTimestamp::from(time.fixed_offset()))
        }
        "google.protobuf.Duration" => {
            let (seconds, nanos) = seconds_nanos()?;
            let duration = chrono::TimeDelta::try_seconds(seconds)
                .and_then(|s| s.checked_add(&chrono::TimeDelta::nanoseconds(i64::from(nanos))))
                .ok_or_else(|| out_of_range("duration"))?;
            Box::new(CelDuration::from(duration))
        }
        // Unpacked when its type is in the schema, as cel-go does.
        "google.protobuf.Any" => {
            let (Some(Wire::Bytes(url)), value) = (last(bytes, 1)?, last(bytes, 2)?) else {
                return Err(ExecutionError::function_error("google.protobuf.Any", "no type_url"));
            };
            let url = std::str::from_utf8(url).map_err(|_| malformed())?;
            let name = url.rsplit('/').next().unwrap_or_default();
            let inner = schema().pool.get_message_by_name(name).ok_or_else(|| {
                ExecutionError::function_error("google.protobuf.Any", format!("unknown type {url:?}"))
            })?;
            let value = match value {
                Some(Wire::Bytes(b)) => b,
                _ => &[],
            };
            Box::new(MessageView::new(inner, value))
        }
        name => match wrapped(name) {
            Some(kind) => value_or_default(&kind, last(bytes, 1)?)?,
            None => Box::new(MessageView::new(desc.clone(), bytes)),
        },
    })
}

#[cfg(test)]
mod tests {
    use ::cel::Value;
    use lumen_proto::flow::{FlowFilter, LostEvent, Verdict};

    use super::*;

    fn read(message: &impl Message, name: &str, field: &str) -> Result<Value, ExecutionError> {
        let bytes = message.encode_to_vec();
        let view = MessageView::new(schema().pool.get_message_by_name(name).unwrap(), &bytes);
        let value = view.field(field)?;
        Value::try_from(&*value)
    }

    #[test]
    fn fields_decode_from_the_wire_as_cel_go_reads_them() {
        let filter = FlowFilter {
            verdict: vec![Verdict::Forwarded as i32, Verdict::Dropped as i32],
            ..Default::default()
        };
        // A packed repeated enum; an unset one is an empty list.
        assert_eq!(
            read(&filter, "flow.FlowFilter", "verdict"),
            Ok(Value::from(vec![1i64, 2]))
        );
        assert_eq!(
            read(&filter, "flow.FlowFilter", "drop_reason_desc"),
            Ok(Value::from(Vec::<i64>::new()))
        );
        let lost = LostEvent {
            cpu: Some(-1),
            num_events_lost: 7,
            ..Default::default()
        };
        // A negative Int32Value (ten bytes on the wire), a uint64, an unset wrapper.
        assert_eq!(read(&lost, "flow.LostEvent", "cpu"), Ok(Value::Int(-1)));
        assert_eq!(read(&lost, "flow.LostEvent", "num_events_lost"), Ok(Value::UInt(7)));
        assert_eq!(read(&LostEvent::default(), "flow.LostEvent", "cpu"), Ok(Value::Null));
        assert_eq!(
            read(&lost, "flow.LostEvent", "nope"),
            Err(ExecutionError::no_such_key("nope"))
        );
    }
}
