//! Per-CPU counters and conntrack garbage collection, read straight from
//! the pinned maps so that anyone (tests, `lumen status`) can use them
//! without the observer's loader.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use aya::maps::lpm_trie::LpmTrie;
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

/// Packets and bytes the datapath dropped for one reason in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DropCount {
    pub direction: u8,
    pub reason: u8,
    pub packets: u64,
    pub bytes: u64,
}

/// The reasons the datapath drops for.
pub const DROP_REASONS: [u8; 6] = [
    abi::DROP_POLICY_DENIED,
    abi::DROP_INVALID_PACKET,
    abi::DROP_CT_INVALID_HEADER,
    abi::DROP_INVALID_IPV6_EXT_HEADER,
    abi::DROP_FRAG_NOT_FOUND,
    abi::DROP_POLICY_DENY,
];

/// Drops by direction and reason (every reason the datapath has, in both
/// directions, zeros included), summed over CPUs.
pub fn drop_counters(pin_dir: &Path) -> Result<Vec<DropCount>, DatapathError> {
    let err = |source| DatapathError::Map {
        name: names::DROP_COUNTERS,
        source,
    };
    let map: PerCpuArray<MapData, abi::TrafficCounter> =
        PerCpuArray::try_from(Map::PerCpuArray(open(pin_dir, names::DROP_COUNTERS)?)).map_err(err)?;
    let mut out = Vec::new();
    for direction in [abi::DIR_INGRESS, abi::DIR_EGRESS] {
        for reason in DROP_REASONS {
            let idx = u32::from(direction) * abi::DROP_REASON_MAX + u32::from(reason);
            let values = map.get(&idx, 0).map_err(err)?;
            out.push(DropCount {
                direction,
                reason,
                packets: values.iter().map(|c| c.packets).sum(),
                bytes: values.iter().map(|c| c.bytes).sum(),
            });
        }
    }
    Ok(out)
}

/// How full the kernel ring buffer is: bytes written and not yet read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RingFill {
    pub pending: u64,
    pub capacity: u64,
}

/// The ring buffer's pending bytes, from its producer and consumer
/// positions: the kernel maps them read-only at page 1 and page 0 of the
/// map's file descriptor (record headers and padding count as written).
pub fn ring_buffer_fill(pin_dir: &Path) -> Result<RingFill, DatapathError> {
    let map = open(pin_dir, names::EVENTS)?;
    let err = |source| DatapathError::Map {
        name: names::EVENTS,
        source,
    };
    let capacity = u64::from(map.info().map_err(err)?.max_entries());
    let fd = std::os::fd::AsFd::as_fd(map.fd());
    // The consumer's position first: the producer's only grows past it.
    let consumer = read_position(fd, 0)?;
    let producer = read_position(fd, 1)?;
    Ok(RingFill {
        pending: producer.saturating_sub(consumer),
        capacity,
    })
}

/// The 64-bit position at the start of page `page` of a ring buffer map.
fn read_position(fd: std::os::fd::BorrowedFd<'_>, page: i64) -> Result<u64, DatapathError> {
    use std::os::fd::AsRawFd;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    // SAFETY: a fresh read-only shared mapping of one page of the map, which
    // the kernel allows for both position pages; unmapped before returning.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page_size,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            page * page_size as i64,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(DatapathError::Mmap {
            name: names::EVENTS,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: the page is mapped and 8-byte aligned; the kernel updates the
    // position concurrently, so it is read atomically.
    let position =
        unsafe { (*(ptr as *const std::sync::atomic::AtomicU64)).load(std::sync::atomic::Ordering::Acquire) };
    // SAFETY: unmapping exactly the mapping made above.
    unsafe { libc::munmap(ptr, page_size) };
    Ok(position)
}

/// Entries of one of the datapath's maps against its capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MapFill {
    pub map: &'static str,
    pub entries: u64,
    pub capacity: u64,
}

