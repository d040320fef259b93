//! An exporter: a bounded queue in front of a [`Sink`] that runs on its own
//! thread. [`Exporter::offer`] never blocks and never allocates: a record
//! the queue has no room for is dropped and counted (`queue_full`), as is
//! one the sink fails to write (`write_error`), so that a slow disk or
//! collector never slows the flow pipeline or the other exporters.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use lumen_flow::FlowFilterSet;
use lumen_proto::flow::{Flow, LostEvent};

/// Records an exporter's queue holds by default.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// Records taken from the queue and handed to the sink at once, at most.
const BATCH: usize = 512;

/// How long the writer thread sleeps at most when idle (and so how late an
/// aggregation interval may end).
const IDLE: Duration = Duration::from_millis(200);
/// Written batches waiting for the offering thread to free them, at most;
/// beyond, the exporter's thread frees them itself.
const GIVEN_BACK: usize = 8;

/// The wall clock, or a test's.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The system's wall clock.
pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// What an exporter exports.
#[derive(Clone, Debug)]
pub enum Record {
    /// A flow, as the observer's hub shares it.
    Flow(Arc<Flow>),
    /// Events lost before they became flows, noticed at `time`.
    Lost { event: LostEvent, time: SystemTime },
}

/// A flow built when an exporter first needs it, at most once (`build`
/// is a closure, not boxed: this is on the path of every flow offered).
pub struct LazyFlow<F> {
    built: Option<Arc<Flow>>,
    build: Option<F>,
}

/// A [`LazyFlow`] built already.
pub type BuiltFlow = LazyFlow<fn() -> Arc<Flow>>;

impl<F: FnOnce() -> Arc<Flow>> LazyFlow<F> {
    pub fn new(build: F) -> LazyFlow<F> {
        LazyFlow {
            built: None,
            build: Some(build),
        }
    }

    pub fn get(&mut self) -> &Arc<Flow> {
        let build = &mut self.build;
        self.built.get_or_insert_with(|| build.take().expect("built once")())
    }

    /// Whether the flow was built (or given).
    pub fn is_built(&self) -> bool {
        self.built.is_some()
    }
}

impl BuiltFlow {
    pub fn built(flow: Arc<Flow>) -> BuiltFlow {
        LazyFlow {
            built: Some(flow),
            build: None,
        }
    }
}

/// What a sink did with the records it was handed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub written: u64,
    /// Records lost to a failed write (counted as `write_error`).
    pub failed: u64,
    /// The last failure, if any.
    pub error: Option<String>,
}

/// Where an exporter's records go; runs on the exporter's thread.
pub trait Sink: Send + 'static {
    /// Writes `records` (after the filters), at `now`.
    fn write(&mut self, records: &[Record], now: SystemTime) -> Outcome;
    /// When [`Sink::tick`] is to be called next, if ever.
    fn next_tick(&self) -> Option<SystemTime> {
        None
    }
    /// Time passed (an aggregation interval ended).
    fn tick(&mut self, _now: SystemTime) -> Outcome {
        Outcome::default()
    }
    /// The exporter stops: writes what it still holds.
    fn close(&mut self, _now: SystemTime) -> Outcome {
        Outcome::default()
    }
    /// Given before the thread starts: set when [`Exporter::stop`] is
    /// called, so that a sink that retries can give up instead of holding
    /// the stop up.
    fn stop_signal(&mut self, _stopping: Arc<AtomicBool>) {}
}

/// Why a record was dropped: the `reason` label of
/// `lumen_exporter_dropped_total{exporter,reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    QueueFull,
    WriteError,
}

impl DropReason {
    pub const ALL: [DropReason; 2] = [DropReason::QueueFull, DropReason::WriteError];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::WriteError => "write_error",
        }
    }
}

