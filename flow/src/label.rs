//! Kubernetes label selectors over Cilium labels, as Hubble evaluates
//! `source_label`, `destination_label` and `node_labels`.
//!
//! Selector syntax is Kubernetes' (`app=x`, `app==x`, `app!=x`,
//! `app in (a,b)`, `app notin (a)`, `app`, `!app`, `n>3`, `n<3`; a comma is
//! AND; the empty selector selects everything). Cilium extends keys with a
//! label source: `k8s:app=x` only looks at labels from source `k8s`, while a
//! key without source (or with source `any`) looks at labels from every
//! source. Flow labels are Cilium's `source:key=value` strings, e.g.
//! `k8s:app=frontend` or `reserved:world`.

use crate::error::SelectorError;

/// A parsed selector: every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    /// `None` matches labels of any source.
    source: Option<String>,
    key: String,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    GreaterThan(i64),
    LessThan(i64),
}

impl Selector {
    /// Parses one selector string.
    pub(crate) fn parse(selector: &str) -> Result<Self, SelectorError> {
        let tokens = lex(selector);
        let mut parser = Parser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        if parser.peek().is_none() {
            return Ok(Self { requirements });
        }
        loop {
            requirements.push(parser.requirement()?);
            match parser.next() {
                None => break,
                Some(Token::Comma) => continue,
                Some(t) => return Err(unexpected(t, "',' or end of selector")),
            }
        }
        Ok(Self { requirements })
    }

    /// Whether `labels` (Cilium `source:key=value` strings) satisfy every requirement.
    pub(crate) fn matches(&self, labels: &[String]) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    fn matches(&self, labels: &[String]) -> bool {
        let value = self.lookup(labels);
        match &self.op {
            Op::In(values) => value.is_some_and(|v| values.iter().any(|x| x == v)),
            Op::NotIn(values) => value.is_none_or(|v| values.iter().all(|x| x != v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::GreaterThan(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n),
            Op::LessThan(n) => value.and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n),
        }
    }

    /// The value of the first label with this key (and source, if one was
    /// given), as Cilium's `LabelArray.Get` picks it.
    fn lookup<'a>(&self, labels: &'a [String]) -> Option<&'a str> {
        labels.iter().find_map(|l| {
            let (source, key, value) = split_label(l);
            (key == self.key && self.source.as_deref().is_none_or(|s| s == source)).then_some(value)
        })
    }
}

/// Splits a Cilium label string into (source, key, value). A leading `$` is
/// the short form of the `reserved` source; a label without source is
/// `unspec`; a `:` after the first `=` belongs to the value.
pub(crate) fn split_label(label: &str) -> (&str, &str, &str) {
    let (source, rest) = if let Some(rest) = label.strip_prefix('$') {
        ("reserved", rest)
    } else {
        match (label.find(':'), label.find('=')) {
            (Some(colon), eq) if eq.is_none_or(|eq| colon < eq) => (&label[..colon], &label[colon + 1..]),
            _ => ("unspec", label),
        }
    };
    let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
    (source, key, value)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Ident(&'a str),
    In,
    NotIn,
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    OpenParen,
    CloseParen,
    Comma,
}

impl Token<'_> {
    fn text(&self) -> &str {
        match self {
            Token::Ident(s) => s,
            Token::In => "in",
            Token::NotIn => "notin",
            Token::Not => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::Comma => ",",
        }
    }
}

impl<'a> Token<'a> {
    /// In value position the keywords are plain words.
    fn as_value(&self) -> Option<&'a str> {
        match self {
            Token::Ident(s) => Some(s),
            Token::In => Some("in"),
            Token::NotIn => Some("notin"),
            _ => None,
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '<' | '>')
}

