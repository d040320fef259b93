//! Sliding-window counts in fixed rings of time buckets.
//!
//! Every aggregate carries one [`Series`]: 61 one-second buckets (the 60
//! completed seconds before the current one, and the current one) and 11
//! one-minute buckets (10 completed minutes and the current one). A bucket
//! holds `L` lanes (flows, drops, ...), so a series costs `288 × L` bytes
//! whatever the flow rate, and answers every [`Window`] from 1 s to 10 min.
//!
//! Rates count completed seconds only: the second in progress is not over,
//! and counting it would make every rate dip at the start of each second.

use serde::{Deserialize, Serialize};

/// Completed one-second buckets kept (the trend and the longest window in seconds).
pub const HISTORY_SECS: usize = 60;
/// Completed one-minute buckets kept (the longest window).
const HISTORY_MINS: u64 = 10;
const SEC_SLOTS: u64 = HISTORY_SECS as u64 + 1;
const MIN_SLOTS: u64 = HISTORY_MINS + 1;

/// How far back a rate looks.
///
/// Up to a minute a window is the last `secs` completed seconds. Longer ones
/// are whole minutes: the last `secs / 60` completed minutes plus the
/// completed seconds of the current minute, so the span a rate divides by is
/// between `secs` and `secs + 59` (see [`Window::span`]), and the rate is
/// exact over those buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "u32", from = "u32")]
pub struct Window(u32);

impl Window {
    /// The short window of every table (iftop's middle column).
    pub const TEN_SECONDS: Window = Window(10);
    /// The long window of connections.
    pub const MINUTE: Window = Window(60);
    /// The longest window the buckets hold.
    pub const TEN_MINUTES: Window = Window(600);

    /// The window nearest `secs` that whole buckets answer: clamped to
    /// 1..=600, and above a minute rounded down to whole minutes.
    pub fn from_secs(secs: u32) -> Window {
        match secs {
            0 => Window(1),
            1..=60 => Window(secs),
            _ => Window(secs.min(600) / 60 * 60),
        }
    }

    /// Its nominal length in seconds.
    pub fn secs(self) -> u32 {
        self.0
    }

    /// The seconds `[from, to)` it covers when the clock reads second `now`.
    pub fn range(self, now: u64) -> (u64, u64) {
        let secs = u64::from(self.0);
        if secs <= HISTORY_SECS as u64 {
            (now.saturating_sub(secs), now)
        } else {
            ((now / 60).saturating_sub(secs / 60) * 60, now)
        }
    }

    /// How many seconds it covers at second `now`: what a rate divides by.
    pub fn span(self, now: u64) -> u64 {
        let (from, to) = self.range(now);
        to - from
    }

    /// `count` per second over the window at second `now`.
    pub fn rate(self, count: u64, now: u64) -> f64 {
        match self.span(now) {
            0 => 0.0,
            span => count as f64 / span as f64,
        }
    }
}

impl From<Window> for u32 {
    fn from(window: Window) -> u32 {
        window.0
    }
}

impl From<u32> for Window {
    fn from(secs: u32) -> Window {
        Window::from_secs(secs)
    }
}

/// The two windows of a snapshot: `short` for every rate, and `long` for
/// connections' second rate (iftop shows two or three side by side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Windows {
    pub short: Window,
    pub long: Window,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            short: Window::TEN_SECONDS,
            long: Window::MINUTE,
        }
    }
}

pub(crate) const NANOS: u64 = 1_000_000_000;

/// Unix milliseconds, which JSON numbers hold exactly, of unix nanoseconds.
pub(crate) fn millis(ns: u64) -> u64 {
    ns / 1_000_000
}

/// When a snapshot is taken, and over which windows.
pub(crate) struct Clock {
    /// Unix second of the snapshot; rates end where it begins.
    pub now: u64,
    pub windows: Windows,
}

impl Clock {
    /// Unix nanosecond the short window starts at.
    pub(crate) fn short_start(&self) -> u64 {
        self.windows.short.range(self.now).0 * NANOS
    }

    /// `count` per second over the short window.
    pub(crate) fn rate(&self, count: u64) -> f64 {
        self.windows.short.rate(count, self.now)
    }
}

