//! The query strings of the API: every parameter checked, an unknown or
//! repeated one refused, so that a typo is a 400 with the reason rather
//! than a view that silently ignores it.

use std::time::Duration;

use lumen_model::{NodeKey, NodeKind, Unit};

/// Why a request was refused (HTTP 400, the text shown to the user).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("unknown parameter {0:?}")]
    Unknown(String),
    #[error("parameter {0:?} given twice")]
    Repeated(String),
    #[error("invalid {param}: {reason}")]
    Invalid { param: &'static str, reason: String },
    #[error("invalid filter: {0}")]
    Filter(String),
}

/// What the map and the table show: the flows that pass `filter` (the
/// flags of `lumen observe`), grouped by `unit`, in `namespaces` (all when
/// empty), with one node or one edge selected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewQuery {
    pub filter: String,
    pub unit: Unit,
    pub namespaces: Vec<String>,
    pub select: Select,
    /// Flows asked for (the table), at most [`MAX_LIMIT`].
    pub limit: usize,
    /// Start from the flows of this long ago that the server still holds,
    /// and show only the nodes and edges seen that recently; `None`: live,
    /// from what lumen-ui took in since it started.
    pub last: Option<Duration>,
}

/// The node or edge whose flows the table shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Select {
    #[default]
    Nothing,
    Node(NodeKey),
    Edge(NodeKey, NodeKey),
}

pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 10_000;
/// The longest `last` taken.
pub const MAX_LAST: Duration = Duration::from_secs(24 * 3600);
/// Longest filter line taken (a filter is typed, not pasted data).
const MAX_FILTER: usize = 4096;

const KINDS: [(NodeKind, &str); 8] = [
    (NodeKind::Workload, "workload"),
    (NodeKind::Pod, "pod"),
    (NodeKind::Identity, "identity"),
    (NodeKind::Namespace, "namespace"),
    (NodeKind::Node, "node"),
    (NodeKind::Reserved, "reserved"),
    (NodeKind::World, "world"),
    (NodeKind::Ip, "ip"),
];

const UNITS: [(Unit, &str); 5] = [
    (Unit::Workload, "workload"),
    (Unit::Pod, "pod"),
    (Unit::Identity, "identity"),
    (Unit::Namespace, "namespace"),
    (Unit::Node, "node"),
];

pub fn unit_name(unit: Unit) -> &'static str {
    UNITS.iter().find(|(u, _)| *u == unit).map_or("workload", |(_, n)| n)
}

pub fn kind_name(kind: NodeKind) -> &'static str {
    KINDS.iter().find(|(k, _)| *k == kind).map_or("ip", |(_, n)| n)
}

/// A node's id in the API and the page: `kind|namespace|name`. Kinds and
/// namespaces hold no `|`, so the name may.
pub fn node_id(key: &NodeKey) -> String {
    format!("{}|{}|{}", kind_name(key.kind), key.namespace, key.name)
}

/// The key of a [`node_id`].
pub fn parse_node_id(param: &'static str, id: &str) -> Result<NodeKey, QueryError> {
    let invalid = |reason: String| QueryError::Invalid { param, reason };
    let mut parts = id.splitn(3, '|');
    let (Some(kind), Some(namespace), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid(format!("{id:?} is not a node id (kind|namespace|name)")));
    };
    let kind = KINDS
        .iter()
        .find(|(_, n)| *n == kind)
        .map(|(k, _)| *k)
        .ok_or_else(|| invalid(format!("{kind:?} is not a node kind")))?;
    Ok(NodeKey::new(kind, namespace, name))
}

