//! Lumen's self-telemetry, in the shape of vector's `internal_events`:
//! everything that goes wrong while a daemon runs (a loss, a drop, a retry,
//! a reconnect, a record that does not decode) is one typed event, and
//! emitting it does two things together: it increments the event's counter
//! and it logs, at most one line per interval and subject ([`LogLimit`]),
//! so a flood of one failure neither floods the log nor goes unseen.
//!
//! Each daemon declares its events and a typed registry of its counters
//! (`lumen-observer`'s and `lumen-relay`'s `telemetry` modules); this module
//! holds what they share. Counter names follow `lumen_<noun>_<unit>_total`;
//! [`Sample`]s are what a metrics endpoint will expose.
//!
//! A registry belongs to one daemon instance rather than to the process:
//! `lumen demo` and the tests run several observers in one process, and
//! each observer's counters must equal what its own `ServerStatus` reports.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Something that went wrong, emitted to the counters of the daemon it
/// happened in.
pub trait InternalEvent {
    /// The registry holding this event's counter and log limit.
    type Counters: ?Sized;

    /// Counts the event and logs it if its [`LogLimit`] lets it.
    fn emit(&self, to: &Self::Counters);
}

/// One series of a counter, as a metrics endpoint shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: u64,
}

/// A counter whose labels are fixed where it is declared.
#[derive(Debug)]
pub struct Counter {
    name: &'static str,
    help: &'static str,
    labels: &'static [(&'static str, &'static str)],
    value: AtomicU64,
}

impl Counter {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [(&'static str, &'static str)],
    ) -> Counter {
        Counter {
            name,
            help,
            labels,
            value: AtomicU64::new(0),
        }
    }

    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    pub fn sample(&self) -> Sample {
        Sample {
            name: self.name,
            help: self.help,
            labels: self.labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            value: self.get(),
        }
    }
}

/// A counter with one label whose values are known only at run time (a
/// peer's address, a decode error's kind). The values must come from a
/// bounded set: every value seen stays a series.
#[derive(Debug)]
pub struct CounterVec {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    series: Mutex<BTreeMap<String, u64>>,
}

