//! CEL filters: `FlowFilter.experimental.cel_expression`, as Hubble runs them.
//!
//! Hubble compiles each expression with cel-go against the protobuf schema:
//! the flow is the variable `_flow` of type `flow.Flow`, names resolve in the
//! container `flow` (so `Verdict.DROPPED` is an enum constant, an `int`), the
//! result must be `bool`, and the expressions of one filter are tried in turn:
//! the first `true` matches, an evaluation error rejects the flow.
//!
//! The `cel` crate has no type checker, so [`Checker`] is a small one over the
//! same schema (`lumen_proto::FILE_DESCRIPTOR_SET`): unknown names, unknown
//! fields, mismatched operands and non-`bool` results are compile errors with
//! a position, as in Hubble. One leniency: `int` and `uint` compare with each
//! other (`destination_port == 80`, which cel-go refuses without `80u`),
//! as CEL's runtime defines it.
//!
//! At match time the flow is encoded and handed to the program as a
//! [`MessageView`] that decodes only the fields it reads (a full
//! `DynamicMessage` decode costs several times more than the whole match),
//! with protobuf semantics: an unset message reads as its default, an unset
//! wrapper (`is_reply`) as `null`, an unset `time` as the epoch.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use ::cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use ::cel::common::traits::Indexer;
use ::cel::common::types::{
    CelBool, CelBytes, CelDouble, CelDuration, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelTimestamp,
    CelUInt, Type,
};
use ::cel::common::value::{CowVal, Val};
use ::cel::context::VariableResolver;
use ::cel::{Context, Env, ExecutionError};
use lumen_proto::flow::Flow;
use prost::Message;
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};

use crate::error::{CelError, FilterError};

mod check;
mod view;

use check::{wrapped, Checker, Ty};
use view::{MessageView, Variables};

const CONTAINER: &str = "flow";
const FLOW_VARIABLE: &str = "_flow";

/// `has(m.f)` on a message is rewritten to select `PRESENCE` + `f`: the
/// interpreter asks the same `Indexer::get` for `has()` and for a read, and
/// only a presence test may see an unset field as missing.
const PRESENCE: char = '\0';

/// What every expression is compiled and evaluated against, built once.
struct Schema {
    pool: DescriptorPool,
    flow: MessageDescriptor,
    /// The CEL struct type of every message, by full name.
    types: HashMap<String, Type>,
    /// Every enum constant by its CEL name, e.g. `flow.Verdict.DROPPED`.
    enums: HashMap<String, i64>,
    env: Arc<Env>,
}

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let pool =
            DescriptorPool::decode(lumen_proto::FILE_DESCRIPTOR_SET).expect("lumen-proto ships a valid descriptor set");
        let flow = pool
            .get_message_by_name("flow.Flow")
            .expect("flow.Flow is in the descriptor set");
        let types = pool
            .all_messages()
            .map(|m| (m.full_name().to_string(), Type::new_struct(m.full_name().to_string())))
            .collect();
        let enums = pool
            .all_enums()
            .flat_map(|e| {
                let prefix = e.full_name().to_string();
                e.values()
                    .map(|v| (format!("{prefix}.{}", v.name()), i64::from(v.number())))
                    .collect::<Vec<_>>()
            })
            .collect();
        // Hubble's environment: the standard library, no extensions, no optional syntax.
        let mut env = Env::stdlib().with_optional_support(false);
        env.set_container(CONTAINER).expect("a valid container name");
        Schema {
            pool,
            flow,
            types,
            enums,
            env: Arc::new(env),
        }
    })
}

/// The CEL expressions of one `FlowFilter`, parsed and checked.
#[derive(Debug, Clone)]
pub(crate) struct CelMatcher {
    programs: Vec<IdedExpr>,
}

impl CelMatcher {
    pub(crate) fn new(expressions: &[String]) -> Result<Self, FilterError> {
        let programs = expressions.iter().map(|e| compile(e)).collect::<Result<_, _>>()?;
        Ok(Self { programs })
    }

    /// Hubble's order: the first `true` matches; an error, or a result that
    /// is not a bool, rejects the flow without trying the rest.
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let schema = schema();
        let bytes = flow.encode_to_vec();
        let variables = Variables {
            flow: MessageView::new(schema.flow.clone(), &bytes),
            enums: &schema.enums,
        };
        let mut context = Context::with_env(Arc::clone(&schema.env));
        context.set_variable_resolver(&variables);
        for program in &self.programs {
            match context.resolve(program) {
                Ok(::cel::Value::Bool(true)) => return true,
                Ok(::cel::Value::Bool(false)) => {}
                _ => return false,
            }
        }
        false
    }
}

fn compile(expression: &str) -> Result<IdedExpr, FilterError> {
    let invalid = |(line, column), reason| FilterError::InvalidCel {
        expression: expression.to_string(),
        line,
        column,
        reason,
    };
    let program = schema().env.compile(expression).map_err(|errors| {
        let first = errors.errors.first();
        let (line, column) = first.map_or((0, 0), |e| e.pos);
        let message = first.map_or_else(String::new, |e| e.msg.clone());
        invalid(
            (line.max(0) as usize, column.max(0) as usize),
            CelError::Syntax { message },
        )
    })?;
    let mut expr = program.expression().clone();
    let position = |id: u64| {
        let offset = program
            .source_info()
            .offset_for(id)
            .map_or(0, |(start, _)| start as usize);
        line_column(expression, offset)
    };
    let mut checker = Checker {
        schema: schema(),
        scope: Vec::new(),
    };
    match checker.check(&mut expr) {
        Err((id, reason)) => Err(invalid(position(id), reason)),
        Ok(Ty::Bool | Ty::Dyn) => Ok(expr),
        Ok(found) => Err(invalid(
            position(expr.id),
            CelError::NotBool {
                found: found.to_string(),
            },
        )),
    }
}

/// 1-based line and column (in characters) of the byte `offset`, as the
/// parser records it.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        1 + before.matches('\n').count(),
        1 + before[line_start..].chars().count(),
    )
}