/// Kubernetes' lexer: identifiers are runs of anything but whitespace and
/// the operator characters.
fn lex(input: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut rest = input;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else { return tokens };
        let (token, len) = match c {
            '!' if rest[1..].starts_with('=') => (Token::NotEquals, 2),
            '!' => (Token::Not, 1),
            '=' if rest[1..].starts_with('=') => (Token::DoubleEquals, 2),
            '=' => (Token::Equals, 1),
            '>' => (Token::GreaterThan, 1),
            '<' => (Token::LessThan, 1),
            '(' => (Token::OpenParen, 1),
            ')' => (Token::CloseParen, 1),
            ',' => (Token::Comma, 1),
            _ => {
                let len = rest
                    .find(|c: char| c.is_whitespace() || is_special(c))
                    .unwrap_or(rest.len());
                let word = &rest[..len];
                let token = match word {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Ident(word),
                };
                (token, len)
            }
        };
        tokens.push(token);
        rest = &rest[len..];
    }
}

fn unexpected(found: Token<'_>, expected: &'static str) -> SelectorError {
    SelectorError::Unexpected {
        found: found.text().to_string(),
        expected,
    }
}

const EXPECT_KEY: &str = "a label key or '!'";
const EXPECT_OPERATOR: &str = "an operator (=, ==, !=, in, notin, <, >), ',' or end of selector";
const EXPECT_IN_LIST: &str = "a value, ',' or ')'";

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (negated, key) = match self.next() {
            Some(Token::Not) => match self.next() {
                Some(Token::Ident(key)) => (true, key),
                Some(t) => return Err(unexpected(t, "a label key")),
                None => {
                    return Err(SelectorError::UnexpectedEnd {
                        expected: "a label key",
                    })
                }
            },
            Some(Token::Ident(key)) => (false, key),
            Some(t) => return Err(unexpected(t, EXPECT_KEY)),
            None => return Err(SelectorError::UnexpectedEnd { expected: EXPECT_KEY }),
        };
        let (source, key) = parse_key(key)?;
        let op = if negated {
            Op::DoesNotExist
        } else {
            match self.peek() {
                None | Some(Token::Comma) => Op::Exists,
                Some(_) => self.operator()?,
            }
        };
        Ok(Requirement { source, key, op })
    }

    fn operator(&mut self) -> Result<Op, SelectorError> {
        match self.next() {
            Some(Token::Equals | Token::DoubleEquals) => Ok(Op::In(vec![self.exact_value()?])),
            Some(Token::NotEquals) => Ok(Op::NotIn(vec![self.exact_value()?])),
            Some(Token::In) => Ok(Op::In(self.value_list()?)),
            Some(Token::NotIn) => Ok(Op::NotIn(self.value_list()?)),
            Some(Token::GreaterThan) => Ok(Op::GreaterThan(self.integer()?)),
            Some(Token::LessThan) => Ok(Op::LessThan(self.integer()?)),
            Some(t) => Err(unexpected(t, EXPECT_OPERATOR)),
            None => Err(SelectorError::UnexpectedEnd {
                expected: EXPECT_OPERATOR,
            }),
        }
    }

    /// The value after `=`, `==` or `!=`; nothing before a comma or the end
    /// is the empty value, as in Kubernetes.
    fn exact_value(&mut self) -> Result<String, SelectorError> {
        let value = match self.peek() {
            None | Some(Token::Comma) => "",
            Some(t) => match t.as_value() {
                Some(v) => {
                    self.pos += 1;
                    v
                }
                None => return Err(unexpected(t.clone(), "a value")),
            },
        };
        validate_value(value)
    }

    /// `( v1, v2, ... )`; empty elements are empty values, so `()` is `("")`.
    fn value_list(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            Some(Token::OpenParen) => {}
            Some(t) => return Err(unexpected(t, "'('")),
            None => return Err(SelectorError::UnexpectedEnd { expected: "'('" }),
        }
        let mut values = Vec::new();
        let mut want_value = true;
        loop {
            match self.next() {
                Some(Token::CloseParen) => {
                    if want_value {
                        values.push(String::new());
                    }
                    return Ok(values);
                }
                Some(Token::Comma) => {
                    if want_value {
                        values.push(String::new());
                    }
                    want_value = true;
                }
                Some(t) => match t.as_value() {
                    Some(v) if want_value => {
                        values.push(validate_value(v)?);
                        want_value = false;
                    }
                    Some(_) => return Err(unexpected(t, "',' or ')'")),
                    None => return Err(unexpected(t, EXPECT_IN_LIST)),
                },
                None => {
                    return Err(SelectorError::UnexpectedEnd {
                        expected: EXPECT_IN_LIST,
                    })
                }
            }
        }
    }

    fn integer(&mut self) -> Result<i64, SelectorError> {
        match self.next() {
            Some(Token::Ident(v)) => v.parse().map_err(|_| SelectorError::InvalidValue {
                value: v.to_string(),
                reason: "< and > need an integer",
            }),
            Some(t) => Err(unexpected(t, "an integer")),
            None => Err(SelectorError::UnexpectedEnd { expected: "an integer" }),
        }
    }
}