/// The parameters of a query string, each once.
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `query`, refusing a parameter given twice or not in `known`.
    pub fn parse(query: Option<&str>, known: &[&str]) -> Result<Params, QueryError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if !known.contains(&k.as_ref()) {
                return Err(QueryError::Unknown(k.into_owned()));
            }
            if pairs.iter().any(|(p, _)| *p == k) {
                return Err(QueryError::Repeated(k.into_owned()));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The parameters of a view.
pub const VIEW_PARAMS: [&str; 8] = ["filter", "unit", "ns", "node", "from", "to", "limit", "last"];

impl ViewQuery {
    pub fn parse(query: Option<&str>) -> Result<ViewQuery, QueryError> {
        ViewQuery::from_params(&Params::parse(query, &VIEW_PARAMS)?)
    }

    pub fn from_params(p: &Params) -> Result<ViewQuery, QueryError> {
        let filter = p.get("filter").unwrap_or("").trim().to_string();
        if filter.len() > MAX_FILTER {
            return Err(QueryError::Invalid {
                param: "filter",
                reason: format!("longer than {MAX_FILTER} bytes"),
            });
        }
        let unit = match p.get("unit") {
            None | Some("") => Unit::Workload,
            Some(u) => UNITS
                .iter()
                .find(|(_, n)| *n == u)
                .map(|(unit, _)| *unit)
                .ok_or_else(|| QueryError::Invalid {
                    param: "unit",
                    reason: format!("{u:?} is not one of workload, pod, identity, namespace, node"),
                })?,
        };
        let namespaces = p
            .get("ns")
            .unwrap_or("")
            .split(',')
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        let node = p.get("node").filter(|n| !n.is_empty());
        let (from, to) = (
            p.get("from").filter(|n| !n.is_empty()),
            p.get("to").filter(|n| !n.is_empty()),
        );
        let select = match (node, from, to) {
            (None, None, None) => Select::Nothing,
            (Some(n), None, None) => Select::Node(parse_node_id("node", n)?),
            (None, Some(f), Some(t)) => Select::Edge(parse_node_id("from", f)?, parse_node_id("to", t)?),
            (Some(_), _, _) => {
                return Err(QueryError::Invalid {
                    param: "node",
                    reason: "select a node or an edge (from and to), not both".into(),
                })
            }
            _ => {
                return Err(QueryError::Invalid {
                    param: "from",
                    reason: "an edge needs both from and to".into(),
                })
            }
        };
        let limit = match p.get("limit") {
            None | Some("") => DEFAULT_LIMIT,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| QueryError::Invalid {
                    param: "limit",
                    reason: format!("{l:?} is not a number from 1 to {MAX_LIMIT}"),
                })?,
        };
        let last = match p.get("last") {
            None | Some("") => None,
            Some(l) => Some(
                humantime::parse_duration(l)
                    .ok()
                    .filter(|d| (Duration::from_secs(1)..=MAX_LAST).contains(d))
                    .ok_or_else(|| QueryError::Invalid {
                        param: "last",
                        reason: format!("{l:?} is not a duration from 1s to 24h (such as 5m or 1h)"),
                    })?,
            ),
        };
        Ok(ViewQuery {
            filter,
            unit,
            namespaces,
            select,
            limit,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_view_parses() {
        let q = ViewQuery::parse(Some(
            "filter=--verdict+DROPPED&unit=pod&ns=shop,pay&from=pod%7Cshop%7Cweb-1&to=world%7C%7Capi.example.com&limit=50&last=15m",
        ))
        .unwrap();
        assert_eq!(
            q,
            ViewQuery {
                filter: "--verdict DROPPED".into(),
                unit: Unit::Pod,
                namespaces: vec!["shop".into(), "pay".into()],
                select: Select::Edge(
                    NodeKey::new(NodeKind::Pod, "shop", "web-1"),
                    NodeKey::new(NodeKind::World, "", "api.example.com")
                ),
                limit: 50,
                last: Some(Duration::from_secs(900)),
            }
        );
        assert_eq!(
            ViewQuery::parse(None).unwrap(),
            ViewQuery {
                limit: DEFAULT_LIMIT,
                ..Default::default()
            }
        );
    }

    #[test]
    fn node_ids_round_trip_with_bars_in_the_name() {
        let key = NodeKey::new(NodeKind::Workload, "shop", "a|b");
        assert_eq!(node_id(&key), "workload|shop|a|b");
        assert_eq!(parse_node_id("node", "workload|shop|a|b").unwrap(), key);
    }

    #[test]
    fn bad_parameters_say_what_is_wrong() {
        let err = |q: &str| ViewQuery::parse(Some(q)).unwrap_err().to_string();
        assert_eq!(err("units=pod"), "unknown parameter \"units\"");
        assert_eq!(err("unit=pod&unit=node"), "parameter \"unit\" given twice");
        assert_eq!(
            err("unit=service"),
            "invalid unit: \"service\" is not one of workload, pod, identity, namespace, node"
        );
        assert_eq!(err("limit=0"), "invalid limit: \"0\" is not a number from 1 to 10000");
        assert_eq!(
            err("node=web"),
            "invalid node: \"web\" is not a node id (kind|namespace|name)"
        );
        assert_eq!(
            err("node=deployment%7Cshop%7Cweb"),
            "invalid node: \"deployment\" is not a node kind"
        );
        assert_eq!(
            err("from=pod%7Cshop%7Cweb"),
            "invalid from: an edge needs both from and to"
        );
        assert_eq!(
            err("node=pod%7Cs%7Cw&from=pod%7Cs%7Cw&to=pod%7Cs%7Cv"),
            "invalid node: select a node or an edge (from and to), not both"
        );
        let long = format!("filter={}", "a".repeat(5000));
        assert_eq!(err(&long), "invalid filter: longer than 4096 bytes");
        for bad in ["soon", "0s", "2days"] {
            assert_eq!(
                err(&format!("last={bad}")),
                format!("invalid last: {bad:?} is not a duration from 1s to 24h (such as 5m or 1h)")
            );
        }
    }

    #[test]
    fn last_takes_a_duration() {
        let last = |q: &str| ViewQuery::parse(Some(q)).unwrap().last;
        assert_eq!(last("last=5m"), Some(Duration::from_secs(300)));
        assert_eq!(last("last=1h"), Some(Duration::from_secs(3600)));
        assert_eq!(last("last="), None);
        assert_eq!(ViewQuery::parse(None).unwrap().last, None);
    }
}
