//! Why a `FlowFilter` could not be compiled.
//!
//! Every variant names the `FlowFilter` field (as spelled in flow.proto) and,
//! where there is one, the offending value, so a server can answer with
//! `invalid_argument` and a message the user can act on.

use thiserror::Error;

/// A `FlowFilter` that cannot be compiled into a matcher.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FilterError {
    #[error("invalid IP address {value:?} in {field}")]
    InvalidIp { field: &'static str, value: String },

    #[error("invalid CIDR {value:?} in {field}: {reason}")]
    InvalidCidr {
        field: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error("invalid {field} filter {value:?}: expected [namespace/][name-prefix]")]
    InvalidNamespacedName { field: &'static str, value: String },

    #[error("invalid label selector {value:?} in {field}: {reason}")]
    InvalidLabelSelector {
        field: &'static str,
        value: String,
        reason: SelectorError,
    },

    #[error("invalid port {value:?} in {field}: {reason}")]
    InvalidPort {
        field: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error("unknown protocol {value:?} in protocol: expected one of tcp, udp, sctp, icmp, icmpv4, icmpv6, dns, http, kafka")]
    UnknownProtocol { value: String },

    #[error("invalid pattern {value:?} in {field}: {reason}")]
    InvalidPattern {
        field: &'static str,
        value: String,
        reason: PatternError,
    },

    #[error("invalid regular expression {value:?} in {field}: {reason}")]
    InvalidRegex {
        field: &'static str,
        value: String,
        reason: regex::Error,
    },

    #[error("invalid HTTP status code {value:?} in http_status_code: expected a code such as 404 or a prefix such as 5+ or 40+")]
    InvalidHttpStatusCode { value: String },

    #[error("empty value in {field}")]
    EmptyValue { field: &'static str },

    #[error("filtering by {field} requires the event_type filter to include L7 events (type 129)")]
    RequiresL7EventType { field: &'static str },

    #[error("{field} is not supported by Lumen")]
    Unsupported { field: &'static str },

    #[error("invalid CEL expression {expression:?} at {line}:{column}: {reason}")]
    InvalidCel {
        expression: String,
        line: usize,
        column: usize,
        reason: CelError,
    },
}

/// Why a CEL expression in `experimental.cel_expression` does not compile.
/// The wording follows cel-go's, which Hubble reports.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CelError {
    /// The parser's own message.
    #[error("{message}")]
    Syntax { message: String },

    #[error("undeclared reference to '{name}' (in container 'flow')")]
    UndeclaredReference { name: String },

    #[error("undefined field '{field}' in {message}")]
    UndefinedField { message: String, field: String },

    #[error("type '{found}' does not support field selection")]
    NoFieldSelection { found: String },

    #[error("found no matching overload for '{function}' applied to '{signature}'")]
    NoMatchingOverload { function: String, signature: String },

    #[error("expression of type '{found}' cannot be the range of a comprehension (must be list, map, or dynamic)")]
    NotIterable { found: String },

    #[error("creating messages ({type_name}{{...}}) is not supported")]
    MessageConstruction { type_name: String },

    #[error("got {found}, expected a bool result")]
    NotBool { found: String },
}

/// Why a Kubernetes label selector does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SelectorError {
    #[error("found {found:?}, expected {expected}")]
    Unexpected { found: String, expected: &'static str },

    #[error("unexpected end of selector, expected {expected}")]
    UnexpectedEnd { expected: &'static str },

    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },

    #[error("invalid value {value:?}: {reason}")]
    InvalidValue { value: String, reason: &'static str },
}

/// Why an FQDN or node name glob does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatternError {
    #[error("empty pattern")]
    Empty,

    #[error("multiple trailing dots")]
    MultipleTrailingDots,

    #[error("too many slashes, expected [cluster/]node")]
    TooManySlashes,

    #[error("invalid character {0:?}, expected a-z, 0-9, '-', '_', '.' or '*'")]
    InvalidChar(char),

    #[error("pattern too long")]
    TooLong,
}
