//! What a parse error says and where it points: the public [`PolicyError`],
//! and the field paths and issues the validation stages produce before the
//! file, document and line are known.

use std::fmt;
use std::path::PathBuf;

/// One problem in a policy file. Nothing from a call that reports one is
/// used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based index of the YAML document in the file; 0 when the file as
    /// a whole failed (unreadable).
    pub document: usize,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The object in Kubernetes' words (`CiliumNetworkPolicy default/web`),
    /// once its kind and name could be read.
    pub object: Option<String>,
    /// Path of the field in the document (`spec.ingress[0].toPorts[0]`);
    /// empty when the error is about no field (syntax, file).
    pub field: String,
    pub reason: String,
}

impl PolicyError {
    /// `{file}:{line}: document {document} ({object}): {field}: {reason}`,
    /// absent parts left out.
    fn render(&self) -> String {
        let mut out = self.file.display().to_string();
        if let Some(line) = self.line {
            out += &format!(":{line}");
        }
        out += ":";
        if self.document > 0 {
            out += &format!(" document {}", self.document);
            if let Some(object) = &self.object {
                out += &format!(" ({object})");
            }
            out += ":";
        }
        if !self.field.is_empty() {
            out += &format!(" {}:", self.field);
        }
        out += " ";
        out += &self.reason;
        out
    }
}

/// A step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    /// A field of an object: `.ingress`.
    Field(String),
    /// An entry of a list: `[0]`.
    Index(usize),
    /// An entry of a string map, whose keys may hold dots: `[app.kubernetes.io/name]`.
    Key(String),
}

/// Where in a document a value is, Kubernetes style:
/// `spec.ingress[0].fromEndpoints[1].matchLabels[app]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct FieldPath(Vec<Segment>);

impl FieldPath {
    pub(super) fn field(&self, name: &str) -> FieldPath {
        self.with(Segment::Field(name.to_string()))
    }

    pub(super) fn index(&self, index: usize) -> FieldPath {
        self.with(Segment::Index(index))
    }

    pub(super) fn key(&self, key: &str) -> FieldPath {
        self.with(Segment::Key(key.to_string()))
    }

    pub(super) fn segments(&self) -> &[Segment] {
        &self.0
    }

    fn with(&self, segment: Segment) -> FieldPath {
        let mut path = self.clone();
        path.0.push(segment);
        path
    }

    /// The path serde_path_to_error recorded. It cannot tell a string map's
    /// key from an object's field; the maps of these documents are known by
    /// name.
    fn from_serde(path: &serde_path_to_error::Path) -> FieldPath {
        const MAPS: &[&str] = &["matchLabels", "labels", "annotations"];
        let mut out = FieldPath::default();
        for segment in path.iter() {
            let in_map = matches!(out.0.last(), Some(Segment::Field(f)) if MAPS.contains(&f.as_str()));
            out = match segment {
                serde_path_to_error::Segment::Seq { index } => out.index(*index),
                serde_path_to_error::Segment::Map { key } if in_map => out.key(key),
                serde_path_to_error::Segment::Map { key } => out.field(key),
                serde_path_to_error::Segment::Enum { variant } => out.field(variant),
                serde_path_to_error::Segment::Unknown => break,
            };
        }
        out
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Field(name) if i == 0 => f.write_str(name)?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key) => write!(f, "[{key}]")?,
            }
        }
        Ok(())
    }
}

/// A problem found in one document, before the file, document and line
/// are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Issue {
    pub(super) path: FieldPath,
    pub(super) reason: String,
}

impl Issue {
    pub(super) fn new(path: &FieldPath, reason: impl Into<String>) -> Issue {
        Issue {
            path: path.clone(),
            reason: reason.into(),
        }
    }
}

/// The issues of one document, gathered so that all of them are reported.
#[derive(Debug, Default)]
pub(super) struct Issues(Vec<Issue>);

impl Issues {
    pub(super) fn push(&mut self, path: &FieldPath, reason: impl Into<String>) {
        self.0.push(Issue::new(path, reason));
    }

    /// A serde error (wrong type, unknown field) at the path it happened.
    pub(super) fn serde(&mut self, err: &serde_path_to_error::Error<serde_yaml_ng::Error>) {
        self.0.push(Issue {
            path: FieldPath::from_serde(err.path()),
            reason: serde_reason(&err.inner().to_string()),
        });
    }

    /// The value, or `None` with the reason recorded at `path`.
    pub(super) fn check<T>(&mut self, path: &FieldPath, result: Result<T, String>) -> Option<T> {
        result.map_err(|reason| self.push(path, reason)).ok()
    }

    /// A field Cilium knows and Lumen does not implement yet: refused by
    /// name rather than silently ignored, since ignoring it would change
    /// what the policy allows.
    pub(super) fn unsupported(&mut self, path: &FieldPath, name: &str, given: bool) {
        if given {
            self.push(&path.field(name), format!("\"{name}\" is not supported yet"));
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn into_vec(self) -> Vec<Issue> {
        self.0
    }
}

/// serde's message in our quoting. serde puts names and non-string values
/// in backticks: names get double quotes like ours (`unknown field
/// "fromEndpoint"`), values none (`invalid type: integer 1`), so that a
/// number does not read as a string.
fn serde_reason(message: &str) -> String {
    if message.starts_with("invalid type:") || message.starts_with("invalid value:") {
        message.replace('`', "")
    } else {
        message.replace('`', "\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_display() {
        let path = FieldPath::default()
            .field("spec")
            .field("ingress")
            .index(0)
            .field("matchLabels")
            .key("app.kubernetes.io/name");
        assert_eq!(path.to_string(), "spec.ingress[0].matchLabels[app.kubernetes.io/name]");
        assert_eq!(FieldPath::default().to_string(), "");
    }

    #[test]
    fn serde_messages_in_our_quoting() {
        assert_eq!(
            serde_reason("unknown field `toPort`, expected `toPorts` or `icmps`"),
            "unknown field \"toPort\", expected \"toPorts\" or \"icmps\""
        );
        assert_eq!(
            serde_reason("invalid type: integer `1`, expected a string"),
            "invalid type: integer 1, expected a string"
        );
        assert_eq!(
            serde_reason("invalid type: string \"x\", expected a boolean"),
            "invalid type: string \"x\", expected a boolean"
        );
    }

    #[test]
    fn error_display_leaves_out_absent_parts() {
        let mut err = PolicyError {
            file: PathBuf::from("p/web.yaml"),
            document: 2,
            line: Some(14),
            object: Some("CiliumNetworkPolicy default/web".into()),
            field: "spec.ingress[0].fromCIDR[0]".into(),
            reason: "\"10.0.0.0/33\" is not a CIDR".into(),
        };
        assert_eq!(
            err.to_string(),
            "p/web.yaml:14: document 2 (CiliumNetworkPolicy default/web): spec.ingress[0].fromCIDR[0]: \
             \"10.0.0.0/33\" is not a CIDR"
        );
        err.line = None;
        err.object = None;
        err.field.clear();
        assert_eq!(err.to_string(), "p/web.yaml: document 2: \"10.0.0.0/33\" is not a CIDR");
        err.document = 0;
        err.reason = "cannot read: permission denied".into();
        assert_eq!(err.to_string(), "p/web.yaml: cannot read: permission denied");
    }
}
