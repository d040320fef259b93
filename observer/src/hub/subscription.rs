//! A reader of the hub's stream: flows and loss notices from a position, in
//! stream order. Every consumer of flows (GetFlows, the JSON-lines output,
//! metrics and exporters) reads through one, so all of them get the same
//! exact loss accounting: a kernel loss arrives before the first flow
//! stored after it, and a reader the store laps is told exactly how many
//! flows it missed.

use std::sync::Arc;

use lumen_proto::flow::Flow;
use tokio::sync::watch;

use super::Hub;
use crate::parser::{self, Snapshot};
use crate::store::StoredFlow;

/// Flows read out of the store per lock.
const READ_BATCH: usize = 1024;
/// Flows copied out of the store per lock while rewinding.
const REWIND_CHUNK: u64 = 8192;

/// One item of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    Flow(StoredFlow),
    /// Events the kernel ring buffer could not take, here in the stream.
    KernelLost(u64),
    /// Flows this reader missed: the store overwrote them before it read them.
    Missed(u64),
}

/// The flows the store holds when a subscription starts, for choosing where
/// it starts.
pub struct History<'h> {
    hub: &'h Hub,
    /// Sequence number of the oldest flow held.
    pub oldest: u64,
    /// Sequence number the next flow gets.
    pub next: u64,
}

impl History<'_> {
    /// The flows held, newest first, copied out a chunk per lock (flows the
    /// writer overwrites meanwhile are simply not there).
    pub fn newest_first(&self) -> impl Iterator<Item = StoredFlow> + '_ {
        Rewind {
            hub: self.hub,
            hi: self.next,
            oldest: self.oldest,
            buf: Vec::new(),
        }
    }

    /// The hub, to build or name the flows walked.
    pub fn hub(&self) -> &Hub {
        self.hub
    }
}

struct Rewind<'h> {
    hub: &'h Hub,
    hi: u64,
    oldest: u64,
    buf: Vec<StoredFlow>,
}

impl Iterator for Rewind<'_> {
    type Item = StoredFlow;

    fn next(&mut self) -> Option<StoredFlow> {
        if let Some(f) = self.buf.pop() {
            return Some(f);
        }
        if self.hi <= self.oldest {
            return None;
        }
        let lo = self.hi.saturating_sub(REWIND_CHUNK).max(self.oldest);
        let batch = self.hub.store().read(lo, (self.hi - lo) as usize);
        self.hi = lo;
        self.oldest = self.oldest.max(batch.next - batch.flows.len() as u64);
        self.buf = batch.flows;
        self.buf.pop()
    }
}

/// A position in the hub's stream and what this reader has been told.
pub struct Subscription {
    hub: Arc<Hub>,
    cursor: u64,
    /// Where a replay ends; `u64::MAX` while following.
    end: u64,
    /// Id of the next kernel loss to tell.
    next_loss: u64,
    newest: watch::Receiver<u64>,
    kernel: watch::Receiver<u64>,
    done: bool,
    /// The snapshot the last flow built arrived under (most flows in a row
    /// share one), so building does not look it up each time.
    names: std::cell::RefCell<Option<(u32, Arc<Snapshot>)>>,
}

impl Hub {
    /// A subscription starting where `start` chooses in the flows held now;
    /// with `follow` it goes on with every flow stored later, otherwise it
    /// ends with the newest flow held now. The position is fixed before this
    /// returns: a flow stored after it is never missed by a follower.
    pub fn subscribe(self: &Arc<Self>, follow: bool, start: impl FnOnce(&History<'_>) -> u64) -> Subscription {
        let newest = self.newest.subscribe();
        let mut kernel = self.kernel_lost.subscribe();
        kernel.mark_unchanged();
        let (oldest, next) = {
            let store = self.store();
            (store.oldest(), store.next_seq())
        };
        let cursor = start(&History {
            hub: self,
            oldest,
            next,
        });
        let end = if follow { u64::MAX } else { next };
        // A replay starts at a flow: losses before it are outside the window.
        let next_loss = self.first_kernel_loss_at(if cursor < end.min(self.store().next_seq()) {
            cursor + 1
        } else {
            cursor
        });
        Subscription {
            hub: self.clone(),
            cursor,
            end,
            next_loss,
            newest,
            kernel,
            done: false,
            names: Default::default(),
        }
    }

    /// A subscription to every flow and loss from now on.
    pub fn follow(self: &Arc<Self>) -> Subscription {
        self.subscribe(true, |h| h.next)
    }
}

impl Subscription {
    /// Appends the next notices to `out`, in stream order, waiting while
    /// there is nothing new to follow. False once the subscription is over
    /// (its replay read, or [`Subscription::end_here`] reached) and nothing
    /// was added. Cancel-safe: nothing is lost if the future is dropped.
    pub async fn next(&mut self, out: &mut Vec<Notice>) -> bool {
        loop {
            if !self.open() {
                return false;
            }
            let batch = self.hub.store().read(self.cursor, self.max_read());
            self.cursor = batch.next;
            if batch.lost > 0 {
                out.push(Notice::Missed(batch.lost));
            }
            let idle = batch.flows.is_empty();
            for f in batch.flows {
                self.kernel_losses(out, f.seq);
                out.push(Notice::Flow(f));
            }
            self.kernel_losses(out, self.cursor.min(self.end));
            self.after_read(idle, batch.lost);
            if !out.is_empty() {
                return true;
            }
            if !self.wait().await {
                return false;
            }
        }
    }

