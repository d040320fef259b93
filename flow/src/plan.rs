//! Which flows of a history a `GetFlows` request asks for: Hubble's
//! `number`, `first`, `follow`, `since` and `until`, decided once for every
//! server of the request — an observer walking its store, a relay merging
//! its nodes' answers, the CLI reading `--input-file`. Pure: the caller owns
//! the history and says how to read a time and whether a flow matches.

use std::collections::VecDeque;

use lumen_proto::observer::GetFlowsRequest;

use crate::request::{timestamp_ns, RequestError};

/// A request's window, checked. Times are wall-clock ns since the epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub number: u64,
    pub first: bool,
    pub follow: bool,
    pub since: Option<u64>,
    pub until: Option<u64>,
}

/// How many of the flows in the time window go out, and from which end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    All,
    /// The oldest `n` (`--first n`).
    First(u64),
    /// The newest `n` (`--last n`).
    Last(u64),
}

/// Where a history read newest first should start reading forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start<T> {
    /// At the oldest flow held.
    Oldest,
    /// After the newest flow: only flows still to come.
    Next,
    At(T),
    /// Just after this flow (the newest before `since`).
    After(T),
}

/// What to do with a flow read forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Send,
    Skip,
    /// The request is answered: stop reading.
    End,
}

impl Plan {
    /// The window of `req`; `first` with `follow` and bad timestamps are refused.
    pub fn new(req: &GetFlowsRequest) -> Result<Plan, RequestError> {
        if req.first && req.follow {
            return Err(RequestError::FirstWithFollow);
        }
        Ok(Plan {
            number: req.number,
            first: req.first,
            follow: req.follow,
            since: req.since.as_ref().map(|t| timestamp_ns("since", t)).transpose()?,
            until: req.until.as_ref().map(|t| timestamp_ns("until", t)).transpose()?,
        })
    }

    /// A `number` of 0 is every flow (Hubble's).
    pub fn take(&self) -> Take {
        match (self.number, self.first) {
            (0, _) => Take::All,
            (n, true) => Take::First(n),
            (n, false) => Take::Last(n),
        }
    }

    /// Whether a flow at `ts` is before `since` (inclusive bounds).
    pub fn before(&self, ts: u64) -> bool {
        self.since.is_some_and(|s| ts < s)
    }

    /// Whether a flow at `ts` is after `until`.
    pub fn after(&self, ts: u64) -> bool {
        self.until.is_some_and(|u| ts > u)
    }

    /// Where to start in a history walked back from its newest flow: `since`
    /// takes precedence over `number`, which counts only matching flows.
    pub fn start<T>(
        &self,
        newest_first: impl IntoIterator<Item = T>,
        time: impl Fn(&T) -> u64,
        mut matches: impl FnMut(&T) -> bool,
    ) -> Start<T> {
        if self.first && self.since.is_none() {
            return Start::Oldest;
        }
        if self.follow && self.number == 0 && self.since.is_none() {
            return Start::Next;
        }
        let mut count = 0;
        for f in newest_first {
            if self.since.is_some() {
                if self.before(time(&f)) {
                    return Start::After(f);
                }
            } else if matches(&f) {
                count += 1;
                if count == self.number {
                    return Start::At(f);
                }
            }
        }
        Start::Oldest
    }

    /// Whether a flow at `ts` read forward goes out; `sent` flows went out
    /// before. `matches` is asked only when the window leaves it open.
    pub fn admit(&self, sent: u64, ts: u64, matches: impl FnOnce() -> bool) -> Admit {
        if (!self.follow && self.number > 0 && sent >= self.number) || self.after(ts) {
            Admit::End
        } else if self.before(ts) || !matches() {
            Admit::Skip
        } else {
            Admit::Send
        }
    }
}

/// What a forward-only reader (a merge of nodes, a file) keeps of the
/// responses it passes on: the first `n`, the last `n`, or all.
#[derive(Debug)]
pub struct Keep<T> {
    take: Take,
    kept: VecDeque<T>,
    offered: u64,
}

impl<T> Keep<T> {
    pub fn new(take: Take) -> Keep<T> {
        Keep {
            take,
            kept: VecDeque::new(),
            offered: 0,
        }
    }

    /// Keeps `item`; false once the first `n` are in (read no further).
    pub fn offer(&mut self, item: T) -> bool {
        self.offered += 1;
        if let Take::Last(n) = self.take {
            if self.kept.len() as u64 >= n {
                self.kept.pop_front();
            }
        }
        self.kept.push_back(item);
        !matches!(self.take, Take::First(n) if self.offered >= n)
    }

    /// What is kept, oldest first.
    pub fn into_kept(self) -> VecDeque<T> {
        self.kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(number: u64, first: bool, follow: bool) -> Plan {
        Plan {
            number,
            first,
            follow,
            ..Default::default()
        }
    }

    /// Flows at 10, 20, … ns; the start and what goes out, read forward.
    fn select(p: &Plan, n: u64, matches: impl Fn(&u64) -> bool) -> Vec<u64> {
        let held: Vec<u64> = (1..=n).map(|i| i * 10).collect();
        let from = match p.start(held.iter().rev().copied(), |t| *t, &matches) {
            Start::Oldest => 0,
            Start::Next => held.len(),
            Start::At(t) => held.iter().position(|h| *h == t).unwrap(),
            Start::After(t) => held.iter().position(|h| *h == t).unwrap() + 1,
        };
        let mut out = Vec::new();
        for t in &held[from..] {
            match p.admit(out.len() as u64, *t, || matches(t)) {
                Admit::End => break,
                Admit::Skip => {}
                Admit::Send => out.push(*t),
            }
        }
        out
    }

    #[test]
    fn first_last_since_until() {
        assert_eq!(select(&plan(3, false, false), 10, |_| true), [80, 90, 100]);
        assert_eq!(select(&plan(2, true, false), 10, |_| true), [10, 20]);
        assert_eq!(select(&plan(2, false, false), 10, |t| t % 20 == 10), [70, 90]);
        let mut p = plan(2, false, false);
        p.since = Some(45);
        assert_eq!(select(&p, 10, |_| true), [50, 60]);
        p.number = 0;
        p.until = Some(70);
        assert_eq!(select(&p, 10, |_| true), [50, 60, 70]);
        assert_eq!(plan(0, false, true).start([3u64], |t| *t, |_| true), Start::Next);
    }

    #[test]
    fn keep_holds_the_first_or_the_last() {
        let run = |take| {
            let mut k = Keep::new(take);
            for i in 1..=5 {
                if !k.offer(i) {
                    break;
                }
            }
            Vec::from(k.into_kept())
        };
        assert_eq!(run(Take::First(2)), [1, 2]);
        assert_eq!(run(Take::Last(2)), [4, 5]);
        assert_eq!(run(Take::All), [1, 2, 3, 4, 5]);
    }
}