/// Counts of `L` lanes per second and per minute, for one aggregate.
///
/// Buckets are cleared lazily: `head` is the latest second written, and a
/// bucket is read only if its second (minute) is within the ring behind it.
#[derive(Clone, Debug)]
pub(crate) struct Series<const L: usize> {
    head: u64,
    secs: [[u32; L]; SEC_SLOTS as usize],
    mins: [[u32; L]; MIN_SLOTS as usize],
}

impl<const L: usize> Default for Series<L> {
    fn default() -> Self {
        Series {
            head: 0,
            secs: [[0; L]; SEC_SLOTS as usize],
            mins: [[0; L]; MIN_SLOTS as usize],
        }
    }
}

fn bump<const L: usize>(bucket: &mut [u32; L], values: [u32; L]) {
    for (b, v) in bucket.iter_mut().zip(values) {
        *b = b.saturating_add(v);
    }
}

impl<const L: usize> Series<L> {
    /// Adds `values` at unix second `sec`. A second more than a minute (a
    /// minute more than ten) behind the newest one written is too old for
    /// any bucket: the caller's totals still count it.
    pub(crate) fn add(&mut self, sec: u64, values: [u32; L]) {
        if sec > self.head {
            self.advance(sec);
        }
        if self.head - sec < SEC_SLOTS {
            bump(&mut self.secs[(sec % SEC_SLOTS) as usize], values);
        }
        if self.head / 60 - sec / 60 < MIN_SLOTS {
            bump(&mut self.mins[(sec / 60 % MIN_SLOTS) as usize], values);
        }
    }

    /// Makes `sec` the head, clearing the buckets of the seconds (minutes)
    /// that the ring skips or wraps onto.
    fn advance(&mut self, sec: u64) {
        if sec - self.head >= SEC_SLOTS {
            self.secs = [[0; L]; SEC_SLOTS as usize];
        } else {
            for s in self.head + 1..=sec {
                self.secs[(s % SEC_SLOTS) as usize] = [0; L];
            }
        }
        let (head_min, min) = (self.head / 60, sec / 60);
        if min - head_min >= MIN_SLOTS {
            self.mins = [[0; L]; MIN_SLOTS as usize];
        } else {
            for m in head_min + 1..=min {
                self.mins[(m % MIN_SLOTS) as usize] = [0; L];
            }
        }
        self.head = sec;
    }

    /// Sums of the seconds `[from, to)` still in the ring.
    fn seconds(&self, from: u64, to: u64) -> [u64; L] {
        let mut sum = [0; L];
        let lo = from.max((self.head + 1).saturating_sub(SEC_SLOTS));
        for s in lo..to.min(self.head + 1) {
            for (acc, v) in sum.iter_mut().zip(self.secs[(s % SEC_SLOTS) as usize]) {
                *acc += u64::from(v);
            }
        }
        sum
    }

    /// Sums of the minutes `[from, to)` still in the ring.
    fn minutes(&self, from: u64, to: u64) -> [u64; L] {
        let mut sum = [0; L];
        let head = self.head / 60;
        for m in from.max((head + 1).saturating_sub(MIN_SLOTS))..to.min(head + 1) {
            for (acc, v) in sum.iter_mut().zip(self.mins[(m % MIN_SLOTS) as usize]) {
                *acc += u64::from(v);
            }
        }
        sum
    }

    /// Each lane's count over `window` when the clock reads second `now`.
    pub(crate) fn sum(&self, window: Window, now: u64) -> [u64; L] {
        let (from, to) = window.range(now);
        if u64::from(window.secs()) <= HISTORY_SECS as u64 {
            return self.seconds(from, to);
        }
        let mut sum = self.minutes(from / 60, now / 60);
        for (acc, v) in sum.iter_mut().zip(self.seconds(now / 60 * 60, now)) {
            *acc += v;
        }
        sum
    }

