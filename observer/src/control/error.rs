//! What goes wrong serving the control API, and the gRPC status each case
//! becomes: the message is the text `lumen` prints, the code says what
//! kind of failure it was.

use lumen_proto::tonic::{Code, Status};

use crate::datapath::DatapathError;
use crate::endpoint::SetError;
use crate::policies::PolicyStoreError;
use crate::state::StateError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{ip:?} of {endpoint} is not an IP address")]
    BadIp { endpoint: String, ip: String },
    #[error("port {name:?} of {endpoint}: {port} is not a port (1-65535)")]
    BadNamedPort { endpoint: String, name: String, port: u32 },
    #[error("port {port} is not a number from 1 to 65535")]
    BadPort { port: u32 },
    #[error("protocol {protocol} is not an IP protocol number (0-255)")]
    BadProtocol { protocol: u32 },
    #[error("unknown aggregation level {level} (none, medium, max)")]
    BadAggregation { level: i32 },
    #[error("the request has no {field}")]
    Missing { field: &'static str },
    #[error("the control request failed")]
    Task(#[from] tokio::task::JoinError),
}

impl ControlError {
    fn code(&self) -> Code {
        match self {
            ControlError::State(e) => state_code(e),
            ControlError::BadIp { .. }
            | ControlError::BadNamedPort { .. }
            | ControlError::BadPort { .. }
            | ControlError::BadProtocol { .. }
            | ControlError::BadAggregation { .. }
            | ControlError::Missing { .. } => Code::InvalidArgument,
            ControlError::Task(_) => Code::Internal,
        }
    }
}

fn state_code(e: &StateError) -> Code {
    match e {
        StateError::Invalid { .. } => Code::InvalidArgument,
        StateError::NotFound { .. } => Code::NotFound,
        // Declared in a file: the file, not this API, changes it.
        StateError::FromFile { .. } => Code::FailedPrecondition,
        StateError::Endpoints(SetError::Invalid { .. }) => Code::InvalidArgument,
        StateError::Endpoints(_) => Code::AlreadyExists,
        StateError::Datapath(DatapathError::NoInterface { .. }) => Code::InvalidArgument,
        StateError::Datapath(_) => Code::Internal,
        StateError::Policy(p) => match p {
            PolicyStoreError::Invalid { .. } => Code::InvalidArgument,
            PolicyStoreError::FromFile { .. } => Code::FailedPrecondition,
            PolicyStoreError::NotFound { .. } => Code::NotFound,
            PolicyStoreError::Corrupt { .. } => Code::DataLoss,
            PolicyStoreError::Load { .. } | PolicyStoreError::Persist { .. } => Code::Internal,
        },
        StateError::Persist { .. } => Code::Internal,
    }
}

impl From<ControlError> for Status {
    fn from(e: ControlError) -> Status {
        Status::new(e.code(), bounded(crate::error_chain(&e)))
    }
}

/// The most a status message may take on the wire. gRPC sends it in a
/// header, percent-encoded, and clients refuse headers over 16 KiB
/// (hyper's default): a longer one would reach them as a protocol error
/// instead of the message.
pub const MESSAGE_BUDGET: usize = 8 << 10;

/// `message` whole if it fits [`MESSAGE_BUDGET`], else its first lines
/// and how many more there were. Only a long list of policy errors is ever
/// cut; `lumen` checks documents before it sends them, so it prints every
/// error itself.
fn bounded(message: String) -> String {
    // What tonic sends as %XX: controls, non-ASCII, and ` "#%<>`?{}`.
    let escaped = |b: u8| !(0x20..0x7f).contains(&b) || b" \"#%<>`?{}".contains(&b);
    let wire = |s: &str| s.bytes().map(|b| if escaped(b) { 3 } else { 1 }).sum::<usize>();
    if wire(&message) <= MESSAGE_BUDGET {
        return message;
    }
    let lines: Vec<&str> = message.lines().collect();
    // Room for the last line, "\n... and N more".
    let room = MESSAGE_BUDGET - 32;
    let mut out = String::new();
    let (mut kept, mut size) = (0, 0);
    for line in &lines {
        let grown = size + if kept == 0 { 0 } else { 3 } + wire(line);
        if grown > room {
            break;
        }
        if kept > 0 {
            out.push('\n');
        }
        out.push_str(line);
        (kept, size) = (kept + 1, grown);
    }
    if kept == 0 {
        // One line too long by itself: cut it at a character boundary.
        let mut end = room / 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        out.push_str(&message[..end]);
        kept = 1;
    }
    out.push_str(&format!("\n... and {} more", lines.len() - kept));
    out
}
