//! The observer's configuration: defaults < `--config` file < `LUMEN_*`
//! environment < flags, with one key per setting in all four. The
//! environment and the file are passed in, never read from the process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lumen_config::{Env, Error, Loaded, Source};
use lumen_observer::ObserverConfig;

const FILE: &str = "/etc/lumen/observer.yaml";

fn load(args: &[&str], env: &[(&str, &str)], file: &str) -> Result<Loaded<ObserverConfig>, Error> {
    let argv = std::iter::once("lumen-observer").chain(args.iter().copied());
    let env: Env = env.iter().copied().collect();
    let text = file.to_string();
    ObserverConfig::load(argv, &env, move |path| {
        assert_eq!(path, Path::new(FILE));
        Ok(text)
    })
}

fn with_file<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [&["--config", FILE], args].concat()
}

fn file_line(line: usize) -> Source {
    Source::File {
        path: PathBuf::from(FILE),
        line,
    }
}

fn error(args: &[&str], env: &[(&str, &str)], file: &str) -> String {
    load(args, env, file).expect_err("an error").to_string()
}

#[test]
fn each_layer_overrides_the_one_below() {
    let file = "node-name: from-file\nmax-flows: 100\ncapture-bytes: 16\n";
    let env = [("LUMEN_MAX_FLOWS", "200"), ("LUMEN_CAPTURE_BYTES", "32")];

    let defaults = load(&["--node-name", "n"], &[], "").unwrap();
    assert_eq!(defaults.config.capture_bytes, 0);
    assert_eq!(defaults.effective.get("capture-bytes").unwrap().source, Source::Default);
    assert_eq!(defaults.effective.get("max-flows").unwrap().source, Source::Default);

    let file_only = load(&with_file(&[]), &[], file).unwrap();
    assert_eq!(file_only.config.node_name, "from-file");
    assert_eq!(file_only.config.max_flows, 100);
    assert_eq!(file_only.effective.get("max-flows").unwrap().source, file_line(2));

    let env_over_file = load(&with_file(&[]), &env, file).unwrap();
    assert_eq!(env_over_file.config.node_name, "from-file");
    assert_eq!(env_over_file.config.max_flows, 200);
    assert_eq!(env_over_file.config.capture_bytes, 32);
    assert_eq!(
        env_over_file.effective.get("max-flows").unwrap().source,
        Source::Env("LUMEN_MAX_FLOWS".into())
    );

    let flag_over_all = load(&with_file(&["--max-flows", "300"]), &env, file).unwrap();
    assert_eq!(flag_over_all.config.max_flows, 300);
    assert_eq!(flag_over_all.config.capture_bytes, 32);
    assert_eq!(flag_over_all.config.node_name, "from-file");
    assert_eq!(flag_over_all.effective.get("max-flows").unwrap().source, Source::Flag);
}

#[test]
fn a_list_comes_whole_from_one_layer() {
    let file = "node-name: n\ntls-cert-file: c.pem\ntls-key-file: k.pem\ntls-client-ca-files:\n  - a.pem\n  - b.pem\n";
    let from_file = load(&with_file(&[]), &[], file).unwrap();
    assert_eq!(
        from_file.config.tls_client_ca_files,
        [PathBuf::from("a.pem"), PathBuf::from("b.pem")]
    );
    let from_env = load(&with_file(&[]), &[("LUMEN_TLS_CLIENT_CA_FILES", "c.pem,d.pem")], file).unwrap();
    assert_eq!(
        from_env.config.tls_client_ca_files,
        [PathBuf::from("c.pem"), PathBuf::from("d.pem")]
    );
    let from_flag = load(&with_file(&["--tls-client-ca-files", "e.pem"]), &[], file).unwrap();
    assert_eq!(from_flag.config.tls_client_ca_files, [PathBuf::from("e.pem")]);
}

#[test]
fn file_values_are_read_as_the_flags_read_them() {
    let file = "\
node-name: n
listen-address: 0.0.0.0:4244
events-output: \"-\"
policy-audit-mode: true
local-redirect: false
monitor-aggregation: max
ct-timeout-tcp: 1h 30m
endpoints:            # unset, as if absent
";
    let cfg = load(&with_file(&[]), &[], file).unwrap().config;
    assert_eq!(cfg.listen_address, Some("0.0.0.0:4244".parse().unwrap()));
    assert_eq!(cfg.events_output, "-");
    assert!(cfg.policy_audit_mode);
    assert!(!cfg.local_redirect);
    assert_eq!(cfg.monitor_aggregation, lumen_observer::daemon::Aggregation::Max);
    assert_eq!(cfg.ct_timeout_tcp, Duration::from_secs(5400));
    assert_eq!(cfg.endpoints, None);
}

#[test]
fn the_file_can_be_named_in_the_environment() {
    let cfg = load(&[], &[("LUMEN_CONFIG", FILE)], "node-name: from-file\n").unwrap();
    assert_eq!(cfg.config.node_name, "from-file");
    assert_eq!(cfg.effective.file.as_deref(), Some(Path::new(FILE)));
}

