//! Lumen's policy model: CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy
//! and Kubernetes NetworkPolicy, parsed and validated (`parse`), normalised
//! into one model (`model`), resolved against endpoints and identities and
//! compiled into datapath entries.

pub mod compile;
pub mod documents;
pub mod identity;
pub mod model;
pub mod names;
pub mod parse;
pub mod trace;

pub use compile::{EndpointPolicy, Options, PolicyEntry, PolicySet, Universe};
pub use documents::{parse_documents, Document};
pub use model::{Kind, Policy};
pub use parse::{load_path, parse_str, PolicyError};