/// Splits `[source:]key` and checks the key is a Kubernetes qualified name
/// (`[prefix/]name`). Source `any` is the same as no source.
fn parse_key(raw: &str) -> Result<(Option<String>, String), SelectorError> {
    let invalid = |reason| SelectorError::InvalidKey {
        key: raw.to_string(),
        reason,
    };
    let (source, key) = match raw.split_once(':') {
        Some((source, key)) => {
            if source.is_empty() {
                return Err(invalid("empty label source before ':'"));
            }
            if key.contains(':') {
                return Err(invalid("more than one ':'"));
            }
            (Some(source).filter(|s| *s != "any"), key)
        }
        None => (None, raw),
    };
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            let subdomain_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
            if prefix.is_empty() || prefix.len() > 253 || !prefix.chars().all(subdomain_char) {
                return Err(invalid("prefix must be a lowercase DNS subdomain"));
            }
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err(invalid("empty name"));
    }
    if !is_label_word(name) {
        return Err(invalid(
            "name must be at most 63 characters of a-z, A-Z, 0-9, '-', '_', '.', starting and ending alphanumeric",
        ));
    }
    Ok((source.map(str::to_string), key.to_string()))
}

fn validate_value(value: &str) -> Result<String, SelectorError> {
    if value.is_empty() || is_label_word(value) {
        Ok(value.to_string())
    } else {
        Err(SelectorError::InvalidValue {
            value: value.to_string(),
            reason: "must be at most 63 characters of a-z, A-Z, 0-9, '-', '_', '.', starting and ending alphanumeric",
        })
    }
}