/// How full the conntrack, ipcache and policy maps are. Counting walks the
/// keys (one system call each), so it costs time in proportion to entries.
pub fn map_fill(pin_dir: &Path) -> Result<Vec<MapFill>, DatapathError> {
    fn fill(
        pin_dir: &Path,
        name: &'static str,
        count: impl FnOnce(MapData) -> Result<u64, aya::maps::MapError>,
    ) -> Result<MapFill, DatapathError> {
        let err = |source| DatapathError::Map { name, source };
        let map = open(pin_dir, name)?;
        let capacity = u64::from(map.info().map_err(err)?.max_entries());
        let entries = count(map).map_err(err)?;
        Ok(MapFill {
            map: name,
            entries,
            capacity,
        })
    }
    Ok(vec![
        fill(pin_dir, names::CONNTRACK, |m| {
            let map: BpfHashMap<MapData, abi::CtKey, abi::CtEntry> = BpfHashMap::try_from(Map::LruHashMap(m))?;
            Ok(map.keys().filter(Result::is_ok).count() as u64)
        })?,
        fill(pin_dir, names::IPCACHE, |m| {
            let map: LpmTrie<MapData, [u8; 20], abi::IpcacheValue> = LpmTrie::try_from(Map::LpmTrie(m))?;
            Ok(map.keys().filter(Result::is_ok).count() as u64)
        })?,
        fill(pin_dir, names::POLICY, |m| {
            let map: LpmTrie<MapData, [u8; 16], abi::PolicyValue> = LpmTrie::try_from(Map::LpmTrie(m))?;
            Ok(map.keys().filter(Result::is_ok).count() as u64)
        })?,
    ])
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

/// Conntrack entries of a node, for inspection.
pub fn conntrack_entries(pin_dir: &Path) -> Result<Vec<(abi::CtKey, abi::CtEntry)>, DatapathError> {
    let err = |source| DatapathError::Map {
        name: names::CONNTRACK,
        source,
    };
    let map: BpfHashMap<MapData, abi::CtKey, abi::CtEntry> =
        BpfHashMap::try_from(Map::LruHashMap(open(pin_dir, names::CONNTRACK)?)).map_err(err)?;
    Ok(map.iter().filter_map(Result::ok).collect())
}

/// Ages conntrack entries. The datapath reads no clock per packet, so an
/// entry's age is how long its packet counters have stood still, as seen
/// by successive passes of this collector.
#[derive(Debug, Default)]
pub struct ConntrackGc {
    timeouts: CtTimeouts,
    /// Per entry: packets seen at the last pass, and since when unchanged.
    idle_since: HashMap<abi::CtKey, (u64, u64)>,
}

impl ConntrackGc {
    pub fn new(timeouts: CtTimeouts) -> Self {
        ConntrackGc {
            timeouts,
            idle_since: HashMap::new(),
        }
    }

    /// One pass at time `now_ns` over the current entries: the keys to delete.
    pub fn pass(
        &mut self,
        entries: impl IntoIterator<Item = (abi::CtKey, abi::CtEntry)>,
        now_ns: u64,
    ) -> Vec<abi::CtKey> {
        let mut next = HashMap::new();
        let mut expired = Vec::new();
        for (key, entry) in entries {
            let packets = entry.packets_fwd + entry.packets_rev;
            let since = match self.idle_since.get(&key) {
                Some(&(seen, since)) if seen == packets => since,
                _ => now_ns,
            };
            let ttl = match (key.proto, entry.closing) {
                (6, 0) => self.timeouts.tcp,
                (6, _) => self.timeouts.closing,
                _ => self.timeouts.other,
            };
            if now_ns.saturating_sub(since) >= ttl.as_nanos() as u64 {
                expired.push(key);
            } else {
                next.insert(key, (packets, since));
            }
        }
        self.idle_since = next;
        expired
    }

    /// Runs a pass over the pinned conntrack map; returns how many entries went.
    pub fn collect(&mut self, pin_dir: &Path) -> Result<usize, DatapathError> {
        let err = |source| DatapathError::Map {
            name: names::CONNTRACK,
            source,
        };
        let mut map: BpfHashMap<MapData, abi::CtKey, abi::CtEntry> =
            BpfHashMap::try_from(Map::LruHashMap(open(pin_dir, names::CONNTRACK)?)).map_err(err)?;
        let entries: Vec<_> = map.iter().filter_map(Result::ok).collect();
        let expired = self.pass(entries, monotonic_ns());
        for key in &expired {
            // Already gone (LRU eviction) is fine.
            let _ = map.remove(key);
        }
        Ok(expired.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn entry(packets: u64, closing: u8) -> abi::CtEntry {
        abi::CtEntry {
            packets_fwd: packets,
            closing,
            ..Default::default()
        }
    }

    fn key(proto: u8, port: u16) -> abi::CtKey {
        abi::CtKey {
            proto,
            port_a: port,
            ..Default::default()
        }
    }

    #[test]
    fn idle_entries_expire_after_their_timeout_and_busy_ones_stay() {
        let mut gc = ConntrackGc::new(CtTimeouts::default());
        let (udp, tcp, closing) = (key(17, 1), key(6, 2), key(6, 3));
        let at = |gc: &mut ConntrackGc, t: u64, udp_packets: u64| {
            gc.pass(
                [(udp, entry(udp_packets, 0)), (tcp, entry(5, 0)), (closing, entry(9, 1))],
                t * S,
            )
        };
        assert_eq!(at(&mut gc, 100, 1), vec![]);
        assert_eq!(at(&mut gc, 109, 1), vec![]);
        assert_eq!(at(&mut gc, 110, 2), vec![closing], "closing TCP goes after 10 s idle");
        assert_eq!(at(&mut gc, 169, 2), vec![], "UDP moved at 110: 59 s idle");
        assert_eq!(at(&mut gc, 170, 2), vec![udp], "60 s idle");
        assert_eq!(
            gc.pass([(tcp, entry(5, 0))], (100 + 21_600) * S),
            vec![tcp],
            "6 h for established TCP"
        );
    }
}
