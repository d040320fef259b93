use std::time::UNIX_EPOCH;

use lumen_proto::flow::{EventTypeFilter, Verdict};

use super::*;

const HUBBLE_FILE: &str = r#"
flowLogs:
- name: "test001"
  filePath: "/var/log/network/flow-log/pa/test001.log"
  fieldMask: []
  includeFilters: []
  excludeFilters: []
  fileMaxSizeMb: 0
  fileMaxBackups: 0
  fileCompress: false
  end: "2023-10-09T23:59:59-07:00"
- name: "test002"
  filePath: "/var/log/network/flow-log/pa/test002.log"
  fieldMask: ["source.namespace", "source.pod_name", "destination.namespace", "destination.pod_name", "verdict"]
  includeFilters:
  - source_pod: ["default/"]
    source_label: ["networking.example.com/flow-logs=enabled"]
    event_type:
    - type: 1
  - destination_pod: ["frontend/nginx-975996d4c-7hhgt"]
  excludeFilters:
  - verdict: [DROPPED]
  fileMaxSizeMb: 2
  fileMaxBackups: 3
  fileCompress: true
- name: "test003"
  filePath: "/var/log/network/flow-log/pa/test003.log"
  fieldAggregate: ["source.namespace", "verdict"]
  aggregationInterval: 1m
"#;

#[test]
fn hubbles_file_with_defaults_filters_and_aggregation() {
    let c = FlowLogsConfig::parse_yaml(HUBBLE_FILE).unwrap();
    assert_eq!(c.flow_logs.len(), 3);
    assert_eq!(
        c.flow_logs[0],
        FlowLogConfig {
            end: Some(UNIX_EPOCH + Duration::from_secs(1_696_921_199)),
            ..FlowLogConfig::new("test001", "/var/log/network/flow-log/pa/test001.log")
        }
    );
    let second = &c.flow_logs[1];
    assert_eq!(
        second.field_mask,
        [
            "source.namespace",
            "source.pod_name",
            "destination.namespace",
            "destination.pod_name",
            "verdict"
        ]
    );
    assert_eq!(
        second.include_filters,
        [
            FlowFilter {
                source_pod: vec!["default/".into()],
                source_label: vec!["networking.example.com/flow-logs=enabled".into()],
                event_type: vec![EventTypeFilter {
                    r#type: 1,
                    ..Default::default()
                }],
                ..Default::default()
            },
            FlowFilter {
                destination_pod: vec!["frontend/nginx-975996d4c-7hhgt".into()],
                ..Default::default()
            },
        ]
    );
    assert_eq!(
        second.exclude_filters,
        [FlowFilter {
            verdict: vec![Verdict::Dropped as i32],
            ..Default::default()
        }]
    );
    assert_eq!(
        (second.file_max_bytes, second.file_max_backups, second.file_compress),
        (2 * 1024 * 1024, 3, true)
    );
    assert_eq!(c.flow_logs[2].field_aggregate, ["source.namespace", "verdict"]);
    assert_eq!(c.flow_logs[2].aggregation_interval, Duration::from_secs(60));
    for log in &c.flow_logs {
        log.compile().unwrap();
    }
    assert!(FlowLogsConfig::parse_yaml("").unwrap().is_empty());
    assert!(FlowLogsConfig::parse_yaml("flowLogs:\n").unwrap().is_empty());
}

fn err(text: &str) -> String {
    FlowLogsConfig::parse_yaml(text).unwrap_err().to_string()
}

#[test]
fn hubbles_messages_for_names_and_paths() {
    assert_eq!(err("flowLogs:\n- filePath: a.log\n"), "name is required");
    assert_eq!(err("flowLogs:\n- name: a\n"), "filePath is required");
    assert_eq!(
        err("flowLogs:\n- {name: a, filePath: a.log}\n- {name: a, filePath: b.log}\n"),
        "duplicated flowlog name a"
    );
    assert_eq!(
        err("flowLogs:\n- {name: a, filePath: /x/a.log}\n- {name: b, filePath: /x/a.log}\n"),
        "duplicated flowlog path /x/a.log"
    );
    assert_eq!(
        err("flowLogs:\n- {name: a, filePath: a.log}\n-\n"),
        "invalid flowlog at index 1"
    );
}

