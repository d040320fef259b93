//! The static checks Hubble's cel-go makes at compile time, over the flow
//! schema: names, fields, operand and function types, a `bool` result. The
//! `cel` crate has no checker of its own.

use super::*;

/// The static type of an expression, as far as [`Checker`] can tell.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ty {
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Timestamp,
    Duration,
    Type,
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    Message(MessageDescriptor),
    /// A wrapper such as `google.protobuf.BoolValue`: the value, or `null`.
    Wrapper(Box<Ty>),
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Dyn => f.write_str("dyn"),
            Ty::Null => f.write_str("null_type"),
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Uint => f.write_str("uint"),
            Ty::Double => f.write_str("double"),
            Ty::String => f.write_str("string"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::Timestamp => f.write_str("google.protobuf.Timestamp"),
            Ty::Duration => f.write_str("google.protobuf.Duration"),
            Ty::Type => f.write_str("type"),
            Ty::List(e) => write!(f, "list({e})"),
            Ty::Map(k, v) => write!(f, "map({k}, {v})"),
            Ty::Message(m) => f.write_str(m.full_name()),
            Ty::Wrapper(t) => write!(f, "wrapper({t})"),
        }
    }
}

impl Ty {
    fn of_field(field: &FieldDescriptor) -> Ty {
        let kind = field.kind();
        if field.is_map() {
            let entry = kind.as_message().expect("a map field is a message");
            Ty::Map(
                Box::new(Ty::of_kind(&entry.map_entry_key_field().kind())),
                Box::new(Ty::of_kind(&entry.map_entry_value_field().kind())),
            )
        } else if field.is_list() {
            Ty::List(Box::new(Ty::of_kind(&kind)))
        } else {
            Ty::of_kind(&kind)
        }
    }

    fn of_kind(kind: &Kind) -> Ty {
        match kind {
            Kind::Double | Kind::Float => Ty::Double,
            Kind::Int32 | Kind::Int64 | Kind::Sint32 | Kind::Sint64 | Kind::Sfixed32 | Kind::Sfixed64 => Ty::Int,
            Kind::Uint32 | Kind::Uint64 | Kind::Fixed32 | Kind::Fixed64 => Ty::Uint,
            Kind::Bool => Ty::Bool,
            Kind::String => Ty::String,
            Kind::Bytes => Ty::Bytes,
            Kind::Enum(_) => Ty::Int,
            Kind::Message(m) => match m.full_name() {
                "google.protobuf.Timestamp" => Ty::Timestamp,
                "google.protobuf.Duration" => Ty::Duration,
                "google.protobuf.Any" => Ty::Dyn,
                name => match wrapped(name) {
                    Some(kind) => Ty::Wrapper(Box::new(Ty::of_kind(&kind))),
                    None => Ty::Message(m.clone()),
                },
            },
        }
    }

    fn is_numeric(&self) -> bool {
        match self {
            Ty::Int | Ty::Uint | Ty::Double => true,
            Ty::Wrapper(t) => t.is_numeric(),
            _ => false,
        }
    }

    /// Whether `==` between the two can hold (cel-go's assignability, plus
    /// mixed numbers).
    fn comparable(&self, other: &Ty) -> bool {
        match (self, other) {
            (Ty::Dyn, _) | (_, Ty::Dyn) => true,
            (a, b) if a.is_numeric() && b.is_numeric() => true,
            (Ty::Null, Ty::Null | Ty::Message(_) | Ty::Wrapper(_)) | (Ty::Message(_) | Ty::Wrapper(_), Ty::Null) => {
                true
            }
            (Ty::Wrapper(a), b) | (b, Ty::Wrapper(a)) => a.comparable(b),
            (Ty::List(a), Ty::List(b)) => a.comparable(b),
            (Ty::Map(k1, v1), Ty::Map(k2, v2)) => k1.comparable(k2) && v1.comparable(v2),
            (a, b) => a == b,
        }
    }
}

