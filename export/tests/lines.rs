//! Flow log lines as Hubble's exporter writes them, through the filters and
//! field masks, and what a full or unwritable disk costs.

mod support;

use std::sync::Arc;

use lumen_export::{ExporterStats, Exporters, FlowLogConfig};
use lumen_proto::flow::{FlowFilter, LostEvent, LostEventSource, Verdict};
use support::*;

const FORWARDED: &str = r#"{"flow":{"time":"2024-01-01T10:00:01.005Z","verdict":"FORWARDED","IP":{"source":"10.0.0.1","destination":"10.0.0.2","ipVersion":"IPv4"},"l4":{"TCP":{"source_port":40000,"destination_port":80,"flags":{"SYN":true}}},"source":{"identity":1001,"namespace":"default","pod_name":"client"},"destination":{"identity":1002,"namespace":"default","pod_name":"server"},"node_name":"node1","event_type":{"type":4},"traffic_direction":"EGRESS"},"node_name":"node1","time":"2024-01-01T10:00:01.005Z"}"#;
/// The flow has no node name: the daemon's is written.
const DROPPED: &str = r#"{"flow":{"time":"2024-01-01T10:00:02Z","verdict":"DROPPED","l4":{"UDP":{"source_port":5353,"destination_port":53}},"source":{"identity":2001,"namespace":"other","pod_name":"intruder"},"destination":{"identity":1002,"namespace":"default","pod_name":"server"},"event_type":{"type":1,"sub_type":133},"traffic_direction":"INGRESS","drop_reason_desc":"POLICY_DENIED"},"node_name":"node-a","time":"2024-01-01T10:00:02Z"}"#;
/// Noticed at the clock's time.
const LOST: &str = r#"{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"7","cpu":3},"node_name":"node-a","time":"2024-01-01T10:00:30Z"}"#;

/// Offers a forwarded flow, a dropped flow and a loss notice; the file (if
/// a regular one) and the counters once `expected` records were handled.
fn run(config: FlowLogConfig, expected: u64) -> (String, ExporterStats) {
    let (clock, _) = manual_clock(at(30));
    let path = config.file_path.clone();
    let exporters = Exporters::new("node-a").with_clock(clock);
    exporters.start_static(config).unwrap();
    exporters.offer_flow(&Arc::new(forwarded(1)));
    exporters.offer_flow(&Arc::new(dropped(2)));
    exporters.offer_lost(&LostEvent {
        source: LostEventSource::PerfEventRingBuffer as i32,
        num_events_lost: 7,
        cpu: Some(3),
        ..Default::default()
    });
    let stats = settle(&exporters, |s| {
        let e = &s.exporters[0];
        e.exported + e.dropped_write_error == expected
    });
    exporters.shutdown();
    // Not /dev/full: it reads as endless zeros.
    let file = match path.is_file() {
        true => std::fs::read_to_string(path).unwrap(),
        false => String::new(),
    };
    (file, stats.exporters[0].clone())
}

