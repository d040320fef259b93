//! The `--config` file: one YAML mapping of the flags' keys to a value or a
//! list of values. Values are kept as the text written (`0x10` stays
//! `0x10`) so that the flag parser judges them exactly as on the command
//! line.
//!
//! serde_yaml_ng's values carry no positions but its errors do (as in
//! `lumen-policy`'s `parse/lines.rs`): a key's line is found by walking the
//! document again and raising an error on that key.

use std::cell::RefCell;
use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::Error;

/// One `key: value` of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    /// `None` for `key:`, `key: ~` or `key: null`: as if absent.
    pub values: Option<Vec<String>>,
    pub line: usize,
}

/// What the file may say about a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    One,
    List,
}

/// A key the file may set, and its shape.
pub(crate) type Keys<'a> = &'a [(String, Shape)];

/// Raised in place of a real error when the walk reaches its target.
const FOUND: &str = "lumen-config: probe reached its target";

/// The problems found by the walk itself, kept aside so that the YAML
/// error raised for them only provides the position.
enum Problem {
    Unknown(String),
    Twice(String),
}

pub(crate) fn parse(path: &Path, text: &str, keys: Keys<'_>) -> Result<Vec<Entry>, Error> {
    let problem = RefCell::new(None);
    let walk = Walk {
        keys,
        stop_at: None,
        problem: &problem,
        entries: RefCell::new(Vec::new()),
    };
    let result = walk.run(text);
    let located = |e: &serde_yaml_ng::Error| e.location().map_or(1, |l| l.line());
    match (result, problem.take()) {
        (Ok(()), _) => {}
        (Err(e), Some(Problem::Unknown(key))) => {
            return Err(Error::UnknownKey {
                path: path.to_path_buf(),
                line: located(&e),
                suggestion: closest(&key, keys.iter().map(|(k, _)| k.as_str())),
                key,
            })
        }
        (Err(e), Some(Problem::Twice(key))) => {
            return Err(Error::DuplicateKey {
                path: path.to_path_buf(),
                line: located(&e),
                key,
            })
        }
        (Err(e), None) => {
            return Err(Error::Yaml {
                path: path.to_path_buf(),
                line: located(&e),
                message: bare_message(&e),
            })
        }
    }
    let mut entries = walk.entries.into_inner();
    for (i, entry) in entries.iter_mut().enumerate() {
        entry.line = line_of_key(text, keys, i).unwrap_or(1);
    }
    Ok(entries)
}

/// The line of the `index`-th key of the mapping.
fn line_of_key(text: &str, keys: Keys<'_>, index: usize) -> Option<usize> {
    let problem = RefCell::new(None);
    let walk = Walk {
        keys,
        stop_at: Some(index),
        problem: &problem,
        entries: RefCell::new(Vec::new()),
    };
    match walk.run(text) {
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| l.line()),
        _ => None,
    }
}

/// serde_yaml_ng's message without the position it appends (the position is
/// reported as `file:line` in front).
fn bare_message(e: &serde_yaml_ng::Error) -> String {
    let text = e.to_string();
    match e.location() {
        Some(l) => text
            .strip_suffix(&format!(" at line {} column {}", l.line(), l.column()))
            .unwrap_or(&text)
            .to_string(),
        None => text,
    }
}

/// The valid key nearest to `key` by edit distance, if it is near enough to
/// be a likely typo (`node_name`, `nodename`, `peers`).
pub(crate) fn closest<'k>(key: &str, keys: impl Iterator<Item = &'k str>) -> Option<String> {
    let wanted = key.to_ascii_lowercase().replace('_', "-");
    keys.map(|k| (edit_distance(&wanted, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// One pass over the document: collects the entries, or stops with [`FOUND`]
/// on the key numbered `stop_at`.
struct Walk<'a> {
    keys: Keys<'a>,
    stop_at: Option<usize>,
    problem: &'a RefCell<Option<Problem>>,
    entries: RefCell<Vec<Entry>>,
}

impl Walk<'_> {
    fn run(&self, text: &str) -> Result<(), serde_yaml_ng::Error> {
        self.deserialize(serde_yaml_ng::Deserializer::from_str(text))
    }

    fn shape(&self, key: &str) -> Option<Shape> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, s)| *s)
    }
}

impl<'de> DeserializeSeed<'de> for &Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        // An empty file (or one of comments only) sets nothing.
        de.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for &Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of keys to values (`key: value` lines)")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(key) = map.next_key_seed(KeySeed { walk: self, index })? {
            let Some(shape) = self.shape(&key) else {
                unreachable!("KeySeed refuses unknown keys")
            };
            let values = map.next_value_seed(ValueSeed { shape })?;
            self.entries.borrow_mut().push(Entry { key, values, line: 0 });
            index += 1;
        }
        Ok(())
    }
}