/// The value kind a wrapper message holds, if `name` is one.
pub(super) fn wrapped(name: &str) -> Option<Kind> {
    Some(match name {
        "google.protobuf.BoolValue" => Kind::Bool,
        "google.protobuf.Int32Value" => Kind::Int32,
        "google.protobuf.Int64Value" => Kind::Int64,
        "google.protobuf.UInt32Value" => Kind::Uint32,
        "google.protobuf.UInt64Value" => Kind::Uint64,
        "google.protobuf.FloatValue" => Kind::Float,
        "google.protobuf.DoubleValue" => Kind::Double,
        "google.protobuf.StringValue" => Kind::String,
        "google.protobuf.BytesValue" => Kind::Bytes,
        _ => return None,
    })
}

/// A type check over the parsed expression; errors carry the node id.
pub(super) struct Checker<'s> {
    pub(super) schema: &'s Schema,
    /// Comprehension variables in scope, innermost last.
    pub(super) scope: Vec<(String, Ty)>,
}

type Checked = Result<Ty, (u64, CelError)>;

impl Checker<'_> {
    pub(super) fn check(&mut self, e: &mut IdedExpr) -> Checked {
        if let Some((root, name)) = self.qualified_name(e) {
            return self
                .resolve(&name)
                .ok_or((root, CelError::UndeclaredReference { name }));
        }
        let id = e.id;
        let at = |reason| (id, reason);
        match &mut e.expr {
            Expr::Unspecified => Ok(Ty::Dyn),
            Expr::Literal(l) => Ok(match l {
                LiteralValue::Boolean(_) => Ty::Bool,
                LiteralValue::Bytes(_) => Ty::Bytes,
                LiteralValue::Double(_) => Ty::Double,
                LiteralValue::Int(_) => Ty::Int,
                LiteralValue::Null => Ty::Null,
                LiteralValue::String(_) => Ty::String,
                LiteralValue::UInt(_) => Ty::Uint,
            }),
            Expr::Ident(name) => Ok(self.variable(name).expect("not a qualified name, so a variable")),
            Expr::Select(select) => {
                let operand = self.check(&mut select.operand)?;
                let ty = match &operand {
                    Ty::Message(m) => m
                        .get_field_by_name(&select.field)
                        .map(|f| Ty::of_field(&f))
                        .ok_or_else(|| {
                            at(CelError::UndefinedField {
                                message: m.full_name().to_string(),
                                field: select.field.clone(),
                            })
                        })?,
                    Ty::Map(_, v) => (**v).clone(),
                    Ty::Dyn => Ty::Dyn,
                    other => {
                        return Err(at(CelError::NoFieldSelection {
                            found: other.to_string(),
                        }))
                    }
                };
                if !select.test {
                    return Ok(ty);
                }
                // On a `dyn` operand (an unpacked `Any`) a plain `has()` is
                // left, which holds for every field of a message.
                if matches!(operand, Ty::Message(_)) {
                    select.field.insert(0, PRESENCE);
                }
                Ok(Ty::Bool)
            }
            Expr::Call(call) => {
                let target = match &mut call.target {
                    Some(t) => Some(self.check(t)?),
                    None => None,
                };
                let args = call
                    .args
                    .iter_mut()
                    .map(|a| self.check(a))
                    .collect::<Result<Vec<_>, _>>()?;
                call_type(&call.func_name, target.as_ref(), &args).map_err(at)
            }
            Expr::Comprehension(c) => {
                let range = self.check(&mut c.iter_range)?;
                let (first, second) = match range {
                    Ty::List(e) if c.iter_var2.is_some() => (Ty::Int, *e),
                    Ty::List(e) => (*e, Ty::Dyn),
                    Ty::Map(k, v) => (*k, *v),
                    Ty::Dyn => (Ty::Dyn, Ty::Dyn),
                    other => {
                        return Err((
                            c.iter_range.id,
                            CelError::NotIterable {
                                found: other.to_string(),
                            },
                        ))
                    }
                };
                let accu = self.check(&mut c.accu_init)?;
                self.scope.push((c.accu_var.clone(), accu));
                let depth = self.scope.len();
                self.scope.push((c.iter_var.clone(), first));
                if let Some(v) = &c.iter_var2 {
                    self.scope.push((v.clone(), second));
                }
                self.check(&mut c.loop_cond)?;
                self.check(&mut c.loop_step)?;
                self.scope.truncate(depth);
                let result = self.check(&mut c.result);
                self.scope.pop();
                result
            }
            Expr::List(list) => {
                let elements = list
                    .elements
                    .iter_mut()
                    .map(|e| self.check(e))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Ty::List(Box::new(uniform(elements))))
            }
            Expr::Map(map) => {
                let (mut keys, mut values) = (Vec::new(), Vec::new());
                for entry in &mut map.entries {
                    if let EntryExpr::MapEntry(entry) = &mut entry.expr {
                        keys.push(self.check(&mut entry.key)?);
                        values.push(self.check(&mut entry.value)?);
                    }
                }
                Ok(Ty::Map(Box::new(uniform(keys)), Box::new(uniform(values))))
            }
            Expr::Struct(s) => Err(at(CelError::MessageConstruction {
                type_name: s.type_name.clone(),
            })),
        }
    }

    fn variable(&self, name: &str) -> Option<Ty> {
        if let Some((_, ty)) = self.scope.iter().rev().find(|(n, _)| n == name) {
            return Some(ty.clone());
        }
        (name == FLOW_VARIABLE).then(|| Ty::Message(self.schema.flow.clone()))
    }

    /// The id of the root identifier and the dotted name, when `e` is
    /// `a.b.c` with `a` no variable: an enum constant or a type, resolved
    /// whole as cel-go does.
    fn qualified_name(&self, e: &IdedExpr) -> Option<(u64, String)> {
        let mut segments = Vec::new();
        let mut node = e;
        loop {
            match &node.expr {
                Expr::Select(s) if !s.test => {
                    segments.push(s.field.as_str());
                    node = &s.operand;
                }
                Expr::Ident(name) if self.variable(name).is_none() => {
                    segments.push(name);
                    segments.reverse();
                    return Some((node.id, segments.join(".")));
                }
                _ => return None,
            }
        }
    }

    fn resolve(&self, name: &str) -> Option<Ty> {
        let candidates = [format!("{CONTAINER}.{name}"), name.to_string()];
        if candidates.iter().any(|c| self.schema.enums.contains_key(c)) {
            return Some(Ty::Int);
        }
        let builtin = matches!(
            name,
            "bool" | "int" | "uint" | "double" | "string" | "bytes" | "list" | "map" | "null_type" | "type"
        );
        builtin.then_some(Ty::Type)
    }
}

