use std::sync::mpsc::Receiver;

use lumen_proto::flow::Verdict;

use super::*;

/// A sink that tells when a write starts and then waits to be let go.
struct Blocked {
    started: SyncSender<usize>,
    release: Receiver<()>,
}

impl Sink for Blocked {
    fn write(&mut self, records: &[Record], _now: SystemTime) -> Outcome {
        self.started.send(records.len()).unwrap();
        self.release.recv().unwrap();
        Outcome {
            written: records.len() as u64,
            ..Default::default()
        }
    }
}

fn flow(verdict: Verdict) -> Record {
    Record::Flow(Arc::new(Flow {
        verdict: verdict as i32,
        ..Default::default()
    }))
}

/// A filter set that exports every flow but drops (a denylist).
fn drops_denied() -> FlowFilterSet {
    lumen_flow::compile(
        &[],
        &[lumen_proto::flow::FlowFilter {
            verdict: vec![Verdict::Dropped as i32],
            ..Default::default()
        }],
    )
    .unwrap()
}

fn spawn(capacity: usize, admission: Admission) -> (Exporter, Receiver<usize>, SyncSender<()>) {
    let (started, writes) = mpsc::sync_channel(16);
    let (release, released) = mpsc::sync_channel(16);
    let sink = Blocked {
        started,
        release: released,
    };
    let exporter = Exporter::spawn(
        "test",
        capacity,
        admission,
        Box::new(sink),
        Arc::default(),
        system_clock(),
    )
    .unwrap();
    (exporter, writes, release)
}

#[test]
fn beyond_the_queue_records_are_dropped_and_counted() {
    let (exporter, writes, release) = spawn(4, Admission::default());
    assert!(exporter.offer(flow(Verdict::Forwarded)));
    // The thread holds the first record in a write that does not return…
    assert_eq!(writes.recv().unwrap(), 1);
    // …so 4 more fill the queue and the next 3 find it full.
    let taken: Vec<bool> = (0..7).map(|_| exporter.offer(flow(Verdict::Forwarded))).collect();
    assert_eq!(taken, [true, true, true, true, false, false, false]);
    let stats = exporter.counters().snapshot("test");
    assert_eq!(stats.dropped(DropReason::QueueFull), 3);
    assert_eq!(stats.exported, 0);

    release.send(()).unwrap();
    assert_eq!(writes.recv().unwrap(), 4);
    release.send(()).unwrap();
    let counters = exporter.counters().clone();
    exporter.stop();
    assert_eq!(
        counters.snapshot("test"),
        ExporterStats {
            name: "test".into(),
            exported: 5,
            dropped_queue_full: 3,
            ..Default::default()
        }
    );
}

/// Flows a full queue would drop are dropped (and counted) without being
/// built, unless a filter must look at them first.
#[test]
fn a_full_queue_drops_flows_unbuilt_and_counts_them() {
    let (exporter, writes, release) = spawn(2, Admission::default());
    let built = std::cell::Cell::new(0);
    let offer = |exporter: &Exporter| {
        let mut lazy = LazyFlow::new(|| {
            built.set(built.get() + 1);
            Arc::new(Flow::default())
        });
        if !exporter.drop_if_full() {
            exporter.offer(Record::Flow(lazy.get().clone()));
        }
        lazy.is_built()
    };
    assert!(offer(&exporter));
    // The thread holds the first in a write; two more fill the queue.
    assert_eq!(writes.recv().unwrap(), 1);
    assert!(offer(&exporter) && offer(&exporter));
    assert!(!offer(&exporter) && !offer(&exporter));
    assert_eq!(built.get(), 3);
    assert_eq!(exporter.counters().snapshot("test").dropped(DropReason::QueueFull), 2);
    release.send(()).unwrap();
    assert_eq!(writes.recv().unwrap(), 2);
    release.send(()).unwrap();
    let counters = exporter.counters().clone();
    exporter.stop();
    assert_eq!(counters.snapshot("test").exported, 3);

    // With a filter, a flow is looked at even when the queue is full.
    let filters = drops_denied();
    let (exporter, writes, release) = spawn(1, Admission { filters, end: None });
    assert!(exporter.offer(flow(Verdict::Forwarded)));
    assert_eq!(writes.recv().unwrap(), 1);
    assert!(exporter.offer(flow(Verdict::Forwarded)));
    assert!(!exporter.drop_if_full(), "the filter decides first");
    assert!(exporter.offer(flow(Verdict::Dropped)), "filtered out: not a drop");
    assert!(!exporter.offer(flow(Verdict::Forwarded)));
    release.send(()).unwrap();
    assert_eq!(writes.recv().unwrap(), 1);
    release.send(()).unwrap();
    let counters = exporter.counters().clone();
    exporter.stop();
    assert_eq!(counters.snapshot("test").dropped(DropReason::QueueFull), 1);
}

