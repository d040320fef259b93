//! L7 filters: `http_status_code`, `http_method`, `http_path`, `http_url`,
//! `http_header` and `dns_query`. They only ever match flows carrying the
//! corresponding `Layer7` record.

use std::borrow::Cow;

use lumen_proto::flow::{layer7::Record, Dns, EventTypeFilter, Flow, Http, HttpHeader};
use regex::Regex;

use crate::error::FilterError;
use crate::event::monitor_type;

fn http(flow: &Flow) -> Option<&Http> {
    match flow.l7.as_ref()?.record.as_ref()? {
        Record::Http(h) => Some(h),
        _ => None,
    }
}

fn dns(flow: &Flow) -> Option<&Dns> {
    match flow.l7.as_ref()?.record.as_ref()? {
        Record::Dns(d) => Some(d),
        _ => None,
    }
}

/// HTTP filters only make sense on L7 (access log) events: Hubble refuses
/// them when the same filter restricts event types to anything else.
pub(crate) fn check_l7_event_type(field: &'static str, types: &[EventTypeFilter]) -> Result<(), FilterError> {
    if types.is_empty() || types.iter().any(|t| t.r#type == monitor_type::ACCESS_LOG) {
        Ok(())
    } else {
        Err(FilterError::RequiresL7EventType { field })
    }
}

pub(crate) fn compile_regexes(field: &'static str, values: &[String]) -> Result<Vec<Regex>, FilterError> {
    values
        .iter()
        .map(|v| {
            Regex::new(v).map_err(|reason| FilterError::InvalidRegex {
                field,
                value: v.clone(),
                reason,
            })
        })
        .collect()
}

/// `http_status_code`: full codes (`404`) or prefixes (`5+`, `40+`).
#[derive(Debug, Clone)]
pub(crate) struct HttpStatusMatcher {
    full: Vec<u32>,
    /// (leading digits, how many digits).
    prefixes: Vec<(u32, u32)>,
}

impl HttpStatusMatcher {
    pub(crate) fn new(values: &[String]) -> Result<Self, FilterError> {
        let mut full = Vec::new();
        let mut prefixes = Vec::new();
        for v in values {
            let (digits, is_prefix) = match v.strip_suffix('+') {
                Some(d) => (d, true),
                None => (v.as_str(), false),
            };
            let b = digits.as_bytes();
            let ok = b.iter().all(u8::is_ascii_digit)
                && matches!(b.first(), Some(b'1'..=b'5'))
                && if is_prefix { b.len() <= 2 } else { b.len() == 3 };
            let Some(n) = digits.parse::<u32>().ok().filter(|_| ok) else {
                return Err(FilterError::InvalidHttpStatusCode { value: v.clone() });
            };
            if is_prefix {
                prefixes.push((n, b.len() as u32));
            } else {
                full.push(n);
            }
        }
        Ok(Self { full, prefixes })
    }

    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        // Code 0 is a request, not a response.
        let Some(code) = http(flow).map(|h| h.code).filter(|c| *c != 0) else {
            return false;
        };
        // Hubble compares the zero-padded decimal text ("%03d").
        let digits = code.max(100).ilog10() + 1;
        self.full.contains(&code)
            || self
                .prefixes
                .iter()
                .any(|&(p, n)| code >= 100 && code / 10u32.pow(digits - n) == p)
    }
}

/// `http_method`: case-insensitive.
#[derive(Debug, Clone)]
pub(crate) struct HttpMethodMatcher(pub(crate) Vec<String>);

impl HttpMethodMatcher {
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let Some(method) = http(flow).map(|h| h.method.as_str()).filter(|m| !m.is_empty()) else {
            return false;
        };
        self.0.iter().any(|m| m.eq_ignore_ascii_case(method))
    }
}

/// `http_path`: regexes (unanchored) against the decoded path of the URL.
#[derive(Debug, Clone)]
pub(crate) struct HttpPathMatcher(pub(crate) Vec<Regex>);

impl HttpPathMatcher {
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let Some(path) = http(flow).and_then(|h| request_path(&h.url)) else {
            return false;
        };
        self.0.iter().any(|r| r.is_match(&path))
    }
}

/// `http_url`: regexes (unanchored) against the whole URL.
#[derive(Debug, Clone)]
pub(crate) struct HttpUrlMatcher(pub(crate) Vec<Regex>);

impl HttpUrlMatcher {
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let Some(url) = http(flow).map(|h| h.url.as_str()).filter(|u| !u.is_empty()) else {
            return false;
        };
        self.0.iter().any(|r| r.is_match(url))
    }
}

/// `http_header`: one of the flow's headers equals one of the filter's
/// (key and value, exactly).
#[derive(Debug, Clone)]
pub(crate) struct HttpHeaderMatcher(pub(crate) Vec<HttpHeader>);

impl HttpHeaderMatcher {
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let Some(h) = http(flow) else { return false };
        h.headers.iter().any(|have| {
            self.0
                .iter()
                .any(|want| want.key == have.key && want.value == have.value)
        })
    }
}

/// `dns_query`: regexes (unanchored) against the query name.
#[derive(Debug, Clone)]
pub(crate) struct DnsQueryMatcher(pub(crate) Vec<Regex>);

impl DnsQueryMatcher {
    pub(crate) fn matches(&self, flow: &Flow) -> bool {
        let Some(d) = dns(flow) else { return false };
        self.0.iter().any(|r| r.is_match(&d.query))
    }
}

/// The path of a request URI (an absolute URL or an absolute path), percent
/// decoded; `None` when it is neither or the escapes are invalid, which
/// Hubble also treats as no match. Borrows unless there is something to decode.
fn request_path(url: &str) -> Option<Cow<'_, str>> {
    let rest = if url.starts_with('/') {
        url
    } else {
        let (scheme, after) = url.split_once("://")?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return None;
        }
        after.find('/').map_or("", |i| &after[i..])
    };
    let path = rest.split_once('?').map_or(rest, |(p, _)| p);
    if !path.contains('%') {
        return Some(Cow::Borrowed(path));
    }
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let s = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/api/v1?x=1", Some("/api/v1")),
            ("http://example.com/api/v1?x=1", Some("/api/v1")),
            ("https://example.com", Some("")),
            ("/a%20b", Some("/a b")),
            ("/a%2", None),
            ("/a%zz", None),
            ("relative/path", None),
            ("", None),
        ];
        for (url, want) in cases {
            assert_eq!(request_path(url).as_deref(), *want, "{url:?}");
        }
    }

    #[test]
    fn status_code_forms() {
        for bad in ["", "600", "099", "20", "2000", "6+", "200+", "+", "2x+", " 200"] {
            assert_eq!(
                HttpStatusMatcher::new(&[bad.to_string()]).unwrap_err(),
                FilterError::InvalidHttpStatusCode { value: bad.to_string() },
                "{bad:?}"
            );
        }
    }
}
