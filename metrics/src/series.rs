//! The series of one counter family, with a cap: a label set beyond
//! `max_series` is refused (and counted by the caller) rather than added,
//! so a metric cannot grow without bound whatever the flows carry.

use std::collections::HashMap;

use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};

/// The label values of a series, one after another, each as its length
/// (4 bytes) and its bytes: so that ("a,b", "c") and ("a", "b,c") differ.
/// Written in place from the flow's fields, so that counting a flow in an
/// existing series allocates nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Key(Vec<u8>);

impl Key {
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// One value made of `parts` written one after another.
    pub(crate) fn push_parts(&mut self, parts: &[&str]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.0.extend_from_slice(&(len as u32).to_le_bytes());
        for p in parts {
            self.0.extend_from_slice(p.as_bytes());
        }
    }

    pub(crate) fn push(&mut self, value: &str) {
        self.push_parts(&[value]);
    }

    /// `items` joined by `separator`, as one value.
    pub(crate) fn push_joined(&mut self, items: &[String], separator: &str) {
        let len = items.iter().map(String::len).sum::<usize>() + separator.len() * items.len().saturating_sub(1);
        self.0.extend_from_slice(&(len as u32).to_le_bytes());
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.0.extend_from_slice(separator.as_bytes());
            }
            self.0.extend_from_slice(item.as_bytes());
        }
    }

    /// A number in decimal.
    pub(crate) fn push_number(&mut self, n: u64) {
        self.push(lumen_flow::format::decimal(n, &mut [0; 20]));
    }

    pub(crate) fn extend(&mut self, other: &Key) {
        self.0.extend_from_slice(&other.0);
    }

    /// The values written, in order.
    pub(crate) fn values(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = self.0.as_slice();
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let (value, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
            out.push(String::from_utf8_lossy(value).into_owned());
            rest = tail;
        }
        out
    }
}

#[derive(Debug)]
struct Series {
    values: Box<[String]>,
    count: u64,
}

/// A counter family: its name, help, label names and series.
#[derive(Debug)]
pub(crate) struct Family {
    pub(crate) name: &'static str,
    help: &'static str,
    labels: Vec<&'static str>,
    /// Index into `series` by label values, encoded so that no two label
    /// sets share a key. Hashed with foldhash (randomly seeded): SipHash
    /// showed per flow.
    index: HashMap<Box<[u8]>, SeriesId, foldhash::fast::RandomState>,
    /// Ids stay valid until series are removed.
    series: Vec<Series>,
    max_series: usize,
}

/// A series of a family, valid until the family's series are removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SeriesId(u32);

/// A new label set the cap did not let in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refused;

impl Family {
    pub(crate) fn new(name: &'static str, help: &'static str, labels: Vec<&'static str>, max_series: usize) -> Family {
        Family {
            name,
            help,
            labels,
            index: HashMap::default(),
            series: Vec::new(),
            max_series,
        }
    }

    /// Adds one to the series of `key` (a value per label, in order).
    #[cfg(test)]
    pub(crate) fn inc(&mut self, key: &Key) -> Result<(), Refused> {
        let id = self.resolve(key)?;
        self.add(id, 1);
        Ok(())
    }

    /// The series of `key`, added (at zero) if it is new and the cap allows.
    pub(crate) fn resolve(&mut self, key: &Key) -> Result<SeriesId, Refused> {
        if let Some(id) = self.index.get(key.0.as_slice()) {
            return Ok(*id);
        }
        if self.series.len() >= self.max_series {
            return Err(Refused);
        }
        let values: Box<[String]> = key.values().into();
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let id = SeriesId(self.series.len() as u32);
        self.series.push(Series { values, count: 0 });
        self.index.insert(key.0.as_slice().into(), id);
        Ok(id)
    }

    /// Adds `n` to a series [`Family::resolve`] gave since the last removal.
    pub(crate) fn add(&mut self, id: SeriesId, n: u64) {
        self.series[id.0 as usize].count += n;
    }

