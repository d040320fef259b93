//! The rows of a snapshot and the queries consumers run on them: sort by
//! any column either way, keep the first N, restrict to a selection.
//!
//! Queries run on the snapshot, not on the model, so `lumen top` can re-sort
//! on a key press and `lumen-ui` can serve many clients from one snapshot.
//! Filtering flows themselves is the consumers' work, with lumen-flow's
//! filters, before they ingest.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::key::NodeKey;

/// One table of a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Table<T> {
    pub rows: Vec<T>,
    /// Rows the last query's selection kept, before its limit.
    pub matched: usize,
    /// Entries the model keeps at most.
    pub capacity: usize,
    /// Entries evicted to make room (the least recently seen first) since
    /// the model started or its unit last changed.
    pub evicted: u64,
}

impl<T: Row> Table<T> {
    /// Rows in key order.
    pub(crate) fn new(mut rows: Vec<T>, capacity: usize, evicted: u64) -> Table<T> {
        rows.sort_by(T::compare_key);
        Table {
            matched: rows.len(),
            rows,
            capacity,
            evicted,
        }
    }

    /// The rows `query` selects, sorted (ties in key order) and cut to its
    /// limit. Only the rows returned are copied, so many queries can share
    /// one snapshot.
    pub fn query(&self, query: &Query<T::Column>) -> Table<T>
    where
        T: Clone,
    {
        let mut rows: Vec<&T> = self.rows.iter().filter(|r| r.selected(&query.selection)).collect();
        if let Some(column) = query.sort {
            rows.sort_by(|a, b| {
                let by = a.compare(b, column);
                match query.order {
                    Order::Ascending => by,
                    Order::Descending => by.reverse(),
                }
                .then_with(|| a.compare_key(b))
            });
        }
        let matched = rows.len();
        rows.truncate(query.limit.unwrap_or(usize::MAX));
        Table {
            rows: rows.into_iter().cloned().collect(),
            matched,
            capacity: self.capacity,
            evicted: self.evicted,
        }
    }
}

/// A row type: its columns, its natural order, what a selection keeps.
pub trait Row {
    /// The columns rows can be sorted by.
    type Column: Copy;
    fn compare(&self, other: &Self, column: Self::Column) -> Ordering;
    /// The order of the rows' keys: the tie-break of every sort.
    fn compare_key(&self, other: &Self) -> Ordering;
    /// Whether `selection` keeps the row. A row without the selected field
    /// (a drop reason has no namespace) is kept.
    fn selected(&self, selection: &Selection) -> bool;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    Ascending,
    /// Largest first, as `top` lists.
    #[default]
    Descending,
}

/// What part of the cluster to show.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Selection {
    /// Rows with a node in one of these namespaces (all when empty). A
    /// connection or edge is kept when either end is in one, as the service
    /// map of a namespace shows its peers.
    pub namespaces: Vec<String>,
    /// Drill-down: rows about this node (connections and edges with it at
    /// either end, its own workload row, drops towards it).
    pub node: Option<NodeKey>,
}

impl Selection {
    /// Whether a row about the nodes `nodes` (one, or both ends) is kept.
    pub(crate) fn keeps(&self, nodes: &[&NodeKey]) -> bool {
        let ns = self.namespaces.is_empty() || nodes.iter().any(|n| self.namespaces.contains(&n.namespace));
        ns && self.node.as_ref().is_none_or(|sel| nodes.contains(&sel))
    }
}

/// Sort, selection and limit for one table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Query<C> {
    /// The column to sort by; key order when absent.
    pub sort: Option<C>,
    pub order: Order,
    /// At most this many rows (top-N).
    pub limit: Option<usize>,
    pub selection: Selection,
}

impl<C> Default for Query<C> {
    fn default() -> Self {
        Query {
            sort: None,
            order: Order::default(),
            limit: None,
            selection: Selection::default(),
        }
    }
}

impl<C> Query<C> {
    /// The first `limit` rows by `column`, largest first.
    pub fn top(column: C, limit: usize) -> Query<C> {
        Query {
            sort: Some(column),
            limit: Some(limit),
            ..Query::default()
        }
    }
}

/// Rates compare as numbers; they are never NaN.
pub(crate) fn by_f64(a: f64, b: f64) -> Ordering {
    a.total_cmp(&b)
}

/// `[flows, dropped]` of the window, or of the entry's lifetime when the
/// window saw no flows: an idle row keeps its last picture (its drop
/// percentage, the colour of its edge) instead of going blank.
pub(crate) fn recent_or_total(recent: [u64; 2], total: [u64; 2]) -> [u64; 2] {
    if recent[0] > 0 {
        recent
    } else {
        total
    }
}

/// Dropped flows as a percentage of flows (0 when there were none).
pub(crate) fn drop_pct([flows, dropped]: [u64; 2]) -> f64 {
    match flows {
        0 => 0.0,
        n => dropped as f64 * 100.0 / n as f64,
    }
}
