//! Building Prometheus series by hand, for the counters and gauges a daemon
//! keeps itself (Lumen's own, next to the flow metrics of a [`Registry`]):
//! the observer's and the relay's `/metrics` share these.
//!
//! [`Registry`]: crate::Registry

use std::net::{Ipv4Addr, SocketAddr};

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// One series: `labels` (sorted here, as the text format lists them) and a
/// value, as a counter or a gauge.
pub fn metric(labels: Vec<(&str, String)>, kind: MetricType, value: f64) -> Metric {
    let mut labels: Vec<LabelPair> = labels
        .into_iter()
        .map(|(k, v)| {
            let mut pair = LabelPair::default();
            pair.set_name(k.to_string());
            pair.set_value(v);
            pair
        })
        .collect();
    labels.sort_by(|a, b| a.name().cmp(b.name()));
    let mut m = Metric::from_label(labels);
    if kind == MetricType::GAUGE {
        let mut g = Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    } else {
        let mut c = Counter::default();
        c.set_value(value);
        m.set_counter(c);
    }
    m
}

/// A family of series of one name.
pub fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

/// `HOST:PORT`, or Go's `:PORT` for every IPv4 address, as Hubble takes
/// `--metrics-listen-address`.
pub fn parse_listen_address(value: &str) -> Result<SocketAddr, String> {
    if let Some(port) = value.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| format!("{port:?} is not a port"))?;
        return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
    }
    value
        .parse()
        .map_err(|_| format!("{value:?} is not HOST:PORT or :PORT"))
}