struct KeySeed<'w, 'a> {
    walk: &'w Walk<'a>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_, '_> {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<String, D::Error> {
        // Read as text so the error below carries the key's position.
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_, '_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        let walk = self.walk;
        if walk.stop_at == Some(self.index) {
            return Err(E::custom(FOUND));
        }
        let problem = if walk.shape(key).is_none() {
            Some(Problem::Unknown(key.to_string()))
        } else if walk.entries.borrow().iter().any(|e| e.key == key) {
            Some(Problem::Twice(key.to_string()))
        } else {
            None
        };
        match problem {
            Some(p) => {
                *walk.problem.borrow_mut() = Some(p);
                Err(E::custom("see problem"))
            }
            None => Ok(key.to_string()),
        }
    }
}

struct ValueSeed {
    shape: Shape,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Option<Vec<String>>;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Option<Vec<String>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.shape {
            Shape::One => f.write_str("a single value"),
            Shape::List => f.write_str("a value or a list of values"),
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        // A wrong shape is serde_yaml_ng's error, which names the key.
        match self.shape {
            Shape::One => de.deserialize_str(Text).map(|v| Some(vec![v])),
            Shape::List => de.deserialize_any(List).map(Some),
        }
    }
}

/// A scalar, as written.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = String;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<String, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a single value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A list of scalars, or one scalar (which the flag may split at commas).
struct List;

impl<'de> Visitor<'de> for List {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value or a list of values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut values = Vec::new();
        while let Some(v) = seq.next_element_seed(Text)? {
            values.push(v);
        }
        Ok(values)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<(String, Shape)> {
        vec![
            ("node-name".into(), Shape::One),
            ("max-flows".into(), Shape::One),
            ("peer".into(), Shape::List),
        ]
    }

    fn entries(text: &str) -> Result<Vec<Entry>, String> {
        parse(Path::new("c.yaml"), text, &keys()).map_err(|e| e.to_string())
    }

    fn entry(key: &str, values: Option<&[&str]>, line: usize) -> Entry {
        Entry {
            key: key.into(),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
            line,
        }
    }

    #[test]
    fn values_keep_their_text_and_keys_their_line() {
        let text =
            "# a comment\nnode-name: node1\n\nmax-flows: 0x10\npeer:\n  - 10.0.0.1:4244\n  - \"[fd00::1]:4244\"\n";
        assert_eq!(
            entries(text).unwrap(),
            vec![
                entry("node-name", Some(&["node1"]), 2),
                entry("max-flows", Some(&["0x10"]), 4),
                entry("peer", Some(&["10.0.0.1:4244", "[fd00::1]:4244"]), 5),
            ]
        );
    }

    #[test]
    fn null_is_unset_and_an_empty_file_sets_nothing() {
        assert_eq!(
            entries("node-name:\npeer: ~\n").unwrap(),
            vec![entry("node-name", None, 1), entry("peer", None, 2)]
        );
        assert_eq!(entries("").unwrap(), vec![]);
        assert_eq!(entries("# nothing\n").unwrap(), vec![]);
    }

    #[test]
    fn a_list_key_takes_one_scalar_too() {
        assert_eq!(
            entries("peer: a:1,b:2\n").unwrap(),
            vec![entry("peer", Some(&["a:1,b:2"]), 1)]
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        assert_eq!(
            entries("node-name: a\nnode_name: b\n").unwrap_err(),
            "c.yaml:2: unknown key \"node_name\" (did you mean \"node-name\"?)"
        );
        assert_eq!(
            entries("colour: red\n").unwrap_err(),
            "c.yaml:1: unknown key \"colour\""
        );
        assert_eq!(
            entries("peer: a:1\nnode-name: x\npeer: b:1\n").unwrap_err(),
            "c.yaml:3: key \"peer\" is given twice"
        );
        assert_eq!(
            entries("node-name: [a, b]\n").unwrap_err(),
            "c.yaml:1: node-name: invalid type: sequence, expected a single value"
        );
        assert_eq!(
            entries("- a\n").unwrap_err(),
            "c.yaml:1: invalid type: sequence, expected a mapping of keys to values (`key: value` lines)"
        );
        assert_eq!(
            entries("node-name: \"node1\n").unwrap_err(),
            "c.yaml:2: found unexpected end of stream at line 2 column 1, while scanning a quoted scalar at line 1 column 12"
        );
    }

    #[test]
    fn suggestions_are_near_keys_only() {
        let keys = ["node-name", "peer", "peer-service", "max-flows"];
        assert_eq!(closest("peers", keys.into_iter()).as_deref(), Some("peer"));
        assert_eq!(closest("NODE_NAME", keys.into_iter()).as_deref(), Some("node-name"));
        assert_eq!(closest("maxflows", keys.into_iter()).as_deref(), Some("max-flows"));
        assert_eq!(closest("verbosity", keys.into_iter()), None);
    }
}
