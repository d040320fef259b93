//! Hubble's FQDN and node name globs (`source_fqdn`, `destination_fqdn`,
//! `node_name`).
//!
//! A pattern is trimmed, loses one trailing dot and is lowercased; it may
//! hold `a-z`, `0-9`, `-`, `_`, `.` and `*`, where `*` matches any run of
//! `a-z`, `0-9`, `-` and `.`. The whole name must match. Node name patterns
//! are `[cluster/]node`, each half such a glob, an absent or empty half
//! matching any name; a flow's node name without a cluster is in cluster
//! `default`.

use lumen_proto::flow::Flow;
use regex::Regex;

use crate::error::{FilterError, PatternError};
use crate::Side;

/// Cilium's default cluster name, assumed for node names without one.
const DEFAULT_CLUSTER: &str = "default";

/// Any non-empty DNS-like name: what an omitted pattern half stands for.
const ANY_NAME: &str = r"[-0-9_a-z]+(?:\.[-0-9_a-z]+)*";

/// Appends the regex equivalent of one FQDN glob to `out`.
fn push_glob(out: &mut String, pattern: &str) -> Result<(), PatternError> {
    let trimmed = pattern.trim();
    let pattern = trimmed.strip_suffix('.').unwrap_or(trimmed).to_lowercase();
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
    if pattern.ends_with('.') {
        return Err(PatternError::MultipleTrailingDots);
    }
    for c in pattern.chars() {
        match c {
            '.' => out.push_str(r"\."),
            '*' => out.push_str("[-.0-9a-z]*"),
            '-' | '_' | '0'..='9' | 'a'..='z' => out.push(c),
            _ => return Err(PatternError::InvalidChar(c)),
        }
    }
    Ok(())
}

/// Compiles a translated glob matching whole strings. The translation is
/// always valid syntax; only an absurdly long pattern can fail, on the
/// regex size limit.
fn anchored(body: &str) -> Result<Regex, PatternError> {
    Regex::new(&format!(r"\A(?:{body})\z")).map_err(|_| PatternError::TooLong)
}

fn compile_glob(pattern: &str) -> Result<Regex, PatternError> {
    let mut body = String::new();
    push_glob(&mut body, pattern)?;
    anchored(&body)
}

/// `source_fqdn` / `destination_fqdn`: one of the flow's DNS names for that
/// side must match one of the globs.
#[derive(Debug, Clone)]
pub(crate) struct FqdnMatcher {
    side: Side,
    globs: Vec<Regex>,
}

