//! The flow log sink: each record as a line (masked), or the aggregated
//! records every interval, into a [`RotatingFile`].

use std::time::SystemTime;

use lumen_flow::mask::FlowMask;

use crate::aggregate::Aggregator;
use crate::config::{Compiled, FlowLogConfig};
use crate::line;
use crate::queue::{Outcome, Record, Sink};
use crate::rotate::{RotatingFile, Tally};

pub struct FlowLogSink {
    node_name: String,
    mask: Option<FlowMask>,
    aggregator: Option<Aggregator>,
    file: RotatingFile,
    line: Vec<u8>,
}

impl FlowLogSink {
    /// The sink of `config`, compiled as `compiled`; an aggregation
    /// interval starts at `now`.
    pub fn new(config: &FlowLogConfig, compiled: Compiled, node_name: &str, now: SystemTime) -> FlowLogSink {
        FlowLogSink {
            node_name: node_name.to_string(),
            mask: compiled.field_mask,
            aggregator: compiled
                .aggregate
                .map(|fields| Aggregator::new(fields, config.aggregation_interval, now)),
            file: RotatingFile::new(
                &config.file_path,
                config.file_max_bytes,
                config.file_max_backups,
                config.file_compress,
            ),
            line: Vec::with_capacity(1024),
        }
    }

    fn append(&mut self, encoded: Result<(), lumen_flow::format::FormatError>, tally: &mut Tally) {
        match encoded {
            Ok(()) => self.file.append(&self.line, tally),
            Err(e) => {
                tally.failed += 1;
                tally.error = Some(e.to_string());
            }
        }
        self.line.clear();
    }

    fn write_aggregates(&mut self, due_only: bool, now: SystemTime) -> Outcome {
        let Some(aggregator) = self.aggregator.as_mut() else {
            return Outcome::default();
        };
        let records = match due_only {
            true => aggregator.take_if_due(now, &self.node_name).unwrap_or_default(),
            false => aggregator.take(now, &self.node_name),
        };
        let mut tally = Tally::default();
        for record in records {
            let encoded = line::response(record, &mut self.line);
            self.append(encoded, &mut tally);
        }
        self.file.flush(&mut tally);
        outcome(tally)
    }
}

fn outcome(tally: Tally) -> Outcome {
    Outcome {
        written: tally.written,
        failed: tally.failed,
        error: tally.error,
    }
}

impl Sink for FlowLogSink {
    fn write(&mut self, records: &[Record], _now: SystemTime) -> Outcome {
        let mut tally = Tally::default();
        for record in records {
            let written = match record {
                Record::Flow(flow) => match self.aggregator.as_mut() {
                    Some(aggregator) => {
                        aggregator.add(flow);
                        continue;
                    }
                    // Written in place among the lines collected.
                    None => {
                        let (mask, node_name) = (self.mask.as_ref(), self.node_name.as_str());
                        self.file
                            .append_with(&mut tally, |out| line::flow(flow, mask, node_name, out))
                    }
                },
                Record::Lost { event, time } => {
                    let encoded = line::lost(event, &self.node_name, *time, &mut self.line);
                    self.append(encoded, &mut tally);
                    continue;
                }
            };
            if let Err(e) = written {
                tally.failed += 1;
                tally.error = Some(e.to_string());
            }
        }
        self.file.flush(&mut tally);
        outcome(tally)
    }

    fn next_tick(&self) -> Option<SystemTime> {
        self.aggregator.as_ref().map(Aggregator::next)
    }

    fn tick(&mut self, now: SystemTime) -> Outcome {
        self.write_aggregates(true, now)
    }

    fn close(&mut self, now: SystemTime) -> Outcome {
        self.write_aggregates(false, now)
    }
}