/// An exporter's counters, shared by the offering side and its thread.
#[derive(Debug, Default)]
pub struct Counters {
    exported: AtomicU64,
    queue_full: AtomicU64,
    write_error: AtomicU64,
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Counters {
    fn count(&self, outcome: Outcome) {
        self.exported.fetch_add(outcome.written, Ordering::Relaxed);
        self.write_error.fetch_add(outcome.failed, Ordering::Relaxed);
        match outcome.error {
            Some(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "flow export failing: records are dropped until it works again");
                }
                *self.last_error.lock().expect("never poisoned") = Some(error);
            }
            None if outcome.written > 0 && self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!("flow export works again");
            }
            None => {}
        }
    }

    /// A copy of the counters, for `name`.
    pub fn snapshot(&self, name: &str) -> ExporterStats {
        ExporterStats {
            name: name.to_string(),
            exported: self.exported.load(Ordering::Relaxed),
            dropped_queue_full: self.queue_full.load(Ordering::Relaxed),
            dropped_write_error: self.write_error.load(Ordering::Relaxed),
            failing: self.failing.load(Ordering::Relaxed),
            last_error: self.last_error.lock().expect("never poisoned").clone(),
        }
    }
}

/// One exporter's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExporterStats {
    pub name: String,
    /// Records written (lines of a flow log).
    pub exported: u64,
    pub dropped_queue_full: u64,
    pub dropped_write_error: u64,
    /// Whether the last write failed.
    pub failing: bool,
    /// The last failure, kept after writing works again.
    pub last_error: Option<String>,
}

impl ExporterStats {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::QueueFull => self.dropped_queue_full,
            DropReason::WriteError => self.dropped_write_error,
        }
    }
}

/// Which records an exporter takes: flows its filters pass, until its end.
/// Loss notices always pass: a filtered log misses flows too.
#[derive(Debug, Default)]
pub struct Admission {
    pub filters: FlowFilterSet,
    pub end: Option<SystemTime>,
}

/// A running exporter: its queue, its thread and its counters.
pub struct Exporter {
    name: String,
    admission: Admission,
    clock: Clock,
    sender: SyncSender<Record>,
    capacity: usize,
    /// Records in the queue, or about to be (counted before they are sent).
    queued: Arc<AtomicUsize>,
    /// Batches written, handed back to be freed by the offering thread.
    written: Mutex<mpsc::Receiver<Vec<Record>>>,
    /// Batches handed back and not yet freed.
    unfreed: Arc<AtomicUsize>,
    /// Loss notices that found the queue full, merged by source.
    overflow: Arc<Overflow>,
    counters: Arc<Counters>,
    stopping: Arc<AtomicBool>,
    worker: JoinHandle<()>,
}