#[test]
fn an_unknown_key_is_an_error_with_file_line_and_the_nearest_key() {
    assert_eq!(
        error(&with_file(&[]), &[], "node-name: n\n\nmax_flows: 10\n"),
        "/etc/lumen/observer.yaml:3: unknown key \"max_flows\" (did you mean \"max-flows\"?)"
    );
    assert_eq!(
        error(&with_file(&[]), &[], "verbosity: 3\n"),
        "/etc/lumen/observer.yaml:1: unknown key \"verbosity\""
    );
    // Actions are not settings.
    assert_eq!(
        error(&with_file(&[]), &[], "uninstall: true\n"),
        "/etc/lumen/observer.yaml:1: unknown key \"uninstall\""
    );
}

#[test]
fn a_bad_value_is_an_error_with_its_place_and_the_flag_parsers_reason() {
    let file = "node-name: n\nmax-flows: 0\n";
    assert_eq!(
        error(&with_file(&[]), &[], file),
        "/etc/lumen/observer.yaml:2: max-flows: invalid value \"0\": \"0\" is not a number of flows of at least 1"
    );
    assert_eq!(
        error(&with_file(&[]), &[], "monitor-aggregation: all\n"),
        "/etc/lumen/observer.yaml:1: monitor-aggregation: invalid value \"all\": expected one of none, medium, max"
    );
    assert_eq!(
        error(&with_file(&[]), &[], "capture-bytes: 200\n"),
        "/etc/lumen/observer.yaml:1: capture-bytes: invalid value \"200\": 200 is not in 0..=128"
    );
    assert_eq!(
        error(&[], &[("LUMEN_CT_TIMEOUT_TCP", "6")], ""),
        "environment variable LUMEN_CT_TIMEOUT_TCP: invalid value \"6\": time unit needed, for example 6sec or 6ms"
    );
    // A file value the environment overrides is still checked: the file is wrong.
    assert_eq!(
        error(&with_file(&[]), &[("LUMEN_MAX_FLOWS", "10")], "max-flows: 0\n"),
        "/etc/lumen/observer.yaml:1: max-flows: invalid value \"0\": \"0\" is not a number of flows of at least 1"
    );
    assert_eq!(
        error(&with_file(&[]), &[("LUMEN_NODE_NAME", "n")], "node-name: [a, b]\n"),
        "/etc/lumen/observer.yaml:1: node-name: invalid type: sequence, expected a single value"
    );
    // The flags' own errors stay clap's.
    let Err(Error::Args(e)) = load(&["--max-flows", "0"], &[], "") else {
        panic!("a clap error")
    };
    assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
}

#[test]
fn metrics_settings_are_checked_where_they_are_given() {
    let file = "metrics: drop:sourceContext=pod flow\nmetrics-listen-address: \":9965\"\nmetrics-grace-period: 30s\n";
    let cfg = load(&with_file(&[]), &[("LUMEN_METRICS_MAX_SERIES", "500")], file)
        .unwrap()
        .config;
    assert_eq!(cfg.metrics.as_deref(), Some("drop:sourceContext=pod flow"));
    assert_eq!(cfg.metrics_listen_address, Some("0.0.0.0:9965".parse().unwrap()));
    assert_eq!(cfg.metrics_grace_period, Duration::from_secs(30));
    assert_eq!(cfg.metrics_max_series, 500);
    assert_eq!(
        error(&with_file(&[]), &[], "metrics: drop:sourceContext=pods\n"),
        "/etc/lumen/observer.yaml:1: metrics: invalid value \"drop:sourceContext=pods\": metric \"drop\": option \
         sourceContext: \"pods\" is not a context; use identity, namespace, pod, pod-name, dns, ip, reserved-identity, \
         workload, workload-name or app, several separated by | (the first that is not empty is used)"
    );
    assert_eq!(
        error(&[], &[("LUMEN_METRICS", "drops")], ""),
        "environment variable LUMEN_METRICS: invalid value \"drops\": metric \"drops\" does not exist; the metrics \
         are flow, drop, tcp, port-distribution, icmp, flows-to-world, policy, flow-io, dns, http, httpV2, kafka"
    );
    // Both forms at once, from any two places, as in Hubble.
    let Err(Error::Args(e)) = load(&with_file(&["--metrics-config", "m.yaml"]), &[], "metrics: drop\n") else {
        panic!("a clap error")
    };
    assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let env: Env = Env::default();
    let err = ObserverConfig::load(["lumen-observer", "--config", "/nonexistent.yaml"], &env, |p| {
        std::fs::read_to_string(p)
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "cannot read config file /nonexistent.yaml");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "No such file or directory (os error 2)"
    );
}

