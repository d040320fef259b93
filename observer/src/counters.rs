//! Per-CPU counters and conntrack garbage collection, read straight from
//! the pinned maps so that anyone (tests, `lumen status`) can use them
//! without the observer's loader.

use std::path::Path;
use std::time::Duration;

use aya::maps::{HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use lumen_probes::{abi, maps as names};

use crate::datapath::DatapathError;

fn open(pin_dir: &Path, name: &'static str) -> Result<MapData, DatapathError> {
    MapData::from_pin(pin_dir.join(name)).map_err(|source| DatapathError::Map { name, source })
}

/// Events the datapath tried to write and those the ring buffer refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EventCounters {
    pub emitted: u64,
    pub lost: u64,
}

pub fn event_counters(pin_dir: &Path) -> Result<EventCounters, DatapathError> {
    let map: PerCpuArray<MapData, u64> = PerCpuArray::try_from(Map::PerCpuArray(open(pin_dir, names::EVENT_COUNTERS)?))
        .map_err(|source| DatapathError::Map {
            name: names::EVENT_COUNTERS,
            source,
        })?;
    let sum = |idx: u32| -> Result<u64, DatapathError> {
        let values = map.get(&idx, 0).map_err(|source| DatapathError::Map {
            name: names::EVENT_COUNTERS,
            source,
        })?;
        Ok(values.iter().sum())
    };
    Ok(EventCounters {
        emitted: sum(abi::EVC_EMITTED)?,
        lost: sum(abi::EVC_LOST)?,
    })
}

/// Packets and bytes the datapath saw, by direction and verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TrafficCount {
    pub direction: u8,
    pub verdict: u8,
    pub packets: u64,
    pub bytes: u64,
}

pub fn traffic_counters(pin_dir: &Path) -> Result<Vec<TrafficCount>, DatapathError> {
    let err = |source| DatapathError::Map {
        name: names::TRAFFIC_COUNTERS,
        source,
    };
    let map: PerCpuArray<MapData, abi::TrafficCounter> =
        PerCpuArray::try_from(Map::PerCpuArray(open(pin_dir, names::TRAFFIC_COUNTERS)?)).map_err(err)?;
    let mut out = Vec::new();
    for direction in [abi::DIR_INGRESS, abi::DIR_EGRESS] {
        for verdict in [abi::VERDICT_FORWARDED, abi::VERDICT_DROPPED, abi::VERDICT_AUDIT] {
            let idx = u32::from(direction) * abi::VERDICT_MAX + u32::from(verdict);
            let values = map.get(&idx, 0).map_err(err)?;
            let packets = values.iter().map(|c| c.packets).sum();
            let bytes = values.iter().map(|c| c.bytes).sum();
            out.push(TrafficCount {
                direction,
                verdict,
                packets,
                bytes,
            });
        }
    }
    Ok(out)
}

/// How long idle conntrack entries live (Cilium's defaults).
#[derive(Clone, Copy, Debug)]
pub struct CtTimeouts {
    pub tcp: Duration,
    pub closing: Duration,
    pub other: Duration,
}

impl Default for CtTimeouts {
    fn default() -> Self {
        CtTimeouts {
            tcp: Duration::from_secs(21_600),
            closing: Duration::from_secs(10),
            other: Duration::from_secs(60),
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds, the datapath's clock.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Deletes expired conntrack entries; returns how many.
pub fn collect_conntrack(pin_dir: &Path, timeouts: CtTimeouts) -> Result<usize, DatapathError> {
    let err = |source| DatapathError::Map {
        name: names::CONNTRACK,
        source,
    };
    let mut map: BpfHashMap<MapData, abi::CtKey, abi::CtEntry> =
        BpfHashMap::try_from(Map::LruHashMap(open(pin_dir, names::CONNTRACK)?)).map_err(err)?;
    let now = monotonic_ns();
    let expired: Vec<abi::CtKey> = map
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, v)| {
            let ttl = match (k.proto, v.closing) {
                (6, 0) => timeouts.tcp,
                (6, _) => timeouts.closing,
                _ => timeouts.other,
            };
            now.saturating_sub(v.last_seen_ns) > ttl.as_nanos() as u64
        })
        .map(|(k, _)| k)
        .collect();
    for key in &expired {
        // Already gone (LRU eviction, a racing GC) is fine.
        let _ = map.remove(key);
    }
    Ok(expired.len())
}