fn lines(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn every_flow_and_loss_is_a_line_in_hubbles_format() {
    let dir = tempfile::tempdir().unwrap();
    let (file, stats) = run(FlowLogConfig::new("static", dir.path().join("a/b/events.log")), 3);
    assert_eq!(file, lines(&[FORWARDED, DROPPED, LOST]));
    assert_eq!(
        stats,
        ExporterStats {
            name: "static".into(),
            exported: 3,
            ..Default::default()
        }
    );
}

#[test]
fn the_field_mask_keeps_only_the_named_fields() {
    let dir = tempfile::tempdir().unwrap();
    let config = FlowLogConfig {
        field_mask: vec![
            "time".into(),
            "verdict".into(),
            "source.pod_name".into(),
            "l4.TCP.destination_port".into(),
        ],
        ..FlowLogConfig::new("static", dir.path().join("events.log"))
    };
    let (file, _) = run(config, 3);
    assert_eq!(
        file,
        lines(&[
            r#"{"flow":{"time":"2024-01-01T10:00:01.005Z","verdict":"FORWARDED","l4":{"TCP":{"destination_port":80}},"source":{"pod_name":"client"}},"node_name":"node1","time":"2024-01-01T10:00:01.005Z"}"#,
            // A UDP flow keeps an empty l4, as GetFlows sends it.
            r#"{"flow":{"time":"2024-01-01T10:00:02Z","verdict":"DROPPED","l4":{},"source":{"pod_name":"intruder"}},"node_name":"node-a","time":"2024-01-01T10:00:02Z"}"#,
            LOST,
        ])
    );
}

#[test]
fn allow_and_deny_lists_choose_the_flows() {
    let dir = tempfile::tempdir().unwrap();
    let filter = |f: FlowFilter| vec![f];
    let allow_dropped = FlowLogConfig {
        include_filters: filter(FlowFilter {
            verdict: vec![Verdict::Dropped as i32],
            ..Default::default()
        }),
        ..FlowLogConfig::new("static", dir.path().join("allow.log"))
    };
    let (file, stats) = run(allow_dropped, 2);
    assert_eq!(file, lines(&[DROPPED, LOST]));
    assert_eq!(
        (stats.exported, stats.dropped_queue_full, stats.dropped_write_error),
        (2, 0, 0)
    );

    let deny_default = FlowLogConfig {
        exclude_filters: filter(FlowFilter {
            source_pod: vec!["default/".into()],
            ..Default::default()
        }),
        ..FlowLogConfig::new("static", dir.path().join("deny.log"))
    };
    assert_eq!(run(deny_default, 2).0, lines(&[DROPPED, LOST]));

    let both = FlowLogConfig {
        include_filters: filter(FlowFilter {
            destination_pod: vec!["default/server".into()],
            ..Default::default()
        }),
        exclude_filters: filter(FlowFilter {
            destination_port: vec!["53".into()],
            ..Default::default()
        }),
        ..FlowLogConfig::new("static", dir.path().join("both.log"))
    };
    assert_eq!(run(both, 2).0, lines(&[FORWARDED, LOST]));
}

#[test]
fn a_full_disk_is_counted_and_reported() {
    let (_, stats) = run(FlowLogConfig::new("static", "/dev/full"), 3);
    assert_eq!(
        stats,
        ExporterStats {
            name: "static".into(),
            exported: 0,
            dropped_queue_full: 0,
            dropped_write_error: 3,
            failing: true,
            last_error: Some("cannot write /dev/full: No space left on device (os error 28)".into()),
        }
    );
}

#[test]
fn an_unwritable_directory_is_counted_and_writing_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("logs");
    std::fs::write(&blocker, "").unwrap();
    let path = blocker.join("events.log");
    let exporters = Exporters::new("node-a");
    exporters.start_static(FlowLogConfig::new("static", &path)).unwrap();
    exporters.offer_flow(&Arc::new(forwarded(1)));
    let stats = settle(&exporters, |s| s.exporters[0].dropped_write_error == 1);
    assert_eq!(
        stats.exporters[0],
        ExporterStats {
            name: "static".into(),
            dropped_write_error: 1,
            failing: true,
            last_error: Some(format!("cannot write {}: File exists (os error 17)", path.display())),
            ..Default::default()
        }
    );

    std::fs::remove_file(&blocker).unwrap();
    exporters.offer_flow(&Arc::new(dropped(2)));
    let stats = settle(&exporters, |s| s.exporters[0].exported == 1);
    assert_eq!((stats.exporters[0].exported, stats.exporters[0].failing), (1, false));
    assert_eq!(
        stats.exporters[0].last_error,
        Some(format!("cannot write {}: File exists (os error 17)", path.display()))
    );
    exporters.shutdown();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), lines(&[DROPPED]));
}
