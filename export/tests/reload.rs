//! The dynamic file changed while flows go by: flow logs added, changed and
//! removed, the others untouched; an invalid file changes nothing.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lumen_export::{Applied, ConfigFile, Exporters, FlowLogConfig, Watcher};
use support::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The verdicts of the lines of a flow log, in order.
fn verdicts(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["flow"]["verdict"].as_str().unwrap_or("-").to_string()
        })
        .collect()
}

fn running(exporters: &Exporters) -> Vec<String> {
    exporters.stats().exporters.into_iter().map(|e| e.name).collect()
}

#[test]
fn flow_logs_are_added_changed_and_removed_live() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("flowlogs.yaml");
    let write = |text: &str| std::fs::write(&config, text.replace("DIR", d.to_str().unwrap())).unwrap();
    let exporters = Exporters::new("node-a");
    exporters
        .start_static(FlowLogConfig::new("static", d.join("static.log")))
        .unwrap();
    let mut file = ConfigFile::new(&config);

    write(
        r#"flowLogs:
- {name: all, filePath: DIR/all.log}
- {name: denied, filePath: DIR/denied.log, includeFilters: [{verdict: [DROPPED]}]}
- {name: summary, filePath: DIR/summary.log, fieldAggregate: [verdict], aggregationInterval: 1h}
"#,
    );
    let applied = file.reload_if_changed(&exporters).unwrap().unwrap();
    assert_eq!(
        applied,
        Applied {
            added: names(&["all", "denied", "summary"]),
            ..Default::default()
        }
    );
    assert!(file.reload_if_changed(&exporters).is_none(), "not changed since");
    exporters.offer_flow(&Arc::new(forwarded(1)));
    exporters.offer_flow(&Arc::new(dropped(2)));
    settle(&exporters, |s| s.exporters.iter().map(|e| e.exported).sum::<u64>() == 5);

    write(
        r#"flowLogs:
- {name: denied, filePath: DIR/denied.log, includeFilters: [{verdict: [FORWARDED]}]}
- {name: summary, filePath: DIR/summary.log, fieldAggregate: [verdict], aggregationInterval: 1h}
- {name: new, filePath: DIR/new.log}
"#,
    );
    let applied = file.reload_if_changed(&exporters).unwrap().unwrap();
    assert_eq!(
        applied,
        Applied {
            added: names(&["new"]),
            changed: names(&["denied"]),
            removed: names(&["all"]),
            unchanged: names(&["summary"]),
        }
    );
    assert_eq!(running(&exporters), ["static", "summary", "denied", "new"]);
    // The aggregating flow log was not restarted: a restart writes what it counted.
    assert_eq!(verdicts(&d.join("summary.log")), Vec::<String>::new());
    exporters.offer_flow(&Arc::new(forwarded(3)));
    exporters.offer_flow(&Arc::new(dropped(4)));
    let stats = settle(&exporters, |s| s.exporters.iter().map(|e| e.exported).sum::<u64>() == 8);
    // `denied` counts on across its restart: 1 line before, 1 after.
    let exported: Vec<(String, u64)> = stats.exporters.into_iter().map(|e| (e.name, e.exported)).collect();
    assert_eq!(
        exported,
        [
            ("static".to_string(), 4),
            ("summary".to_string(), 0),
            ("denied".to_string(), 2),
            ("new".to_string(), 2)
        ]
    );
    exporters.shutdown();
    assert_eq!(
        verdicts(&d.join("static.log")),
        ["FORWARDED", "DROPPED", "FORWARDED", "DROPPED"]
    );
    assert_eq!(verdicts(&d.join("all.log")), ["FORWARDED", "DROPPED"]);
    assert_eq!(verdicts(&d.join("denied.log")), ["DROPPED", "FORWARDED"]);
    assert_eq!(verdicts(&d.join("new.log")), ["FORWARDED", "DROPPED"]);
    assert_eq!(verdicts(&d.join("summary.log")), ["FORWARDED", "DROPPED"]);
    assert_eq!(exporters.stats().reloads_applied, 2);
}

