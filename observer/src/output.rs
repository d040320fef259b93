//! The output stage of the foundation: events as JSON lines, enriched with
//! the names the observer knows (endpoints, rules). The Hubble flow
//! pipeline replaces this stage; the record fields follow Hubble's words.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::decode::{self, DatapathEvent};

/// What the enrich step can name: endpoints by IP, rules by id.
#[derive(Clone, Debug, Default)]
pub struct Names {
    pub endpoints_by_ip: HashMap<IpAddr, String>,
    pub rules: HashMap<u32, String>,
}

pub type SharedNames = Arc<RwLock<Names>>;

const BATCH: usize = 64 << 10;

#[derive(Serialize)]
struct FlowRecord<'a> {
    kind: &'static str,
    time: String,
    node: &'a str,
    #[serde(flatten)]
    event: &'a DatapathEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_endpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination_endpoint: Option<&'a str>,
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

/// Converts datapath timestamps (CLOCK_MONOTONIC) to wall-clock time.
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
    names: SharedNames,
}

impl JsonLines {
    pub fn new(out: Box<dyn Write + Send>, node: String, names: SharedNames) -> Self {
        JsonLines {
            out,
            buf: Vec::with_capacity(BATCH),
            node,
            names,
        }
    }

    pub fn flow(&mut self, clock: &Clock, ev: &DatapathEvent) -> io::Result<()> {
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        let record = FlowRecord {
            kind: "flow",
            time: rfc3339(clock.wall(ev.monotonic_ns)),
            node: &self.node,
            event: ev,
            source_endpoint: names.endpoints_by_ip.get(&ev.source).map(String::as_str),
            destination_endpoint: names.endpoints_by_ip.get(&ev.destination).map(String::as_str),
            rule: names.rules.get(&ev.rule_id).map(String::as_str),
            drop_reason_desc: decode::drop_reason_name(ev.drop_reason),
            tcp_flag_names: decode::tcp_flag_names(ev.tcp_flags),
        };
        serde_json::to_writer(&mut self.buf, &record)?;
        drop(names);
        self.end_line()
    }

    pub fn lost(&mut self, count: u64) -> io::Result<()> {
        let record = LostRecord {
            kind: "lost",
            time: rfc3339(SystemTime::now()),
            node: &self.node,
            source: "PERF_EVENT_RING_BUFFER",
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
}