/// Kubernetes' label name/value rule: `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63.
fn is_label_word(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_cilium_labels() {
        assert_eq!(split_label("k8s:app=frontend"), ("k8s", "app", "frontend"));
        assert_eq!(split_label("reserved:world"), ("reserved", "world", ""));
        assert_eq!(split_label("$host"), ("reserved", "host", ""));
        assert_eq!(split_label("app=a:b"), ("unspec", "app", "a:b"));
        assert_eq!(split_label("label1=val1=toomuch"), ("unspec", "label1", "val1=toomuch"));
        assert_eq!(
            split_label("k8s:io.kubernetes.pod.namespace=default"),
            ("k8s", "io.kubernetes.pod.namespace", "default")
        );
    }

    #[test]
    fn selector_semantics() {
        let flow = labels(&[
            "k8s:app=frontend",
            "k8s:io.kubernetes.pod.namespace=default",
            "k8s:tier=3",
        ]);
        let world = labels(&["reserved:world"]);
        let none: Vec<String> = Vec::new();
        // (selector, frontend pod, world, no labels)
        let cases: &[(&str, bool, bool, bool)] = &[
            ("", true, true, true),
            ("app=frontend", true, false, false),
            ("app==frontend", true, false, false),
            ("k8s:app=frontend", true, false, false),
            ("any:app=frontend", true, false, false),
            ("container:app=frontend", false, false, false),
            ("app=backend", false, false, false),
            ("app!=backend", true, true, true),
            ("app!=frontend", false, true, true),
            ("app in (backend, frontend)", true, false, false),
            ("app in (backend)", false, false, false),
            ("app notin (backend)", true, true, true),
            ("app notin (frontend,backend)", false, true, true),
            ("app", true, false, false),
            ("!app", false, true, true),
            ("reserved:world", false, true, false),
            ("world", false, true, false),
            ("k8s:world", false, false, false),
            ("app=frontend, io.kubernetes.pod.namespace=default", true, false, false),
            (
                "app=frontend,io.kubernetes.pod.namespace=kube-system",
                false,
                false,
                false,
            ),
            ("tier>2", true, false, false),
            ("tier<3", false, false, false),
            ("app=", false, false, false),
            ("app in ()", false, false, false),
        ];
        for (sel, a, b, c) in cases {
            let s = Selector::parse(sel).unwrap_or_else(|e| panic!("{sel:?}: {e}"));
            assert_eq!(
                (s.matches(&flow), s.matches(&world), s.matches(&none)),
                (*a, *b, *c),
                "{sel:?}"
            );
        }
    }

    #[test]
    fn empty_value_matches_label_without_value() {
        let s = Selector::parse("label3 notin ()").unwrap();
        assert!(!s.matches(&labels(&["label3"])));
        assert!(s.matches(&labels(&["label3=val3"])));
        assert!(Selector::parse("app=").unwrap().matches(&labels(&["app"])));
    }

    #[test]
    fn parses_value_lists() {
        let s = Selector::parse("a in (x,,y,)").unwrap();
        let Op::In(values) = &s.requirements[0].op else {
            panic!("{s:?}")
        };
        assert_eq!(values, &["x", "", "y", ""]);
        // Keywords are ordinary words in value position.
        assert!(Selector::parse("a in (in, notin)")
            .unwrap()
            .matches(&labels(&["a=notin"])));
        assert!(Selector::parse("a=in").unwrap().matches(&labels(&["a=in"])));
    }

    #[test]
    fn rejects_invalid_selectors() {
        let cases: &[(&str, &str)] = &[
            ("app in (", "unexpected end of selector, expected a value, ',' or ')'"),
            ("=x", "found \"=\", expected a label key or '!'"),
            (
                "a b",
                "found \"b\", expected an operator (=, ==, !=, in, notin, <, >), ',' or end of selector",
            ),
            ("a,", "unexpected end of selector, expected a label key or '!'"),
            ("()", "found \"(\", expected a label key or '!'"),
            ("app in x", "found \"x\", expected '('"),
            ("app in (a b)", "found \"b\", expected ',' or ')'"),
            ("app = (", "found \"(\", expected a value"),
            ("!", "unexpected end of selector, expected a label key"),
            ("!app=x", "found \"=\", expected ',' or end of selector"),
            ("any:k8s:bla", "invalid key \"any:k8s:bla\": more than one ':'"),
            (":app", "invalid key \":app\": empty label source before ':'"),
            ("n > x", "invalid value \"x\": < and > need an integer"),
            ("in=x", "found \"in\", expected a label key or '!'"),
            (
                "-app",
                "invalid key \"-app\": name must be at most 63 characters of a-z, A-Z, 0-9, '-', '_', '.', \
                 starting and ending alphanumeric",
            ),
            (
                "Foo.com/app",
                "invalid key \"Foo.com/app\": prefix must be a lowercase DNS subdomain",
            ),
            (
                "app=-x",
                "invalid value \"-x\": must be at most 63 characters of a-z, A-Z, 0-9, '-', '_', '.', \
                 starting and ending alphanumeric",
            ),
        ];
        for (sel, msg) in cases {
            let err = Selector::parse(sel).expect_err(sel);
            assert_eq!(err.to_string(), *msg, "{sel:?}");
        }
    }

    #[test]
    fn accepts_prefixed_keys() {
        let s = Selector::parse("k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default").unwrap();
        assert!(s.matches(&labels(&[
            "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=default"
        ])));
        assert_eq!(s.requirements[0].source.as_deref(), Some("k8s"));
    }
}