#[test]
fn filtered_and_ended_records_are_not_drops() {
    let filters = drops_denied();
    let (exporter, writes, release) = spawn(1, Admission { filters, end: None });
    for _ in 0..5 {
        assert!(exporter.offer(flow(Verdict::Dropped)));
    }
    assert!(exporter.offer(flow(Verdict::Forwarded)));
    assert_eq!(writes.recv().unwrap(), 1);
    release.send(()).unwrap();
    let counters = exporter.counters().clone();
    exporter.stop();
    assert_eq!(counters.snapshot("test").exported, 1);
    assert_eq!(counters.snapshot("test").dropped_queue_full, 0);

    let ended = Admission {
        filters: FlowFilterSet::default(),
        end: Some(SystemTime::now() - Duration::from_secs(1)),
    };
    let (exporter, _writes, _release) = spawn(1, ended);
    for _ in 0..3 {
        assert!(exporter.offer(flow(Verdict::Forwarded)));
    }
    let counters = exporter.counters().clone();
    exporter.stop();
    assert_eq!(
        counters.snapshot("test"),
        ExporterStats {
            name: "test".into(),
            ..Default::default()
        }
    );
}

#[test]
fn drop_reasons_are_the_metric_labels() {
    let labels: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels, ["queue_full", "write_error"]);
}

/// A sink that reports the nice value of the thread it writes on.
struct Niceness(SyncSender<i32>);

impl Sink for Niceness {
    fn write(&mut self, records: &[Record], _now: SystemTime) -> Outcome {
        // SAFETY: getpriority reads the calling thread's nice value.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        self.0.send(nice).unwrap();
        Outcome {
            written: records.len() as u64,
            ..Default::default()
        }
    }
}

#[test]
fn an_exporter_writes_at_a_lower_priority_than_the_pipeline() {
    let (nice, told) = mpsc::sync_channel(4);
    let exporter = Exporter::spawn(
        "test",
        4,
        Admission::default(),
        Box::new(Niceness(nice)),
        Arc::default(),
        system_clock(),
    )
    .unwrap();
    assert!(exporter.offer(flow(Verdict::Forwarded)));
    // SAFETY: as above, for the test's own thread.
    let own = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
    assert_eq!(told.recv().unwrap(), (own + crate::NICE).min(19));
    exporter.stop();
}

/// A sink that holds its first write until let go, and reports the loss
/// notices of every write.
struct Losses {
    held: Option<Receiver<()>>,
    seen: SyncSender<Vec<(i32, u64)>>,
}

impl Sink for Losses {
    fn write(&mut self, records: &[Record], _now: SystemTime) -> Outcome {
        if let Some(held) = self.held.take() {
            held.recv().unwrap();
        }
        let lost = records
            .iter()
            .filter_map(|r| match r {
                Record::Lost { event, .. } => Some((event.source, event.num_events_lost)),
                Record::Flow(_) => None,
            })
            .collect();
        self.seen.send(lost).unwrap();
        Outcome {
            written: records.len() as u64,
            ..Default::default()
        }
    }
}

#[test]
fn loss_notices_that_find_the_queue_full_are_merged_never_dropped() {
    use lumen_proto::flow::{LostEvent, LostEventSource};
    let (release, held) = mpsc::sync_channel(1);
    let (seen, writes) = mpsc::sync_channel(16);
    let sink = Losses { held: Some(held), seen };
    let exporter = Exporter::spawn(
        "test",
        1,
        Admission::default(),
        Box::new(sink),
        Arc::default(),
        system_clock(),
    )
    .unwrap();
    let lost = |source: LostEventSource, n: u64| Record::Lost {
        event: LostEvent {
            source: source as i32,
            num_events_lost: n,
            ..Default::default()
        },
        time: SystemTime::now(),
    };
    assert!(exporter.offer(flow(Verdict::Forwarded)));
    // The first write is held; one flow fills the queue.
    while exporter.queued.load(Ordering::Relaxed) > 0 {
        std::thread::yield_now();
    }
    assert!(exporter.offer(flow(Verdict::Forwarded)));
    assert!(!exporter.offer(flow(Verdict::Forwarded)));
    let kernel = LostEventSource::PerfEventRingBuffer as i32;
    let store = LostEventSource::HubbleRingBuffer as i32;
    assert!(exporter.offer(lost(LostEventSource::PerfEventRingBuffer, 5)));
    assert!(exporter.offer(lost(LostEventSource::HubbleRingBuffer, 1)));
    assert!(exporter.offer(lost(LostEventSource::PerfEventRingBuffer, 7)));
    release.send(()).unwrap();
    assert_eq!(writes.recv().unwrap(), []);
    assert_eq!(writes.recv().unwrap(), [(kernel, 12), (store, 1)]);
    let counters = exporter.counters().clone();
    exporter.stop();
    let stats = counters.snapshot("test");
    assert_eq!((stats.exported, stats.dropped(DropReason::QueueFull)), (4, 1));
}