    /// Removes the series `doomed` says so of (by label values); how many.
    /// The ids of the series kept change.
    pub(crate) fn remove_where(&mut self, doomed: impl Fn(&[String]) -> bool) -> usize {
        let before = self.series.len();
        let mut old: Vec<Option<Series>> = std::mem::take(&mut self.series).into_iter().map(Some).collect();
        self.index
            .retain(|_, id| old[id.0 as usize].as_ref().is_some_and(|s| !doomed(&s.values)));
        for id in self.index.values_mut() {
            let s = old[id.0 as usize].take().expect("each series indexed once");
            *id = SeriesId(self.series.len() as u32);
            self.series.push(s);
        }
        before - self.series.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.series.len()
    }

    /// The family for exposition: labels in name order within each series,
    /// as Prometheus' clients write them.
    pub(crate) fn collect(&self) -> MetricFamily {
        let mut order: Vec<usize> = (0..self.labels.len()).collect();
        order.sort_by_key(|i| self.labels[*i]);
        let metrics = self
            .series
            .iter()
            .map(|s| {
                let labels = order
                    .iter()
                    .map(|i| {
                        let mut pair = LabelPair::default();
                        pair.set_name(self.labels[*i].to_string());
                        pair.set_value(s.values[*i].clone());
                        pair
                    })
                    .collect();
                let mut counter = Counter::default();
                counter.set_value(s.count as f64);
                let mut m = Metric::from_label(labels);
                m.set_counter(counter);
                m
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(self.name.to_string());
        family.set_help(self.help.to_string());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(metrics);
        family
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inc(f: &mut Family, values: &[&str]) -> Result<(), Refused> {
        let mut key = Key::default();
        for v in values {
            key.push(v);
        }
        f.inc(&key)
    }

    #[test]
    fn label_sets_beyond_the_cap_are_refused_until_one_is_removed() {
        let mut f = Family::new("hubble_drop_total", "Number of drops", vec!["reason", "protocol"], 2);
        inc(&mut f, &["POLICY_DENIED", "TCP"]).unwrap();
        inc(&mut f, &["POLICY_DENIED", "UDP"]).unwrap();
        assert_eq!(inc(&mut f, &["CT_MAP_INSERTION_FAILED", "TCP"]), Err(Refused));
        // Existing series still count.
        inc(&mut f, &["POLICY_DENIED", "TCP"]).unwrap();
        assert_eq!(f.remove_where(|v| v[1] == "UDP"), 1);
        inc(&mut f, &["CT_MAP_INSERTION_FAILED", "TCP"]).unwrap();
        let mut got: Vec<(Vec<(String, String)>, f64)> = f
            .collect()
            .get_metric()
            .iter()
            .map(|m| {
                let labels = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_string(), l.value().to_string()))
                    .collect();
                (labels, m.get_counter().get_value())
            })
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        assert_eq!(
            got,
            [
                (
                    vec![pair("protocol", "TCP"), pair("reason", "CT_MAP_INSERTION_FAILED")],
                    1.0
                ),
                (vec![pair("protocol", "TCP"), pair("reason", "POLICY_DENIED")], 2.0),
            ]
        );
    }

    #[test]
    fn keys_give_back_the_values_written() {
        let mut key = Key::default();
        key.push("");
        key.push_parts(&["default", "/", "web"]);
        key.push_joined(&["a".into(), "b".into(), "c".into()], ",");
        key.push_joined(&[], ",");
        for n in [0, 7, 8080, u64::MAX] {
            key.push_number(n);
        }
        assert_eq!(
            key.values(),
            ["", "default/web", "a,b,c", "", "0", "7", "8080", "18446744073709551615"]
        );
    }

    #[test]
    fn values_that_join_alike_are_different_series() {
        let mut f = Family::new("m", "h", vec!["a", "b"], 10);
        inc(&mut f, &["x,y", "z"]).unwrap();
        inc(&mut f, &["x", "y,z"]).unwrap();
        assert_eq!(f.len(), 2);
    }
}