const PRINTED: &str = "\
# lumen-observer settings (default < file < env < flag); file /etc/lumen/observer.yaml
node-name: node1                             # /etc/lumen/observer.yaml:1
bpffs-root: /sys/fs/bpf/lumen                # default
state-dir: /var/run/lumen                    # default
endpoints:                                   # default (unset)
policy: /etc/lumen/policies                  # /etc/lumen/observer.yaml:3
enable-policy: default                       # default
policy-audit-mode: true                      # flag
control-socket: /var/run/lumen/control.sock  # default
socket: /var/run/lumen/observer.sock         # default
listen-address: 0.0.0.0:4244                 # env LUMEN_LISTEN_ADDRESS
tls-cert-file:                               # default (unset)
tls-key-file:                                # default (unset)
tls-client-ca-files: []                      # default
nodes-file:                                  # default (unset)
max-flows: 100000                            # flag
events-output: none                          # default
metrics:                                     # default (unset)
metrics-config:                              # default (unset)
metrics-listen-address:                      # default (unset)
metrics-max-series: 10000                    # default
metrics-grace-period: 1m                     # default
export-file-path:                            # default (unset)
export-file-max-size-mb: 10                  # default
export-file-max-backups: 5                   # default
export-file-compress: false                  # default
export-allowlist:                            # default (unset)
export-denylist:                             # default (unset)
export-fieldmask: []                         # default
export-aggregate-fields: []                  # default
export-aggregate-interval: 30s               # default
flowlogs-config:                             # default (unset)
otlp-endpoint:                               # default (unset)
otlp-protocol:                               # default (unset)
otlp-headers: []                             # default
otlp-compression:                            # default (unset)
otlp-ca-file:                                # default (unset)
otlp-timeout:                                # default (unset)
otlp-logs: true                              # default
otlp-metrics-interval:                       # default (unset)
otlp-queue-size: 4096                        # default
otlp-retry-max-elapsed: 60s                  # default
cluster-name:                                # default (unset)
monitor-aggregation: medium                  # default
capture-bytes: 0                             # default
ring-buffer-bytes: 4194304                   # default
wakeup-bytes: 65536                          # default
local-redirect: true                         # default
ct-timeout-tcp: 6h                           # default
ct-timeout-closing: 10s                      # default
ct-timeout-other: 60s                        # default
ct-gc-interval: 30s                          # default
netns:                                       # default (unset)
";

#[test]
fn print_config_shows_every_key_its_value_and_its_source() {
    let file = "node-name: node1\nlisten-address: 127.0.0.1:4244\npolicy: /etc/lumen/policies\n";
    let loaded = load(
        &with_file(&["--max-flows", "100000", "--policy-audit-mode", "--print-config"]),
        &[("LUMEN_LISTEN_ADDRESS", "0.0.0.0:4244")],
        file,
    )
    .unwrap();
    assert!(loaded.print_config);
    assert_eq!(loaded.effective.to_string(), PRINTED);

    // What it prints is a configuration file that gives the same settings.
    let again = load(&with_file(&[]), &[], PRINTED).unwrap();
    let values = |l: &Loaded<ObserverConfig>| -> Vec<(String, Vec<String>)> {
        l.effective
            .settings
            .iter()
            .map(|s| (s.key.clone(), s.values.clone()))
            .collect()
    };
    assert_eq!(values(&again), values(&loaded));
}

#[test]
fn the_embedding_constructors_keep_their_defaults() {
    let cfg = ObserverConfig::for_node("node1");
    assert_eq!(cfg.node_name, "node1");
    assert_eq!(cfg.capture_bytes, 0);
    assert_eq!(cfg.socket, PathBuf::from("/var/run/lumen/observer.sock"));
    assert_eq!(cfg.events_output, "none");
}

/// The binary: `--print-config` prints to stdout and exits 0 before anything
/// is loaded; a bad value stops it with exit 1 and the error on stderr.
#[test]
fn the_binary_prints_its_configuration_and_refuses_a_bad_value() {
    let dir = std::env::temp_dir().join(format!("lumen-observer-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("observer.yaml");
    std::fs::write(&file, "node-name: node1\nring-buffer-bytes: 5000\n").unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lumen-observer"))
            .arg("--config")
            .arg(&file)
            .args(args)
            .env_clear()
            .output()
            .unwrap()
    };
    let out = run(&["--ring-buffer-bytes", "8192", "--print-config"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "error: {}:2: ring-buffer-bytes: invalid value \"5000\": 5000 is not a power of two of at least 4096\n",
            file.display()
        )
    );
    std::fs::write(&file, "node-name: node1\nring-buffer-bytes: 4096\n").unwrap();
    let out = run(&["--ring-buffer-bytes", "8192", "--print-config"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().nth(1),
        Some(format!("node-name: node1                             # {}:1", file.display()).as_str())
    );
    assert!(stdout.contains("\nring-buffer-bytes: 8192                      # flag\n"));
    std::fs::remove_dir_all(&dir).unwrap();
}