impl CounterVec {
    pub const fn new(name: &'static str, help: &'static str, label: &'static str) -> CounterVec {
        CounterVec {
            name,
            help,
            label,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn add(&self, value: &str, n: u64) {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        match series.get_mut(value) {
            Some(v) => *v += n,
            None => {
                series.insert(value.to_string(), n);
            }
        }
    }

    /// The count of one series (0 if it never moved).
    pub fn get(&self, value: &str) -> u64 {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.get(value).copied().unwrap_or(0)
    }

    /// Drops a series (what it counted is gone with what it was about: a
    /// peer that left).
    pub fn remove(&self, value: &str) {
        self.series.lock().unwrap_or_else(|e| e.into_inner()).remove(value);
    }

    /// Every series, by label value.
    pub fn samples(&self) -> Vec<Sample> {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series
            .iter()
            .map(|(v, n)| Sample {
                name: self.name,
                help: self.help,
                labels: vec![(self.label, v.clone())],
                value: *n,
            })
            .collect()
    }
}

/// How often an event may log per subject, unless it says otherwise
/// (vector's default).
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Subjects a [`LogLimit`] tells apart at most; the rest share one window.
const MAX_SUBJECTS: usize = 1024;

/// Rate-limits one event kind's log lines: per subject (a peer, a kind of
/// decode error), the first occurrence logs at once, later ones are only
/// counted until `interval` has passed since the last line, and the next
/// occurrence after that logs with how many occurrences it stands for.
/// Occurrences after the last line show in the counter, not in the log.
#[derive(Debug)]
pub struct LogLimit {
    interval: Duration,
    /// Per subject: when its last line was logged, occurrences since.
    windows: Mutex<HashMap<String, (Instant, u64)>>,
    lines: AtomicU64,
}

impl Default for LogLimit {
    fn default() -> LogLimit {
        LogLimit::new(LOG_INTERVAL)
    }
}

impl LogLimit {
    pub fn new(interval: Duration) -> LogLimit {
        LogLimit {
            interval,
            windows: Mutex::new(HashMap::new()),
            lines: AtomicU64::new(0),
        }
    }

    /// Whether this occurrence logs: `Some(occurrences)` the line stands
    /// for (this one included), `None` to stay quiet. Uses tokio's clock,
    /// so tests can pause it.
    pub fn check(&self, subject: &str) -> Option<u64> {
        self.check_at(subject, Instant::now())
    }

    /// [`LogLimit::check`] at `now`.
    pub fn check_at(&self, subject: &str, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let subject = if windows.len() >= MAX_SUBJECTS && !windows.contains_key(subject) {
            ""
        } else {
            subject
        };
        let occurrences = match windows.get_mut(subject) {
            None => {
                windows.insert(subject.to_string(), (now, 0));
                1
            }
            Some((logged, since)) => {
                *since += 1;
                if now.duration_since(*logged) < self.interval {
                    return None;
                }
                *logged = now;
                std::mem::take(since)
            }
        };
        self.lines.fetch_add(1, Ordering::Relaxed);
        Some(occurrences)
    }

    /// Lines this limit let through so far.
    pub fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_count_and_show_as_samples() {
        let c = Counter::new("lumen_lost_events_total", "lost", &[("stage", "kernel_ring_buffer")]);
        c.add(3);
        c.add(2);
        assert_eq!(
            c.sample(),
            Sample {
                name: "lumen_lost_events_total",
                help: "lost",
                labels: vec![("stage", "kernel_ring_buffer".into())],
                value: 5,
            }
        );
        let v = CounterVec::new("lumen_relay_peer_reconnects_total", "reconnects", "peer");
        v.add("b:4244", 1);
        v.add("a:4244", 2);
        v.add("b:4244", 1);
        assert_eq!((v.get("a:4244"), v.get("b:4244"), v.get("c:4244")), (2, 2, 0));
        let series: Vec<_> = v.samples().into_iter().map(|s| (s.labels, s.value)).collect();
        assert_eq!(
            series,
            [
                (vec![("peer", "a:4244".to_string())], 2),
                (vec![("peer", "b:4244".to_string())], 2)
            ]
        );
    }

    #[test]
    fn a_subject_logs_once_per_interval_with_the_count_since() {
        let limit = LogLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(limit.check_at("a", at(0)), Some(1), "the first occurrence logs");
        assert_eq!(limit.check_at("a", at(1)), None);
        assert_eq!(limit.check_at("a", at(9)), None);
        assert_eq!(
            limit.check_at("b", at(9)),
            Some(1),
            "another subject has its own window"
        );
        assert_eq!(
            limit.check_at("a", at(10)),
            Some(3),
            "a summary of the three since the last line"
        );
        assert_eq!(limit.check_at("a", at(19)), None);
        assert_eq!(limit.check_at("a", at(30)), Some(2));
        assert_eq!(limit.lines(), 4);
    }

    #[test]
    fn subjects_beyond_the_cap_share_a_window() {
        let limit = LogLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..MAX_SUBJECTS {
            assert_eq!(limit.check_at(&i.to_string(), t0), Some(1));
        }
        assert_eq!(limit.check_at("new", t0), Some(1));
        assert_eq!(limit.check_at("newer", t0), None, "shares the overflow window");
        assert_eq!(limit.windows.lock().unwrap().len(), MAX_SUBJECTS + 1);
    }

    /// A registry with one event, to see what emitting writes to the log.
    struct Registry {
        dropped: Counter,
        log: LogLimit,
    }

    struct Dropped {
        count: u64,
    }

    impl InternalEvent for Dropped {
        type Counters = Registry;

        fn emit(&self, to: &Registry) {
            to.dropped.add(self.count);
            if let Some(occurrences) = to.log.check("") {
                tracing::warn!(count = self.count, occurrences, "dropped");
            }
        }
    }

    /// The log lines written, shared with the subscriber that writes them.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn emitting_counts_every_event_and_logs_once_per_interval() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let registry = Registry {
            dropped: Counter::new("lumen_test_drops_total", "test", &[]),
            log: LogLimit::new(Duration::from_secs(10)),
        };
        for _ in 0..5 {
            Dropped { count: 2 }.emit(&registry);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        Dropped { count: 1 }.emit(&registry);
        Dropped { count: 1 }.emit(&registry);
        assert_eq!(registry.dropped.get(), 12, "every event counts");
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let logged: Vec<&str> = text.lines().collect();
        assert_eq!(logged.len(), 2, "{text}");
        assert!(logged[0].contains("WARN") && logged[0].contains("dropped count=2 occurrences=1"));
        assert!(logged[1].contains("dropped count=1 occurrences=5"), "{}", logged[1]);
        assert_eq!(registry.log.lines(), 2);
    }
}