/// The element type of a literal list: the common one, else `dyn`.
fn uniform(types: Vec<Ty>) -> Ty {
    match types.split_first() {
        Some((first, rest)) if rest.iter().all(|t| t == first) => first.clone(),
        _ => Ty::Dyn,
    }
}

/// The result type of an operator or function of the standard library.
fn call_type(name: &str, target: Option<&Ty>, args: &[Ty]) -> Result<Ty, CelError> {
    let no_overload = || {
        let list = |ts: &[Ty]| ts.iter().map(Ty::to_string).collect::<Vec<_>>().join(", ");
        CelError::NoMatchingOverload {
            function: name.to_string(),
            signature: match target {
                Some(t) => format!("{t}.({})", list(args)),
                None => format!("({})", list(args)),
            },
        }
    };
    let is = |t: &Ty, want: &Ty| match t {
        Ty::Dyn => true,
        Ty::Wrapper(inner) => **inner == *want,
        t => t == want,
    };
    let ordered = |a: &Ty, b: &Ty| {
        (a.is_numeric() && b.is_numeric()) || (a == b && !matches!(a, Ty::List(_) | Ty::Map(..) | Ty::Message(_)))
    };
    let ok = |holds: bool, ty: Ty| if holds { Ok(ty) } else { Err(no_overload()) };
    match (name, args) {
        ("_&&_" | "_||_", [a, b]) => ok(is(a, &Ty::Bool) && is(b, &Ty::Bool), Ty::Bool),
        ("!_" | "@not_strictly_false", [a]) => ok(is(a, &Ty::Bool), Ty::Bool),
        ("_==_" | "_!=_", [a, b]) => ok(a.comparable(b), Ty::Bool),
        ("_<_" | "_<=_" | "_>_" | "_>=_", [a, b]) => ok(*a == Ty::Dyn || *b == Ty::Dyn || ordered(a, b), Ty::Bool),
        ("@in", [a, Ty::List(e)]) => ok(a.comparable(e), Ty::Bool),
        ("@in", [a, Ty::Map(k, _)]) => ok(a.comparable(k), Ty::Bool),
        ("@in", [_, Ty::Dyn]) => Ok(Ty::Bool),
        ("_?_:_", [c, a, b]) => ok(is(c, &Ty::Bool), if a == b { a.clone() } else { Ty::Dyn }),
        ("_[_]", [Ty::List(e), i]) => ok(is(i, &Ty::Int) || i.is_numeric(), (**e).clone()),
        ("_[_]", [Ty::Map(k, v), key]) => ok(k.comparable(key), (**v).clone()),
        ("_[_]", [Ty::Dyn, _]) => Ok(Ty::Dyn),
        ("-_", [a]) => ok(a.is_numeric() || matches!(a, Ty::Duration | Ty::Dyn), a.clone()),
        ("_+_" | "_-_" | "_*_" | "_/_" | "_%_", [a, b]) => match (a, b) {
            (Ty::Dyn, _) | (_, Ty::Dyn) => Ok(Ty::Dyn),
            (Ty::List(_), Ty::List(_)) if name == "_+_" => Ok(Ty::List(Box::new(Ty::Dyn))),
            (Ty::Timestamp, Ty::Duration) | (Ty::Duration, Ty::Timestamp) => Ok(Ty::Timestamp),
            (Ty::Timestamp, Ty::Timestamp) if name == "_-_" => Ok(Ty::Duration),
            (a, b) => ok(a == b && !matches!(a, Ty::Bool | Ty::Null | Ty::Message(_)), a.clone()),
        },
        ("contains" | "startsWith" | "endsWith" | "matches", [arg]) => ok(
            target.is_none_or(|t| is(t, &Ty::String)) && is(arg, &Ty::String),
            Ty::Bool,
        ),
        ("matches", [s, re]) => ok(is(s, &Ty::String) && is(re, &Ty::String), Ty::Bool),
        ("size", _) => Ok(Ty::Int),
        ("int", _) => Ok(Ty::Int),
        ("uint", _) => Ok(Ty::Uint),
        ("double", _) => Ok(Ty::Double),
        ("string", _) => Ok(Ty::String),
        ("bytes", _) => Ok(Ty::Bytes),
        ("bool", _) => Ok(Ty::Bool),
        ("dyn", _) => Ok(Ty::Dyn),
        ("type", _) => Ok(Ty::Type),
        ("timestamp", _) => Ok(Ty::Timestamp),
        ("duration", _) => Ok(Ty::Duration),
        (
            "getFullYear" | "getMonth" | "getDayOfYear" | "getDayOfMonth" | "getDate" | "getDayOfWeek" | "getHours"
            | "getMinutes" | "getSeconds" | "getMilliseconds",
            _,
        ) => Ok(Ty::Int),
        (
            "_&&_" | "_||_" | "!_" | "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" | "@in" | "_?_:_" | "_[_]"
            | "-_" | "_+_" | "_-_" | "_*_" | "_/_" | "_%_" | "contains" | "startsWith" | "endsWith",
            _,
        ) => Err(no_overload()),
        _ => Err(CelError::UndeclaredReference { name: name.to_string() }),
    }
}
