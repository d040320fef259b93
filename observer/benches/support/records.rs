//! Byte-exact datapath records and the endpoints they come from, replayed
//! by the pipeline and metrics benchmarks.

use std::sync::Arc;

use lumen_observer::parser::{EndpointMeta, Snapshot};
use lumen_probes::abi;

/// The bytes of one ring-buffer record; every 100th is a drop to port 8080.
pub fn record(i: u64) -> Vec<u8> {
    let mut ev = abi::Event {
        timestamp_ns: 1_764_000_000_000_000_000 + i * 1_000,
        ifindex: 3,
        endpoint_id: 7,
        src_identity: 300,
        dst_identity: 400,
        family: 4,
        proto: 6,
        direction: abi::DIR_INGRESS,
        obs_point: abi::OBS_TO_ENDPOINT,
        verdict: abi::VERDICT_FORWARDED,
        ct_state: abi::CT_ESTABLISHED,
        sport: 30_000 + (i % 20_000) as u16,
        dport: 80,
        tcp_flags: 0x18,
        pkt_len: 66,
        ..Default::default()
    };
    ev.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
    ev.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
    if i.is_multiple_of(100) {
        ev.verdict = abi::VERDICT_DROPPED;
        ev.drop_reason = abi::DROP_POLICY_DENIED;
        ev.dport = 8080;
        ev.ct_state = abi::CT_NEW;
        ev.tcp_flags = 0x02;
        ev.saddr[..4].copy_from_slice(&[10, 0, 0, 9]);
    }
    // SAFETY: abi::Event is plain repr(C) data; we view its bytes.
    unsafe {
        std::slice::from_raw_parts(
            (&ev as *const abi::Event).cast::<u8>(),
            std::mem::size_of::<abi::Event>(),
        )
    }
    .to_vec()
}

/// Record `i` of 16 connections from the client to the server's ports
/// 9000 to 9015, taking turns: no record has the shape of the one before.
/// (Only the consumers benchmark replays these.)
#[allow(dead_code)]
pub fn interleaved(i: u64) -> Vec<u8> {
    let mut bytes = record(i * 100 + 1);
    let dport = 9_000 + (i % 16) as u16;
    bytes[std::mem::offset_of!(abi::Event, dport)..][..2].copy_from_slice(&dport.to_ne_bytes());
    bytes
}

/// The three addresses of the records as pods, with labels.
pub fn snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    for (ip, pod, identity) in [
        ("10.0.0.1", "client", 300),
        ("10.0.0.2", "server", 400),
        ("10.0.0.9", "attacker", 500),
    ] {
        let meta = Arc::new(EndpointMeta {
            id: identity,
            identity,
            namespace: "default".into(),
            pod_name: pod.into(),
            labels: vec![
                format!("k8s:app={pod}"),
                "k8s:io.kubernetes.pod.namespace=default".into(),
            ],
            ..Default::default()
        });
        s.endpoints.insert(ip.parse().unwrap(), meta.clone());
        s.endpoints_by_id.insert(identity, meta);
    }
    s
}