impl Exporter {
    /// Starts the thread that hands `sink` what [`Exporter::offer`] lets
    /// through, `capacity` records at most waiting.
    pub fn spawn(
        name: &str,
        capacity: usize,
        admission: Admission,
        mut sink: Box<dyn Sink>,
        counters: Arc<Counters>,
        clock: Clock,
    ) -> std::io::Result<Exporter> {
        let stopping = Arc::new(AtomicBool::new(false));
        sink.stop_signal(stopping.clone());
        let (sender, receiver) = mpsc::sync_channel(capacity);
        let queued = Arc::new(AtomicUsize::new(0));
        let (give_back, written) = mpsc::sync_channel(GIVEN_BACK);
        let unfreed = Arc::new(AtomicUsize::new(0));
        let overflow = Arc::new(Overflow::default());
        let worker = std::thread::Builder::new().name(format!("export-{name}")).spawn({
            let queue = Queue {
                records: receiver,
                queued: queued.clone(),
                give_back,
                unfreed: unfreed.clone(),
                overflow: overflow.clone(),
            };
            let counters = counters.clone();
            let clock = clock.clone();
            move || {
                crate::lower_priority();
                run(queue, sink, &counters, &clock)
            }
        })?;
        Ok(Exporter {
            name: name.to_string(),
            admission,
            clock,
            sender,
            capacity,
            queued,
            written: Mutex::new(written),
            unfreed,
            overflow,
            counters,
            stopping,
            worker,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Queues `record` if the exporter takes it; false if it was dropped
    /// because the queue is full. Never blocks.
    pub fn offer(&self, record: Record) -> bool {
        self.free_written();
        if let Record::Flow(flow) = &record {
            if !self.admission.filters.matches(flow) {
                return true;
            }
        }
        if self.admission.end.is_some_and(|end| (self.clock)() >= end) {
            return true;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        let sent = self.sender.try_send(record);
        if sent.is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        match sent {
            Ok(()) => true,
            // A loss notice is not dropped: merged with any others that
            // found the queue full, it goes with the next batch written.
            Err(TrySendError::Full(Record::Lost { event, time })) => {
                self.overflow.add(event, time);
                true
            }
            Err(TrySendError::Full(_)) => {
                self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
                false
            }
            // The thread is gone only if the sink panicked; counted alike.
            Err(TrySendError::Disconnected(_)) => {
                self.counters.write_error.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Frees the records written since, here: the offering thread built
    /// them, and its allocator takes them back far more cheaply than the
    /// exporter's thread would free them (about a quarter of a flow log's
    /// time per flow).
    fn free_written(&self) {
        if self.unfreed.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Ok(written) = self.written.try_lock() {
            for batch in written.try_iter() {
                self.unfreed.fetch_sub(1, Ordering::Relaxed);
                drop(batch);
            }
        }
    }

    /// Drops a flow for a full queue without looking at it, if its queue is
    /// full and no filter or end would decide first; true if it did (and
    /// counted it). A caller need not build a flow this drops.
    pub fn drop_if_full(&self) -> bool {
        let full = self.admission.filters.is_empty()
            && self.admission.end.is_none()
            && self.queued.load(Ordering::Relaxed) >= self.capacity;
        if full {
            // Not offered: what was written is freed here instead.
            self.free_written();
            self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
        }
        full
    }

    /// Writes what is queued, closes the sink and waits for the thread.
    pub fn stop(self) {
        self.stopping.store(true, Ordering::Relaxed);
        drop(self.sender);
        if self.worker.join().is_err() {
            tracing::error!(exporter = self.name, "flow exporter thread panicked");
        }
    }
}

/// Loss notices that found the queue full: one per source, its count the
/// sum, its time the last one's.
#[derive(Debug, Default)]
struct Overflow {
    notices: Mutex<Vec<(LostEvent, SystemTime)>>,
    any: AtomicBool,
}

impl Overflow {
    fn add(&self, event: LostEvent, time: SystemTime) {
        let mut notices = self.notices.lock().expect("never poisoned");
        match notices.iter_mut().find(|(e, _)| e.source == event.source) {
            Some((merged, at)) => {
                merged.num_events_lost += event.num_events_lost;
                *at = time;
            }
            None => notices.push((event, time)),
        }
        self.any.store(true, Ordering::Release);
    }

    /// The merged notices, as records, taken.
    fn take(&self, into: &mut Vec<Record>) {
        if self.any.swap(false, Ordering::Acquire) {
            let notices = std::mem::take(&mut *self.notices.lock().expect("never poisoned"));
            into.extend(notices.into_iter().map(|(event, time)| Record::Lost { event, time }));
        }
    }
}

/// The exporter thread's end of its queue.
struct Queue {
    records: mpsc::Receiver<Record>,
    queued: Arc<AtomicUsize>,
    /// Written batches go back here to be freed by the offering thread.
    give_back: SyncSender<Vec<Record>>,
    unfreed: Arc<AtomicUsize>,
    overflow: Arc<Overflow>,
}

impl Queue {
    /// Hands `batch` back to be freed, or frees it here when the offering
    /// side has not taken the ones before (it offers nothing for now).
    fn give_back(&self, batch: &mut Vec<Record>) {
        let written = std::mem::replace(batch, Vec::with_capacity(BATCH));
        match self.give_back.try_send(written) {
            Ok(()) => {
                self.unfreed.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(mut written) | TrySendError::Disconnected(mut written)) => {
                written.clear();
                *batch = written;
            }
        }
    }
}

fn run(queue: Queue, mut sink: Box<dyn Sink>, counters: &Counters, clock: &Clock) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let wait = sink
            .next_tick()
            .map_or(IDLE, |t| t.duration_since(clock()).unwrap_or_default().min(IDLE));
        match queue.records.recv_timeout(wait) {
            Ok(record) => {
                batch.push(record);
                batch.extend(queue.records.try_iter().take(BATCH - 1));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                queue.overflow.take(&mut batch);
                if !batch.is_empty() {
                    counters.count(sink.write(&batch, clock()));
                }
                counters.count(sink.close(clock()));
                return;
            }
        }
        let from_queue = batch.len();
        queue.overflow.take(&mut batch);
        if !batch.is_empty() {
            queue.queued.fetch_sub(from_queue, Ordering::Relaxed);
            counters.count(sink.write(&batch, clock()));
            queue.give_back(&mut batch);
        }
        if sink.next_tick().is_some_and(|t| clock() >= t) {
            counters.count(sink.tick(clock()));
        }
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