    /// The next flows handed to `each` in place, in stream order, without a
    /// copy (the store stays locked meanwhile: `each` must be quick), for a
    /// reader that needs no kernel losses (the hub counts those); waits
    /// while there is nothing new. How many flows this reader missed before
    /// them; `None` once the subscription is over. Cancel-safe.
    pub async fn next_in_place(&mut self, mut each: impl FnMut(&StoredFlow)) -> Option<u64> {
        loop {
            if !self.open() {
                return None;
            }
            let start = self.cursor;
            let (lost, next) = self.hub.store().visit(start, self.max_read(), &mut each);
            self.cursor = next;
            let read = next - start - lost;
            self.after_read(read == 0, lost);
            if read > 0 || lost > 0 {
                return Some(lost);
            }
            if !self.wait().await {
                return None;
            }
        }
    }

    /// Whether there may be more to read (a follow that the hub closed ends
    /// with what is stored).
    fn open(&mut self) -> bool {
        if !self.done && self.end == u64::MAX && self.hub.is_closed() {
            self.end_here();
        }
        !self.done
    }

    fn max_read(&self) -> usize {
        READ_BATCH.min(usize::try_from(self.end - self.cursor).unwrap_or(READ_BATCH))
    }

    /// Ends the subscription once it has read to its end, or a replay found
    /// nothing more.
    fn after_read(&mut self, idle: bool, lost: u64) {
        let following = self.end == u64::MAX;
        if self.cursor >= self.end || (!following && idle && lost == 0) {
            self.done = true;
        }
    }

    /// Waits for something new; false if the subscription is over.
    async fn wait(&mut self) -> bool {
        if self.done {
            return false;
        }
        tokio::select! {
            r = self.newest.changed() => if r.is_err() { self.done = true },
            r = self.kernel.changed() => if r.is_err() { self.done = true },
        }
        true
    }

    /// Kernel losses not yet told that precede flow `upto_seq`.
    fn kernel_losses(&mut self, out: &mut Vec<Notice>, upto_seq: u64) {
        for l in self.hub.kernel_losses(self.next_loss, upto_seq) {
            out.push(Notice::KernelLost(l.count));
            self.next_loss = l.id + 1;
        }
    }

    /// Ends a follow with the flows stored so far (on shutdown, once the
    /// reader has stored its last batch).
    pub fn end_here(&mut self) {
        self.end = self.hub.store().next_seq().max(self.cursor);
    }

    /// The packet bytes captured with a stored flow (`--capture-bytes`).
    pub fn capture(&self, f: &StoredFlow) -> Vec<u8> {
        if f.event.cap_len == 0 {
            return Vec::new();
        }
        self.hub.store().capture(f.seq).to_vec()
    }

    /// The enrichment snapshot a stored flow arrived under.
    pub fn snapshot(&self, f: &StoredFlow) -> Arc<Snapshot> {
        let mut names = self.names.borrow_mut();
        match &*names {
            Some((id, s)) if *id == f.names => s.clone(),
            _ => names.insert((f.names, self.hub.snapshot(f.names))).1.clone(),
        }
    }

    /// The Hubble flow of a stored record, for a consumer that changes it.
    pub fn build(&self, f: &StoredFlow) -> Flow {
        parser::to_flow(f, &self.snapshot(f), self.hub.instance())
    }

    /// The Hubble flow of a stored record, built once for every consumer
    /// that reads it while it is recent (followers' filters, metrics,
    /// exporters): what a consumer that only reads the flow should use.
    pub fn flow(&self, f: &StoredFlow) -> Arc<Flow> {
        let newest = self.newest.borrow().saturating_sub(1);
        self.hub.built.get_or_build(f.seq, newest, || self.build(f))
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lumen_probes::abi;

    fn ev(dport: u16) -> abi::Event {
        abi::Event {
            family: 4,
            proto: 6,
            dport,
            ..Default::default()
        }
    }

    fn seen(notices: &[Notice]) -> Vec<(char, u64)> {
        notices
            .iter()
            .map(|n| match n {
                Notice::Flow(f) => ('f', u64::from(f.event.dport)),
                Notice::KernelLost(c) => ('k', *c),
                Notice::Missed(c) => ('m', *c),
            })
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn losses_come_in_stream_order_and_a_follow_can_end_here() {
        let hub = Hub::new("n1", 3);
        hub.push([ev(1)]);
        let mut sub = hub.follow();
        hub.kernel_lost(2);
        hub.push([ev(2)]);
        hub.push((3..=6).map(ev));
        hub.kernel_lost(1);
        let mut out = Vec::new();
        assert!(sub.next(&mut out).await);
        // Flows 2 and 3 were overwritten before this reader read them.
        assert_eq!(seen(&out), [('m', 2), ('f', 4), ('f', 5), ('f', 6), ('k', 1)]);
        sub.end_here();
        out.clear();
        assert!(!sub.next(&mut out).await);
    }
}
