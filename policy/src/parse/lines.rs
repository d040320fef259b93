//! The line a field path points at. serde_yaml_ng's values carry no
//! positions, but its errors do: the document is walked again along the
//! path and a deliberate error is raised at the target, whose location
//! serde_yaml_ng fills in. Exact, and only paid for when there is an error.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::{FieldPath, Segment};

const FOUND: &str = "lumen: probe reached its target";

/// 1-based line of `path` in the `document`-th (1-based) YAML document of
/// `text`. A path that does not exist (a missing required field) falls back
/// to its nearest existing parent.
pub(super) fn line_of(text: &str, document: usize, path: &FieldPath) -> Option<usize> {
    let segments = path.segments();
    (0..=segments.len())
        .rev()
        .find_map(|depth| probe(text, document, &segments[..depth]))
}

fn probe(text: &str, document: usize, target: &[Segment]) -> Option<usize> {
    let de = serde_yaml_ng::Deserializer::from_str(text).nth(document.checked_sub(1)?)?;
    match (Probe { target }).deserialize(de) {
        Err(e) if e.to_string().contains(FOUND) => e.location().map(|l| l.line()),
        _ => None,
    }
}

/// Walks towards `target`; fails with [`FOUND`] on the node it names.
struct Probe<'a> {
    target: &'a [Segment],
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        // Even at the target the node must be read: serde_yaml_ng only marks
        // an error with the position of the node being read.
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.target.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        let name = match first {
            Segment::Field(name) | Segment::Key(name) => name,
            Segment::Index(_) => return Ok(()),
        };
        while let Some(found) = map.next_key_seed(Key {
            name,
            last: rest.is_empty(),
        })? {
            if found {
                return map.next_value_seed(Probe { target: rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.target.split_first() else {
            return Err(de::Error::custom(FOUND));
        };
        let Segment::Index(index) = first else {
            return Ok(());
        };
        for _ in 0..*index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Probe { target: rest }).map(|_| ())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
}

impl Probe<'_> {
    /// A scalar can only be the target itself: nothing lies below it.
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.target.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

/// A mapping key: whether it is `name`. When it is the last step the error
/// is raised on the key itself, so the line is the key's (`toFQDNs:`), not
/// that of its value.
struct Key<'a> {
    name: &'a str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        match key == self.name {
            true if self.last => Err(E::custom(FOUND)),
            matches => Ok(matches),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
a: 1
---
# second
metadata:
  name: web
spec:
  ingress:
    - fromCIDR:
        - 10.0.0.0/8
        - 10.0.0.0/33
      toPorts: [{ports: [{port: \"80\"}]}]
";

    fn line(document: usize, path: &FieldPath) -> Option<usize> {
        line_of(TEXT, document, path)
    }

    #[test]
    fn finds_keys_items_and_scalars() {
        let root = FieldPath::default();
        let ingress = root.field("spec").field("ingress").index(0);
        assert_eq!(line(1, &root.field("a")), Some(1));
        assert_eq!(line(2, &root), Some(4));
        assert_eq!(line(2, &root.field("metadata").field("name")), Some(5));
        assert_eq!(line(2, &ingress), Some(8));
        assert_eq!(line(2, &ingress.field("fromCIDR").index(1)), Some(10));
        let port = ingress.field("toPorts").index(0).field("ports").index(0).field("port");
        assert_eq!(line(2, &port), Some(11));
    }

    #[test]
    fn missing_fields_fall_back_to_their_parent() {
        let root = FieldPath::default();
        assert_eq!(line(2, &root.field("metadata").field("namespace")), Some(4));
        assert_eq!(line(2, &root.field("spec").field("ingress").index(7)), Some(7));
        assert_eq!(line(3, &root), None);
    }
}