#[test]
fn bad_fields_are_named() {
    assert!(
        err("flowLogs:\n- {name: a, filePath: a.log, excludeFilter: []}\n")
            .starts_with("flowLogs[0]: unknown field `excludeFilter`"),
        "{}",
        err("flowLogs:\n- {name: a, filePath: a.log, excludeFilter: []}\n")
    );
    assert_eq!(
        err("flowLogs:\n- name: a\n  filePath: a.log\n  includeFilters:\n  - source_pods: [x]\n"),
        "flowlog \"a\": includeFilters[0]: not a FlowFilter: unrecognized field name 'source_pods'"
    );
    assert_eq!(
        err("flowLogs:\n- name: a\n  filePath: a.log\n  excludeFilters:\n  - [x]\n"),
        "flowlog \"a\": excludeFilters[0]: a filter is a map of FlowFilter fields, got [\"x\"]"
    );
    assert_eq!(
        err("flowLogs:\n- {name: a, filePath: a.log, end: 2030-13-01T00:00:00Z}\n"),
        "flowlog \"a\": end: \"2030-13-01T00:00:00Z\" is not an RFC 3339 time: input is out of range"
    );
    assert_eq!(
        err("flowLogs:\n- {name: a, filePath: a.log, fieldAggregate: [verdict], aggregationInterval: often}\n"),
        "flowlog \"a\": aggregationInterval: \"often\" is not a duration such as 30s or 1m: \
         expected number at 0"
    );
}

#[test]
fn filters_and_masks_compile_or_say_why() {
    let compile = |yaml: &str| {
        FlowLogsConfig::parse_yaml(yaml).unwrap().flow_logs[0]
            .compile()
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        compile("flowLogs:\n- name: a\n  filePath: a.log\n  excludeFilters:\n  - {}\n  - source_ip: [10.0.0.0/33]\n"),
        "flowlog \"a\": excludeFilters[1]: invalid CIDR \"10.0.0.0/33\" in source_ip: prefix length out of range"
    );
    assert_eq!(
        compile("flowLogs:\n- {name: a, filePath: a.log, fieldMask: [source.podname]}\n"),
        "flowlog \"a\": fieldMask: field_mask path \"source.podname\": flow.Endpoint has no field \"podname\""
    );
    assert_eq!(
        compile("flowLogs:\n- {name: a, filePath: a.log, fieldAggregate: [verdict.x]}\n"),
        "flowlog \"a\": fieldAggregate: field_mask path \"verdict.x\": \"verdict\" is not a message, so it has no fields"
    );
    assert_eq!(
        compile("flowLogs:\n- {name: a, filePath: a.log, fieldAggregate: [verdict], aggregationInterval: 0s}\n"),
        "flowlog \"a\": aggregationInterval must be more than 0 with fieldAggregate"
    );
}

#[test]
fn the_static_flow_log_shares_no_name_or_path() {
    let dynamic = FlowLogsConfig::parse_yaml("flowLogs:\n- {name: static, filePath: b.log}\n").unwrap();
    let fixed = FlowLogConfig::new("static", "a.log");
    assert_eq!(
        dynamic.validate(Some(&fixed)).unwrap_err().to_string(),
        "duplicated flowlog name static"
    );
    let dynamic = FlowLogsConfig::parse_yaml("flowLogs:\n- {name: b, filePath: a.log}\n").unwrap();
    assert_eq!(
        dynamic.validate(Some(&fixed)).unwrap_err().to_string(),
        "duplicated flowlog path a.log"
    );
}
