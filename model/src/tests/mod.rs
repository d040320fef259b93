//! The model fed synthetic flows at synthetic times, with exact expectations.

mod attribution;
mod bounds;
mod map;
mod rates;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lumen_proto::flow::{
    layer4::Protocol as L4, DropReason, Endpoint, Flow, Ip, Layer4, Policy, Tcp, TrafficDirection, Udp, Verdict,
};
use lumen_proto::lumen::v1::FlowExtension;
use lumen_proto::prost_types::Timestamp;

use crate::{ConnectionRow, Model, Snapshot, Table, Windows, WorkloadRow};

/// A minute boundary: test times are seconds (and milliseconds) after it.
const T0: u64 = 1_700_000_400;

/// The instant `ms` milliseconds after [`T0`].
fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0) + Duration::from_millis(ms)
}

fn at(secs: u64) -> SystemTime {
    at_ms(secs * 1000)
}

/// A pod whose app label is its name up to the first `-`.
fn pod(namespace: &str, name: &str, identity: u32) -> Endpoint {
    let app = name.split('-').next().unwrap_or(name);
    Endpoint {
        identity,
        namespace: namespace.into(),
        pod_name: name.into(),
        labels: vec![
            format!("k8s:app={app}"),
            format!("k8s:io.kubernetes.pod.namespace={namespace}"),
        ],
        ..Default::default()
    }
}

fn reserved(identity: u32, name: &str) -> Endpoint {
    Endpoint {
        identity,
        labels: vec![format!("reserved:{name}")],
        ..Default::default()
    }
}

fn policy(kind: &str, namespace: &str, name: &str) -> Policy {
    Policy {
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
        ..Default::default()
    }
}

/// A flow under construction: forwarded, at [`T0`], until told otherwise.
struct F(Flow);

/// A TCP flow `src_ip:sport → dst_ip:dport`.
fn tcp(src: Option<Endpoint>, src_ip: &str, sport: u32, dst: Option<Endpoint>, dst_ip: &str, dport: u32) -> F {
    F(Flow {
        time: Some(Timestamp {
            seconds: T0 as i64,
            nanos: 0,
        }),
        verdict: Verdict::Forwarded as i32,
        ip: Some(Ip {
            source: src_ip.into(),
            destination: dst_ip.into(),
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(L4::Tcp(Tcp {
                source_port: sport,
                destination_port: dport,
                flags: None,
            })),
        }),
        source: src,
        destination: dst,
        ..Default::default()
    })
}

impl F {
    fn at_ms(mut self, ms: u64) -> F {
        let t = T0 * 1000 + ms;
        self.0.time = Some(Timestamp {
            seconds: (t / 1000) as i64,
            nanos: (t % 1000 * 1_000_000) as i32,
        });
        self
    }

    fn at(self, secs: u64) -> F {
        self.at_ms(secs * 1000)
    }

    fn udp(mut self) -> F {
        if let Some(L4::Tcp(t)) = self.0.l4.as_ref().and_then(|l| l.protocol.clone()) {
            self.0.l4 = Some(Layer4 {
                protocol: Some(L4::Udp(Udp {
                    source_port: t.source_port,
                    destination_port: t.destination_port,
                })),
            });
        }
        self
    }

    fn dropped(mut self, reason: DropReason) -> F {
        self.0.verdict = Verdict::Dropped as i32;
        self.0.drop_reason_desc = reason as i32;
        self
    }

    fn audit(mut self) -> F {
        self.0.verdict = Verdict::Audit as i32;
        self
    }

    fn reply(mut self) -> F {
        self.0.is_reply = Some(true);
        self
    }

    fn node(mut self, name: &str, direction: TrafficDirection) -> F {
        self.0.node_name = name.into();
        self.0.traffic_direction = direction as i32;
        self
    }

    fn names(mut self, source: &[&str], destination: &[&str]) -> F {
        self.0.source_names = source.iter().map(|s| s.to_string()).collect();
        self.0.destination_names = destination.iter().map(|s| s.to_string()).collect();
        self
    }

    fn denied_by(mut self, ingress: Vec<Policy>, egress: Vec<Policy>) -> F {
        self.0.ingress_denied_by = ingress;
        self.0.egress_denied_by = egress;
        self
    }

    fn selected_by(mut self, policies: Vec<Policy>) -> F {
        let ext = FlowExtension {
            selected_by: policies,
            ..Default::default()
        };
        self.0.extensions = Some(ext.to_any());
        self
    }

    fn into_flow(self) -> Flow {
        self.0
    }
}

/// Feeds flows to a model.
fn feed(model: &mut Model, flows: impl IntoIterator<Item = F>) {
    for f in flows {
        model.ingest(&f.0);
    }
}

/// A snapshot at `T0 + secs` with the default windows (10 s and 60 s).
fn snap(model: &Model, secs: u64) -> Snapshot {
    model.snapshot(at(secs), Windows::default())
}

/// The connection `source → destination:port`, by their printed names.
fn conn<'a>(table: &'a Table<ConnectionRow>, source: &str, destination: &str, port: u32) -> &'a ConnectionRow {
    table
        .rows
        .iter()
        .find(|c| c.source.to_string() == source && c.destination.to_string() == destination && c.port == port)
        .unwrap_or_else(|| panic!("no connection {source} → {destination}:{port} in {:#?}", names(table)))
}

fn names(table: &Table<ConnectionRow>) -> Vec<String> {
    table
        .rows
        .iter()
        .map(|c| format!("{} → {}:{}", c.source, c.destination, c.port))
        .collect()
}

fn workload<'a>(table: &'a Table<WorkloadRow>, name: &str) -> &'a WorkloadRow {
    table
        .rows
        .iter()
        .find(|w| w.node.to_string() == name)
        .unwrap_or_else(|| panic!("no workload {name}"))
}

fn web(n: u32) -> Option<Endpoint> {
    Some(pod("shop", &format!("web-{n}"), 1001))
}

fn db() -> Option<Endpoint> {
    Some(pod("shop", "db-0", 1002))
}
