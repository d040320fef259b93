//! The reader stage: drains the ring buffer in batches, checks each record's
//! header and stores it in the hub (with the packet bytes captured with it);
//! turns the kernel's lost-event counter into loss notices in the stream.
//! Records that do not decode are dropped and counted
//! ([`RecordDecodeFailed`]).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aya::maps::{MapData, RingBuf};
use lumen_rpc::telemetry::InternalEvent;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::watch;

use crate::counters;
use crate::decode;
use crate::hub::Hub;
use crate::output::Clock;
use crate::telemetry::RecordDecodeFailed;

/// The datapath batches wakeups, so the reader also looks on a timer.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How often the kernel's lost counter is read.
const LOST_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    pub received: u64,
    pub decode_errors: u64,
    pub lost_reported: u64,
}

pub struct Reader {
    ring: AsyncFd<RingBuf<MapData>>,
    pin_dir: PathBuf,
    /// Lost events already reported, persisted so a restart does not
    /// report them again.
    lost_state: PathBuf,
    intake: Intake,
}

/// Records taken from the ring buffer: checked, and batched for the store
/// or counted as undecodable.
struct Intake {
    hub: Arc<Hub>,
    /// Records of the current batch, for the store.
    batch: Vec<(lumen_probes::abi::Event, Box<[u8]>)>,
    stats: ReaderStats,
}

impl Intake {
    fn take(&mut self, record: &[u8], clock: &Clock) {
        match decode::header(record) {
            Ok(mut raw) => {
                self.stats.received += 1;
                let capture = Box::from(&record[std::mem::size_of_val(&raw)..][..usize::from(raw.cap_len)]);
                raw.timestamp_ns = wall_ns(clock, raw.timestamp_ns);
                self.batch.push((raw, capture));
            }
            Err(reason) => {
                self.stats.decode_errors += 1;
                RecordDecodeFailed { reason: &reason }.emit(self.hub.telemetry());
            }
        }
    }

    /// Stores the batch and wakes followers.
    fn store(&mut self) {
        self.hub.push_captured(self.batch.drain(..));
    }
}

fn wall_ns(clock: &Clock, mono_ns: u64) -> u64 {
    let wall = clock.wall(mono_ns);
    wall.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Reader {
    pub fn new(ring: RingBuf<MapData>, pin_dir: PathBuf, lost_state: PathBuf, hub: Arc<Hub>) -> io::Result<Reader> {
        let reported = std::fs::read_to_string(&lost_state)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        // SAFETY: the ring buffer owns its map fd for as long as the AsyncFd
        // owns the ring buffer, and always reports that same fd.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(io::Error::from)?;
        Ok(Reader {
            ring,
            pin_dir,
            lost_state,
            intake: Intake {
                hub,
                batch: Vec::new(),
                stats: ReaderStats {
                    lost_reported: reported,
                    ..Default::default()
                },
            },
        })
    }

    /// Runs until `shutdown` turns true, then drains what is left.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> io::Result<ReaderStats> {
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        let mut lost = tokio::time::interval(LOST_INTERVAL);
        loop {
            tokio::select! {
                guard = self.ring.readable_mut() => {
                    let mut guard = guard?;
                    guard.clear_ready();
                }
                _ = poll.tick() => {}
                _ = lost.tick() => self.report_lost()?,
                _ = shutdown.changed() => {
                    let last = self.drain().and_then(|()| self.report_lost());
                    // Consumers end with what was stored, also after an error.
                    self.intake.hub.close();
                    last?;
                    return Ok(self.intake.stats);
                }
            }
            self.drain()?;
        }
    }

    fn drain(&mut self) -> io::Result<()> {
        let clock = Clock::now();
        let ring = self.ring.get_mut();
        let mut any = false;
        while let Some(item) = ring.next() {
            any = true;
            self.intake.take(&item, &clock);
        }
        if any {
            self.intake.store();
        }
        Ok(())
    }

    fn report_lost(&mut self) -> io::Result<()> {
        let Ok(c) = counters::event_counters(&self.pin_dir) else {
            return Ok(());
        };
        if c.lost > self.intake.stats.lost_reported {
            // Report after draining so the lost record follows the events
            // that made it.
            self.drain()?;
            self.intake.hub.kernel_lost(c.lost - self.intake.stats.lost_reported);
            self.intake.stats.lost_reported = c.lost;
            if let Err(e) = std::fs::write(&self.lost_state, c.lost.to_string()) {
                tracing::warn!(error = %e, path = %self.lost_state.display(), "cannot persist lost-event count");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_probes::abi;

    fn record(ev: &abi::Event) -> Vec<u8> {
        // SAFETY: `abi::Event` is plain data with explicit padding.
        unsafe {
            std::slice::from_raw_parts(
                (ev as *const abi::Event).cast::<u8>(),
                std::mem::size_of::<abi::Event>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn malformed_records_are_dropped_and_counted_by_reason() {
        let hub = Hub::new("n1", 8);
        let mut intake = Intake {
            hub: hub.clone(),
            batch: Vec::new(),
            stats: ReaderStats::default(),
        };
        let good = record(&abi::Event {
            family: 4,
            proto: 6,
            ..Default::default()
        });
        let clock = Clock::now();
        intake.take(&good, &clock);
        intake.take(&good[..10], &clock);
        intake.take(
            &record(&abi::Event {
                family: 9,
                ..Default::default()
            }),
            &clock,
        );
        intake.take(&good[..20], &clock);
        intake.store();
        assert_eq!(
            intake.stats,
            ReaderStats {
                received: 1,
                decode_errors: 3,
                lost_reported: 0
            }
        );
        assert_eq!(hub.status().seen_flows, 1, "the good record is stored");
        let errors = &hub.telemetry().decode_errors;
        assert_eq!(
            (
                errors.get("short"),
                errors.get("unknown_family"),
                errors.get("capture_overrun")
            ),
            (2, 1, 0)
        );
    }
}