#[test]
fn an_invalid_file_is_rejected_whole_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("flowlogs.yaml");
    let exporters = Exporters::new("node-a");
    exporters
        .start_static(FlowLogConfig::new("static", d.join("static.log")))
        .unwrap();
    let mut file = ConfigFile::new(&config);
    std::fs::write(&config, "flowLogs:\n- {name: a, filePath: a.log}\n").unwrap();
    file.reload_if_changed(&exporters).unwrap().unwrap();

    let path = config.display().to_string();
    let static_log = d.join("static.log").display().to_string();
    let cases = [
        // Each a new length, so that the change is seen.
        ("flowLogs:\n- {name: a, filePath: a.log}\n- {filePath: b.log}\n", "name is required".to_string()),
        (
            "flowLogs:\n- {name: a, filePath: a.log}\n- {name: a, filePath: bb.log}\n",
            "duplicated flowlog name a".to_string(),
        ),
        ("flowLogs:\n- {name: a, filePath: a.log}\n- {name: bbb}\n", "filePath is required".to_string()),
        (
            "flowLogs:\n- {name: a, filePath: a.log}\n- {name: b, filePath: a.log}\n",
            "duplicated flowlog path a.log".to_string(),
        ),
        (
            "flowLogs:\n- {name: a, filePath: a.log}\n- {name: static, filePath: c.log}\n",
            "duplicated flowlog name static".to_string(),
        ),
        (
            &*format!("flowLogs:\n- {{name: a, filePath: a.log}}\n- {{name: b, filePath: {static_log}}}\n"),
            format!("duplicated flowlog path {static_log}"),
        ),
        (
            "flowLogs:\n- {name: a, filePath: a.log}\n- {name: b, filePath: b.log, includeFilters: [{source_ip: [10.0.0.0/33]}]}\n",
            "flowlog \"b\": includeFilters[0]: invalid CIDR \"10.0.0.0/33\" in source_ip: prefix length out of range"
                .to_string(),
        ),
        (
            "flowLogs:\n- {name: a, filePath: a.log, fieldMask: [source.podname]}\n",
            "flowlog \"a\": fieldMask: field_mask path \"source.podname\": flow.Endpoint has no field \"podname\""
                .to_string(),
        ),
    ];
    for (i, (text, reason)) in cases.iter().enumerate() {
        std::fs::write(&config, text).unwrap();
        let err = file.reload_if_changed(&exporters).unwrap().unwrap_err();
        assert_eq!(err.to_string(), format!("{path}: {reason}"));
        assert_eq!(running(&exporters), ["static", "a"]);
        assert_eq!(exporters.stats().reloads_rejected, i as u64 + 1);
    }
    std::fs::remove_file(&config).unwrap();
    let err = file.reload_if_changed(&exporters).unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot read {path}: No such file or directory (os error 2)")
    );
    assert!(
        file.reload_if_changed(&exporters).is_none(),
        "a missing file is reported once"
    );
    assert_eq!(running(&exporters), ["static", "a"]);
    assert_eq!(exporters.stats().reloads_rejected, cases.len() as u64 + 1);
}

#[test]
fn the_watcher_applies_the_file_as_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flowlogs.yaml");
    std::fs::write(&config, "flowLogs:\n- {name: a, filePath: a.log}\n").unwrap();
    let exporters = Arc::new(Exporters::new("node-a"));
    let watcher = Watcher::spawn(exporters.clone(), ConfigFile::new(&config)).unwrap();
    let stats = settle(&exporters, |s| s.reloads_applied == 1);
    assert_eq!(stats.exporters.len(), 1);
    std::fs::write(&config, "flowLogs: []\n").unwrap();
    // Looked at once a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while exporters.stats().reloads_applied < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    watcher.stop();
    let stats = exporters.stats();
    assert_eq!((stats.reloads_applied, stats.exporters.len()), (2, 0));
}