impl FqdnMatcher {
    pub(crate) fn new(side: Side, patterns: &[String]) -> Result<Self, FilterError> {
        let field = side.pick("source_fqdn", "destination_fqdn");
        let globs = patterns
            .iter()
            .map(|p| {
                compile_glob(p).map_err(|reason| FilterError::InvalidPattern {
                    field,
                    value: p.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { side, globs })
    }

    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let names = self.side.pick(&flow.source_names, &flow.destination_names);
        names.iter().any(|n| self.globs.iter().any(|g| g.is_match(n)))
    }
}

/// `node_name`: `[cluster/]node` globs.
#[derive(Debug, Clone)]
pub(crate) struct NodeNameMatcher {
    /// (cluster, node) per pattern; split so that a flow's bare node name
    /// needs no `default/` prefix built at match time.
    patterns: Vec<(Regex, Regex)>,
}

impl NodeNameMatcher {
    pub(crate) fn new(patterns: &[String]) -> Result<Self, FilterError> {
        let compiled = patterns
            .iter()
            .map(|p| {
                compile_node_pattern(p).map_err(|reason| FilterError::InvalidPattern {
                    field: "node_name",
                    value: p.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns: compiled })
    }

    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        if flow.node_name.is_empty() {
            return false;
        }
        let (cluster, node) = flow
            .node_name
            .split_once('/')
            .unwrap_or((DEFAULT_CLUSTER, &flow.node_name));
        self.patterns
            .iter()
            .any(|(c, n)| c.is_match(cluster) && n.is_match(node))
    }
}

fn compile_node_pattern(pattern: &str) -> Result<(Regex, Regex), PatternError> {
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
    let (cluster, node) = match pattern.split_once('/') {
        Some((_, node)) if node.contains('/') => return Err(PatternError::TooManySlashes),
        Some((cluster, node)) => (cluster, node),
        None => ("", pattern),
    };
    let half = |p: &str| {
        if p.is_empty() {
            anchored(ANY_NAME)
        } else {
            compile_glob(p)
        }
    };
    Ok((half(cluster)?, half(node)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_flow(name: &str) -> Flow {
        Flow {
            node_name: name.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn node_name_globs() {
        // (pattern, flow node name, matches)
        let cases: &[(&str, &str, bool)] = &[
            ("kind-worker", "kind-worker", true),
            ("kind-worker", "kind-worker2", false),
            ("kind-*", "kind-worker", true),
            ("kind-*", "kind-control-plane", true),
            ("*worker", "kind-worker", true),
            ("*", "node-1.example.com", true),
            ("k8s*", "kind-worker", false),
            ("default/kind-*", "kind-worker", true),
            ("prod/kind-*", "kind-worker", false),
            ("prod/kind-*", "prod/kind-worker", true),
            ("prod/", "prod/anything", true),
            ("/kind-worker", "other/kind-worker", true),
            ("kind-worker", "prod/kind-worker", true),
            ("KIND-Worker.", "kind-worker", true),
            ("kind-worker", "", false),
        ];
        for (pattern, name, want) in cases {
            let m = NodeNameMatcher::new(&[pattern.to_string()]).unwrap();
            assert_eq!(m.matches(&node_flow(name)), *want, "{pattern:?} vs {name:?}");
        }
    }

    #[test]
    fn rejects_bad_globs() {
        let cases: &[(&str, &str)] = &[
            ("", "invalid pattern \"\" in node_name: empty pattern"),
            ("a/b/c", "invalid pattern \"a/b/c\" in node_name: too many slashes, expected [cluster/]node"),
            ("node..", "invalid pattern \"node..\" in node_name: multiple trailing dots"),
            (
                "node?",
                "invalid pattern \"node?\" in node_name: invalid character '?', expected a-z, 0-9, '-', '_', '.' or '*'",
            ),
        ];
        for (pattern, msg) in cases {
            let err = NodeNameMatcher::new(&[pattern.to_string()]).unwrap_err();
            assert_eq!(err.to_string(), *msg);
        }
        let huge = "*a".repeat(100_000);
        let err = NodeNameMatcher::new(std::slice::from_ref(&huge)).unwrap_err();
        assert_eq!(
            err,
            FilterError::InvalidPattern {
                field: "node_name",
                value: huge,
                reason: PatternError::TooLong
            }
        );
        let err = FqdnMatcher::new(Side::Destination, &[" . ".to_string()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid pattern \" . \" in destination_fqdn: empty pattern"
        );
    }

    #[test]
    fn fqdn_globs() {
        let flow = Flow {
            source_names: vec!["api.example.com".into()],
            destination_names: vec!["cdn.example.org".into(), "www.example.net".into()],
            ..Default::default()
        };
        let m = |side, p: &[&str]| {
            FqdnMatcher::new(side, &p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .matches(&flow)
        };
        assert!(m(Side::Source, &["api.example.com"]));
        assert!(m(Side::Source, &["*.example.com"]));
        assert!(m(Side::Source, &["API.Example.com."]));
        assert!(!m(Side::Source, &["example.com"]));
        assert!(!m(Side::Source, &["*.example.org"]));
        assert!(m(Side::Destination, &["nothing.io", "www.*"]));
        assert!(!m(Side::Destination, &["api.example.com"]));
        // A flow without names never matches.
        assert!(!FqdnMatcher::new(Side::Source, &["*".into()])
            .unwrap()
            .matches(&Flow::default()));
    }
}
