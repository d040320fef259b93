//! The JSON-lines event output (`--events-output`): a consumer of the hub's
//! stream like any other, off unless asked for. Each stored record is
//! written with the names it arrived under (endpoints, rules) in the record
//! fields of the foundation, which follow Hubble's words; kernel losses and
//! flows this output itself fell behind on are `lost` lines in stream order.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::decode::{self, DatapathEvent};
use crate::hub::{Notice, Subscription};
use crate::parser::Snapshot;
use crate::store::StoredFlow;

const BATCH: usize = 64 << 10;

#[derive(Serialize)]
struct FlowRecord<'a> {
    kind: &'static str,
    time: String,
    node: &'a str,
    #[serde(flatten)]
    event: &'a DatapathEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination_endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    drop_reason_desc: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tcp_flag_names: Vec<&'static str>,
}

#[derive(Serialize)]
struct LostRecord<'a> {
    kind: &'static str,
    time: String,
    node: &'a str,
    /// Hubble's LostEventSource name.
    source: &'static str,
    count: u64,
}

/// Converts between datapath timestamps (CLOCK_MONOTONIC) and wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    wall: SystemTime,
    mono_ns: u64,
}

impl Clock {
    pub fn now() -> Clock {
        Clock {
            wall: SystemTime::now(),
            mono_ns: crate::counters::monotonic_ns(),
        }
    }

    pub fn wall(&self, mono_ns: u64) -> SystemTime {
        if mono_ns <= self.mono_ns {
            self.wall - Duration::from_nanos(self.mono_ns - mono_ns)
        } else {
            self.wall + Duration::from_nanos(mono_ns - self.mono_ns)
        }
    }

    /// The monotonic time of a wall-clock time (the inverse of [`Clock::wall`]).
    pub fn mono_ns(&self, wall: SystemTime) -> u64 {
        match wall.duration_since(self.wall) {
            Ok(after) => self.mono_ns.saturating_add(after.as_nanos() as u64),
            Err(e) => self.mono_ns.saturating_sub(e.duration().as_nanos() as u64),
        }
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Writes JSON lines; a write error (reader gone) is returned to the caller.
/// Lines are written whole, a batch per `write`, so a reader of the file
/// never sees half a line, even if the observer is killed.
pub struct JsonLines {
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
    node: String,
}

impl JsonLines {
    pub fn new(out: Box<dyn Write + Send>, node: String) -> Self {
        JsonLines {
            out,
            buf: Vec::with_capacity(BATCH),
            node,
        }
    }

    /// A stored flow (its time is wall-clock; `clock` gives back the
    /// datapath's monotonic time) with the packet bytes captured with it.
    pub fn flow(&mut self, clock: &Clock, f: &StoredFlow, capture: &[u8], names: &Snapshot) -> io::Result<()> {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_nanos(f.event.timestamp_ns);
        let mut ev = decode::event(&f.event, capture);
        ev.monotonic_ns = clock.mono_ns(wall);
        let endpoint = |ip| {
            names
                .endpoints
                .get(ip)
                .map(|m| format!("{}/{}", m.namespace, m.pod_name))
        };
        let record = FlowRecord {
            kind: "flow",
            time: rfc3339(wall),
            node: &self.node,
            event: &ev,
            source_endpoint: endpoint(&ev.source),
            destination_endpoint: endpoint(&ev.destination),
            rule: names.rules.get(&ev.rule_id).map(|r| r.name.as_str()),
            drop_reason_desc: decode::drop_reason_name(ev.drop_reason),
            tcp_flag_names: decode::tcp_flag_names(ev.tcp_flags),
        };
        serde_json::to_writer(&mut self.buf, &record)?;
        self.end_line()
    }

    /// `source` is Hubble's LostEventSource name.
    pub fn lost(&mut self, source: &'static str, count: u64) -> io::Result<()> {
        let record = LostRecord {
            kind: "lost",
            time: rfc3339(SystemTime::now()),
            node: &self.node,
            source,
            count,
        };
        serde_json::to_writer(&mut self.buf, &record)?;
        self.end_line()
    }

    fn end_line(&mut self) -> io::Result<()> {
        self.buf.push(b'\n');
        if self.buf.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.out.flush()
    }

    /// Writes everything `sub` reads until it ends (the hub closes when the
    /// reader has stored its last records), flushing after each batch.
    pub async fn run(mut self, mut sub: Subscription) -> io::Result<()> {
        let mut notices = Vec::new();
        while sub.next(&mut notices).await {
            let clock = Clock::now();
            for n in notices.drain(..) {
                match n {
                    Notice::Flow(f) => self.flow(&clock, &f, &sub.capture(&f), &sub.snapshot(&f))?,
                    Notice::KernelLost(count) => self.lost("PERF_EVENT_RING_BUFFER", count)?,
                    Notice::Missed(count) => {
                        sub.hub().output_lost(count);
                        self.lost("HUBBLE_RING_BUFFER", count)?
                    }
                }
            }
            self.flush()?;
        }
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use lumen_probes::abi;

    use super::*;
    use crate::hub::Hub;
    use crate::parser::EndpointMeta;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writes_flows_with_names_captures_and_losses_in_stream_order() {
        let hub = Hub::new("n1", 8);
        let mut names = Snapshot::default();
        let meta = EndpointMeta {
            pod_name: "backend".into(),
            namespace: "default".into(),
            ..Default::default()
        };
        names.endpoints.insert("10.0.0.2".parse().unwrap(), Arc::new(meta));
        hub.publish(names);
        let out = Shared::default();
        let task = tokio::spawn(JsonLines::new(Box::new(out.clone()), "n1".into()).run(hub.follow()));
        let mut ev = abi::Event {
            timestamp_ns: 1_764_000_000_000_000_001,
            family: 4,
            proto: 17,
            dport: 53,
            cap_len: 3,
            ..Default::default()
        };
        ev.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        hub.kernel_lost(4);
        hub.push_captured([(ev, Box::from(&b"abc"[..]))]);
        hub.close();
        task.await.unwrap().unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            (&lines[0]["kind"], &lines[0]["source"], &lines[0]["count"]),
            (&"lost".into(), &"PERF_EVENT_RING_BUFFER".into(), &4.into())
        );
        assert_eq!(lines[1]["kind"], "flow");
        assert_eq!(lines[1]["time"], "2025-11-24T16:00:00.000000001Z");
        assert_eq!(lines[1]["destination_endpoint"], "default/backend");
        assert_eq!(lines[1]["destination_port"], 53);
        assert_eq!(lines[1]["capture"], serde_json::json!([97, 98, 99]));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn flows_the_store_overwrote_before_the_output_wrote_them_are_a_lost_line_and_counted() {
        let hub = Hub::new("n1", 2);
        let sub = hub.follow();
        hub.push((0..5u64).map(|i| abi::Event {
            timestamp_ns: 1_764_000_000_000_000_000 + i,
            family: 4,
            proto: 17,
            ..Default::default()
        }));
        hub.close();
        let out = Shared::default();
        JsonLines::new(Box::new(out.clone()), "n1".into())
            .run(sub)
            .await
            .unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let kinds: Vec<(String, u64)> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| {
                (
                    v["kind"].as_str().unwrap().to_string(),
                    v["count"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let k = |kind: &str, n: u64| (kind.to_string(), n);
        assert_eq!(kinds, [k("lost", 3), k("flow", 0), k("flow", 0)], "{text}");
        let t = hub.telemetry();
        assert_eq!((t.lost_output.get(), t.lost_store.get()), (3, 0));
    }
}