    /// One lane's counts in the 60 completed seconds before `now`, oldest first.
    pub(crate) fn history(&self, lane: usize, now: u64) -> Vec<u32> {
        let oldest = (self.head + 1).saturating_sub(SEC_SLOTS);
        (now.saturating_sub(HISTORY_SECS as u64)..now)
            .map(|s| match s >= oldest && s <= self.head {
                true => self.secs[(s % SEC_SLOTS) as usize][lane],
                false => 0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minute boundary, so that test times read as offsets into minutes.
    const T: u64 = 1_700_000_400;

    #[test]
    fn windows_round_to_what_buckets_answer() {
        let secs = |s| Window::from_secs(s).secs();
        assert_eq!(
            [secs(0), secs(10), secs(60), secs(61), secs(150), secs(600), secs(9999)],
            [1, 10, 60, 60, 120, 600, 600]
        );
    }

    #[test]
    fn short_windows_count_completed_seconds_only() {
        let mut s = Series::<1>::default();
        for t in 0..12 {
            s.add(T + t, [t as u32 + 1]);
        }
        // At T+12 the 10 s window is T+2..T+11: 3 + 4 + ... + 12.
        assert_eq!(s.sum(Window::TEN_SECONDS, T + 12), [75]);
        // At T+11 the second T+11 (12 flows) is still in progress.
        assert_eq!(s.sum(Window::TEN_SECONDS, T + 11), [65]);
        assert_eq!(Window::TEN_SECONDS.rate(75, T + 12), 7.5);
        // Once the clock has moved past, nothing is left.
        assert_eq!(s.sum(Window::TEN_SECONDS, T + 22), [0]);
        assert_eq!(s.sum(Window::MINUTE, T + 71), [12]);
        assert_eq!(s.sum(Window::MINUTE, T + 72), [0]);
    }

    #[test]
    fn the_ring_reuses_buckets_without_leaking_old_counts() {
        let mut s = Series::<2>::default();
        s.add(T, [5, 1]);
        s.add(T + 61, [2, 0]);
        // T's slot was reused for T+61; T itself is out of the minute before T+62.
        assert_eq!(s.sum(Window::MINUTE, T + 62), [2, 0]);
        s.add(T + 500, [1, 1]);
        assert_eq!(s.sum(Window::MINUTE, T + 501), [1, 1]);
        assert_eq!(s.history(0, T + 501)[59], 1);
        assert_eq!(s.history(0, T + 501).iter().sum::<u32>(), 1);
    }

    #[test]
    fn long_windows_are_whole_minutes_plus_the_current_ones_seconds() {
        let mut s = Series::<1>::default();
        // One flow a second for 11 minutes.
        for t in 0..660 {
            s.add(T + t, [1]);
        }
        // At T+630: minutes 0..10 completed, plus 30 s of minute 10 = 630 s.
        assert_eq!(Window::TEN_MINUTES.range(T + 630), (T, T + 630));
        assert_eq!(s.sum(Window::TEN_MINUTES, T + 630), [630]);
        assert_eq!(Window::TEN_MINUTES.rate(630, T + 630), 1.0);
        // At T+660 minute 0 has left the window: minutes 1..11 = 600 s.
        assert_eq!(s.sum(Window::TEN_MINUTES, T + 660), [600]);
        let two = Window::from_secs(120);
        assert_eq!((s.sum(two, T + 605), two.span(T + 605)), ([125], 125));
    }

    #[test]
    fn late_counts_land_in_their_bucket_or_only_in_totals() {
        let mut s = Series::<1>::default();
        s.add(T + 100, [1]);
        s.add(T + 95, [1]);
        // More than a minute behind the head: no second bucket, but a minute one.
        s.add(T + 30, [1]);
        // More than ten minutes behind: nowhere.
        s.add(T - 600, [1]);
        assert_eq!(s.sum(Window::TEN_SECONDS, T + 101), [2]);
        assert_eq!(s.sum(Window::TEN_MINUTES, T + 101), [3]);
    }

    #[test]
    fn history_is_sixty_seconds_oldest_first() {
        let mut s = Series::<1>::default();
        s.add(T + 1, [4]);
        s.add(T + 59, [7]);
        let h = s.history(0, T + 60);
        assert_eq!((h.len(), h[1], h[59], h.iter().sum::<u32>()), (60, 4, 7, 11));
    }
}
