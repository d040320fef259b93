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
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.push(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
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
    /// By label values, encoded so that no two label sets share a key.
    /// Hashed with foldhash (randomly seeded): SipHash showed per flow.
    series: HashMap<Box<[u8]>, Series, foldhash::fast::RandomState>,
    max_series: usize,
}

/// A new label set the cap did not let in.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refused;

impl Family {
    pub(crate) fn new(name: &'static str, help: &'static str, labels: Vec<&'static str>, max_series: usize) -> Family {
        Family {
            name,
            help,
            labels,
            series: HashMap::default(),
            max_series,
        }
    }

    /// Adds one to the series of `key` (a value per label, in order).
    pub(crate) fn inc(&mut self, key: &Key) -> Result<(), Refused> {
        if let Some(s) = self.series.get_mut(key.0.as_slice()) {
            s.count += 1;
            return Ok(());
        }
        if self.series.len() >= self.max_series {
            return Err(Refused);
        }
        let values: Box<[String]> = key.values().into();
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let series = Series { values, count: 1 };
        self.series.insert(key.0.as_slice().into(), series);
        Ok(())
    }

    /// Removes the series `doomed` says so of (by label values); how many.
    pub(crate) fn remove_where(&mut self, doomed: impl Fn(&[String]) -> bool) -> usize {
        let before = self.series.len();
        self.series.retain(|_, s| !doomed(&s.values));
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
            .values()
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
