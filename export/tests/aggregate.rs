//! Aggregated flow logs, with the time set by the test.

mod support;

use std::sync::Arc;

use lumen_export::{FlowLogConfig, FlowLogSink, Record, Sink};
use lumen_proto::flow::TrafficDirection;
use support::*;

#[test]
fn one_record_per_combination_every_interval() {
    let dir = tempfile::tempdir().unwrap();
    let config = FlowLogConfig {
        field_aggregate: vec![
            "source.namespace".into(),
            "destination.pod_name".into(),
            "verdict".into(),
            "drop_reason_desc".into(),
        ],
        aggregation_interval: std::time::Duration::from_secs(30),
        ..FlowLogConfig::new("agg", dir.path().join("agg.log"))
    };
    let mut sink = FlowLogSink::new(&config, config.compile().unwrap(), "node-a", at(0));
    let reply = lumen_proto::flow::Flow {
        traffic_direction: TrafficDirection::Ingress as i32,
        ..forwarded(3)
    };
    let unknown = lumen_proto::flow::Flow {
        traffic_direction: TrafficDirection::Unknown as i32,
        ..dropped(4)
    };
    let records: Vec<Record> = [forwarded(1), dropped(2), forwarded(2), reply, dropped(3), unknown]
        .into_iter()
        .map(|f| Record::Flow(Arc::new(f)))
        .collect();
    assert_eq!(sink.write(&records, at(5)).written, 0);
    assert_eq!(sink.next_tick(), Some(at(30)));
    let read = || std::fs::read_to_string(dir.path().join("agg.log")).unwrap_or_default();
    assert_eq!(sink.tick(at(29)).written, 0);
    assert_eq!(read(), "");

    assert_eq!(sink.tick(at(30)).written, 2);
    let first = concat!(
        r#"{"flow":{"verdict":"FORWARDED","source":{"namespace":"default"},"destination":{"pod_name":"server"},"aggregate":{"ingress_flow_count":1,"egress_flow_count":2}},"node_name":"node-a","time":"2024-01-01T10:00:30Z"}"#,
        "\n",
        r#"{"flow":{"verdict":"DROPPED","source":{"namespace":"other"},"destination":{"pod_name":"server"},"drop_reason_desc":"POLICY_DENIED","aggregate":{"ingress_flow_count":2,"unknown_direction_flow_count":1}},"node_name":"node-a","time":"2024-01-01T10:00:30Z"}"#,
        "\n"
    );
    assert_eq!(read(), first);
    assert_eq!(sink.next_tick(), Some(at(60)));

    // An interval without flows writes nothing; what is counted when the
    // flow log stops is written then.
    assert_eq!(sink.tick(at(60)).written, 0);
    sink.write(&[Record::Flow(Arc::new(dropped(70)))], at(70));
    assert_eq!(sink.close(at(75)).written, 1);
    assert_eq!(
        read(),
        format!(
            "{first}{}\n",
            r#"{"flow":{"verdict":"DROPPED","source":{"namespace":"other"},"destination":{"pod_name":"server"},"drop_reason_desc":"POLICY_DENIED","aggregate":{"ingress_flow_count":1}},"node_name":"node-a","time":"2024-01-01T10:01:15Z"}"#
        )
    );
}
