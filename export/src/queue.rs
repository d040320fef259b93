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

/// A flow built when an exporter first needs it, at most once.
pub struct LazyFlow<'b> {
    built: Option<Arc<Flow>>,
    build: Option<Box<dyn FnOnce() -> Arc<Flow> + 'b>>,
}

impl<'b> LazyFlow<'b> {
    pub fn new(build: impl FnOnce() -> Arc<Flow> + 'b) -> LazyFlow<'b> {
        LazyFlow {
            built: None,
            build: Some(Box::new(build)),
        }
    }

    pub fn built(flow: Arc<Flow>) -> LazyFlow<'b> {
        LazyFlow {
            built: Some(flow),
            build: None,
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
        let worker = std::thread::Builder::new().name(format!("export-{name}")).spawn({
            let counters = counters.clone();
            let clock = clock.clone();
            let queued = queued.clone();
            move || {
                crate::lower_priority();
                run(receiver, sink, &counters, &queued, &clock)
            }
        })?;
        Ok(Exporter {
            name: name.to_string(),
            admission,
            clock,
            sender,
            capacity,
            queued,
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

    /// Drops a flow for a full queue without looking at it, if its queue is
    /// full and no filter or end would decide first; true if it did (and
    /// counted it). A caller need not build a flow this drops.
    pub fn drop_if_full(&self) -> bool {
        let full = self.admission.filters.is_empty()
            && self.admission.end.is_none()
            && self.queued.load(Ordering::Relaxed) >= self.capacity;
        if full {
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

fn run(
    receiver: mpsc::Receiver<Record>,
    mut sink: Box<dyn Sink>,
    counters: &Counters,
    queued: &AtomicUsize,
    clock: &Clock,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let wait = sink
            .next_tick()
            .map_or(IDLE, |t| t.duration_since(clock()).unwrap_or_default().min(IDLE));
        match receiver.recv_timeout(wait) {
            Ok(record) => {
                batch.push(record);
                batch.extend(receiver.try_iter().take(BATCH - 1));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                counters.count(sink.close(clock()));
                return;
            }
        }
        if !batch.is_empty() {
            queued.fetch_sub(batch.len(), Ordering::Relaxed);
            counters.count(sink.write(&batch, clock()));
            batch.clear();
        }
        if sink.next_tick().is_some_and(|t| clock() >= t) {
            counters.count(sink.tick(clock()));
        }
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
