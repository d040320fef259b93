//! The reader stage: drains the ring buffer in batches, checks each record's
//! header and stores it in the hub (with the packet bytes captured with it);
//! turns the kernel's lost-event counter into loss notices in the stream.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::watch;

use crate::counters;
use crate::decode;
use crate::hub::Hub;
use crate::output::Clock;

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
    hub: Arc<Hub>,
    /// Records of the current batch, for the store.
    batch: Vec<(lumen_probes::abi::Event, Box<[u8]>)>,
    stats: ReaderStats,
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
            hub,
            batch: Vec::new(),
            stats: ReaderStats {
                lost_reported: reported,
                ..Default::default()
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
                    self.hub.close();
                    last?;
                    return Ok(self.stats);
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
            match decode::header(&item) {
                Ok(mut raw) => {
                    self.stats.received += 1;
                    let capture = Box::from(&item[std::mem::size_of_val(&raw)..][..usize::from(raw.cap_len)]);
                    raw.timestamp_ns = wall_ns(&clock, raw.timestamp_ns);
                    self.batch.push((raw, capture));
                }
                Err(e) => {
                    if self.stats.decode_errors == 0 {
                        tracing::warn!(error = %e, "undecodable ring buffer record (counted, further ones not logged)");
                    }
                    self.stats.decode_errors += 1;
                }
            }
        }
        if any {
            self.hub.push_captured(self.batch.drain(..));
        }
        Ok(())
    }

    fn report_lost(&mut self) -> io::Result<()> {
        let Ok(c) = counters::event_counters(&self.pin_dir) else {
            return Ok(());
        };
        if c.lost > self.stats.lost_reported {
            // Report after draining so the lost record follows the events
            // that made it.
            self.drain()?;
            self.hub.kernel_lost(c.lost - self.stats.lost_reported);
            self.stats.lost_reported = c.lost;
            if let Err(e) = std::fs::write(&self.lost_state, c.lost.to_string()) {
                tracing::warn!(error = %e, path = %self.lost_state.display(), "cannot persist lost-event count");
            }
        }
        Ok(())
    }
}
