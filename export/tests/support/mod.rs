//! Flows with known fields, a clock the test sets, and waiting for the
//! writer threads.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lumen_export::{Clock, ExportStats, Exporters};
use lumen_proto::flow::{
    layer4::Protocol, CiliumEventType, DropReason, Endpoint, Flow, Ip, IpVersion, Layer4, Tcp, TcpFlags,
    TrafficDirection, Udp, Verdict,
};
use lumen_proto::prost_types::Timestamp;

/// 2024-01-01T10:00:00Z.
pub const T0: u64 = 1_704_103_200;

pub fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + seconds)
}

/// A clock that stays where the test puts it.
pub fn manual_clock(start: SystemTime) -> (Clock, Arc<Mutex<SystemTime>>) {
    let now = Arc::new(Mutex::new(start));
    let clock = {
        let now = now.clone();
        Arc::new(move || *now.lock().unwrap())
    };
    (clock, now)
}

fn endpoint(namespace: &str, pod: &str, identity: u32) -> Option<Endpoint> {
    Some(Endpoint {
        namespace: namespace.into(),
        pod_name: pod.into(),
        identity,
        ..Default::default()
    })
}

/// client → server:80, TCP SYN, egress, forwarded, at T0 + `seconds` s and 5 ms.
pub fn forwarded(seconds: u64) -> Flow {
    Flow {
        time: Some(Timestamp {
            seconds: (T0 + seconds) as i64,
            nanos: 5_000_000,
        }),
        verdict: Verdict::Forwarded as i32,
        node_name: "node1".into(),
        event_type: Some(CiliumEventType { r#type: 4, sub_type: 0 }),
        source: endpoint("default", "client", 1001),
        destination: endpoint("default", "server", 1002),
        ip: Some(Ip {
            source: "10.0.0.1".into(),
            destination: "10.0.0.2".into(),
            ip_version: IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        l4: Some(Layer4 {
            protocol: Some(Protocol::Tcp(Tcp {
                source_port: 40_000,
                destination_port: 80,
                flags: Some(TcpFlags {
                    syn: true,
                    ..Default::default()
                }),
            })),
        }),
        traffic_direction: TrafficDirection::Egress as i32,
        ..Default::default()
    }
}

/// other → server:53/UDP, ingress, dropped by policy, with no node name.
pub fn dropped(seconds: u64) -> Flow {
    Flow {
        time: Some(Timestamp {
            seconds: (T0 + seconds) as i64,
            nanos: 0,
        }),
        verdict: Verdict::Dropped as i32,
        drop_reason_desc: DropReason::PolicyDenied as i32,
        event_type: Some(CiliumEventType {
            r#type: 1,
            sub_type: 133,
        }),
        source: endpoint("other", "intruder", 2001),
        destination: endpoint("default", "server", 1002),
        l4: Some(Layer4 {
            protocol: Some(Protocol::Udp(Udp {
                source_port: 5353,
                destination_port: 53,
            })),
        }),
        traffic_direction: TrafficDirection::Ingress as i32,
        ..Default::default()
    }
}

/// Waits (5 s at most) until the exporters' counters satisfy `done`.
pub fn settle(exporters: &Exporters, done: impl Fn(&ExportStats) -> bool) -> ExportStats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = exporters.stats();
        if done(&stats) || Instant::now() > deadline {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
