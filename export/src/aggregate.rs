//! Aggregated flow logs: flows folded, for one interval, into one record per
//! distinct combination of chosen fields, counted by traffic direction.
//! Pure: the time is passed in.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use lumen_flow::mask::FlowMask;
use lumen_proto::flow::{Aggregate, Flow, TrafficDirection};
use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use prost::Message;

use crate::line::timestamp;

#[derive(Debug)]
pub struct Aggregator {
    fields: FlowMask,
    interval: Duration,
    /// When the current interval ends.
    next: SystemTime,
    /// Index in `groups` by the encoded fields.
    index: HashMap<Vec<u8>, usize>,
    /// In the order first seen, so that records come out in a stable order.
    groups: Vec<(Flow, Aggregate)>,
}

impl Aggregator {
    /// Aggregates on `fields`; the first interval starts at `start`.
    pub fn new(fields: FlowMask, interval: Duration, start: SystemTime) -> Aggregator {
        Aggregator {
            fields,
            interval,
            next: start + interval,
            index: HashMap::new(),
            groups: Vec::new(),
        }
    }

    /// When the current interval ends.
    pub fn next(&self) -> SystemTime {
        self.next
    }

    /// Counts `flow` in the group of its fields' values.
    pub fn add(&mut self, flow: &Flow) {
        let fields = self.fields.apply(flow);
        let key = fields.encode_to_vec();
        let i = match self.index.get(&key) {
            Some(i) => *i,
            None => {
                self.index.insert(key, self.groups.len());
                self.groups.push((fields, Aggregate::default()));
                self.groups.len() - 1
            }
        };
        let counts = &mut self.groups[i].1;
        match TrafficDirection::try_from(flow.traffic_direction) {
            Ok(TrafficDirection::Ingress) => counts.ingress_flow_count = counts.ingress_flow_count.saturating_add(1),
            Ok(TrafficDirection::Egress) => counts.egress_flow_count = counts.egress_flow_count.saturating_add(1),
            _ => counts.unknown_direction_flow_count = counts.unknown_direction_flow_count.saturating_add(1),
        }
    }

    /// The records of the interval, if it ended by `now`, and a new
    /// interval from `now`. Each is a flow with the chosen fields and
    /// `aggregate` set, at `now`, from `node_name`.
    pub fn take_if_due(&mut self, now: SystemTime, node_name: &str) -> Option<Vec<GetFlowsResponse>> {
        if now < self.next {
            return None;
        }
        self.next = now + self.interval;
        Some(self.take(now, node_name))
    }

    /// The records counted so far (when the flow log stops).
    pub fn take(&mut self, now: SystemTime, node_name: &str) -> Vec<GetFlowsResponse> {
        self.index.clear();
        self.groups
            .drain(..)
            .map(|(flow, aggregate)| GetFlowsResponse {
                node_name: node_name.to_string(),
                time: Some(timestamp(now)),
                response_types: Some(ResponseTypes::Flow(Flow {
                    aggregate: Some(aggregate),
                    ..flow
                })),
            })
            .collect()
    }
}
