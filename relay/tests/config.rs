//! The relay's configuration: defaults < `--config` file <
//! `LUMEN_RELAY_*` environment < flags, each variable named after its flag.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lumen_config::{Env, Error, Loaded, Source};
use lumen_relay::RelayConfig;

const FILE: &str = "relay.yaml";

fn load(args: &[&str], env: &[(&str, &str)], file: &str) -> Result<Loaded<RelayConfig>, Error> {
    let argv = std::iter::once("lumen-relay").chain(args.iter().copied());
    let env: Env = env.iter().copied().collect();
    let text = file.to_string();
    RelayConfig::load(argv, &env, move |path| {
        assert_eq!(path, Path::new(FILE));
        Ok(text)
    })
}

#[test]
fn the_peer_variable_is_named_after_the_flag() {
    let cfg = load(&[], &[("LUMEN_RELAY_PEER", "10.0.0.1:4244,10.0.0.2:4244")], "").unwrap();
    assert_eq!(cfg.config.peers, ["10.0.0.1:4244", "10.0.0.2:4244"]);
    assert_eq!(
        cfg.effective.get("peer").unwrap().source,
        Source::Env("LUMEN_RELAY_PEER".into())
    );
    assert_eq!(RelayConfig::SPEC.env_var("peer"), "LUMEN_RELAY_PEER");
    assert_eq!(
        RelayConfig::SPEC.env_var("listen-address"),
        "LUMEN_RELAY_LISTEN_ADDRESS"
    );
}

#[test]
fn the_older_peers_variable_still_works_and_the_new_name_wins() {
    let old = load(&[], &[("LUMEN_RELAY_PEERS", "10.0.0.1:4244")], "").unwrap();
    assert_eq!(old.config.peers, ["10.0.0.1:4244"]);
    assert_eq!(
        old.effective.get("peer").unwrap().source,
        Source::Env("LUMEN_RELAY_PEERS".into())
    );
    let both = load(
        &[],
        &[
            ("LUMEN_RELAY_PEERS", "10.0.0.1:4244"),
            ("LUMEN_RELAY_PEER", "10.0.0.2:4244"),
        ],
        "",
    )
    .unwrap();
    assert_eq!(both.config.peers, ["10.0.0.2:4244"]);
}

/// `--tls` is a switch on the command line and `true`/`false` in the file
/// and the environment; the TLS flags are `lumen`'s.
#[test]
fn the_tls_switch_is_set_by_each_layer_and_checked() {
    const PEER: (&str, &str) = ("LUMEN_RELAY_PEER", "10.0.0.1:4244");
    let file = "tls: true\ntls-ca-cert-files: [ca.pem]\n";
    let cfg = load(&["--config", FILE], &[PEER], file).unwrap();
    assert!(cfg.config.tls.client.tls);
    assert_eq!(cfg.config.tls.client.tls_ca_cert_files, [PathBuf::from("ca.pem")]);
    assert_eq!(
        cfg.effective.get("tls").unwrap().source,
        Source::File {
            path: FILE.into(),
            line: 1
        }
    );

    let off = load(
        &["--config", FILE],
        &[PEER, ("LUMEN_RELAY_TLS", "false")],
        "tls: true\n",
    )
    .unwrap();
    assert!(!off.config.tls.client.tls);
    assert_eq!(
        off.effective.get("tls").unwrap().source,
        Source::Env("LUMEN_RELAY_TLS".into())
    );
    let flag = load(&["--config", FILE, "--tls"], &[PEER, ("LUMEN_RELAY_TLS", "false")], "").unwrap();
    assert!(flag.config.tls.client.tls);

    let bad = load(&[], &[PEER, ("LUMEN_RELAY_TLS", "yes")], "").unwrap_err();
    assert_eq!(
        bad.to_string(),
        "environment variable LUMEN_RELAY_TLS: invalid value \"yes\": expected true or false"
    );
    // The CA without TLS is refused, as the flags are.
    let lone = load(&["--config", FILE], &[PEER], "tls-ca-cert-files: [ca.pem]\n").unwrap_err();
    assert!(lone.to_string().contains("--tls"), "{lone}");
}

#[test]
fn each_layer_overrides_the_one_below() {
    let file = "peer:\n  - 10.0.0.1:4244\n  - 10.0.0.2:4244\nmax-backoff: 30s\ndial-timeout: 5s\n";
    let cfg = load(&["--config", FILE], &[], file).unwrap();
    assert_eq!(cfg.config.peers, ["10.0.0.1:4244", "10.0.0.2:4244"]);
    assert_eq!(cfg.config.max_backoff, Duration::from_secs(30));
    assert_eq!(cfg.config.sort_buffer_len_max, 10_000);

    let env = [("LUMEN_RELAY_MAX_BACKOFF", "20s"), ("LUMEN_RELAY_DIAL_TIMEOUT", "3s")];
    let cfg = load(
        &["--config", FILE, "--dial-timeout", "1s", "--peer", "10.0.0.9:4244"],
        &env,
        file,
    )
    .unwrap();
    assert_eq!(cfg.config.peers, ["10.0.0.9:4244"]);
    assert_eq!(cfg.config.max_backoff, Duration::from_secs(20));
    assert_eq!(cfg.config.dial_timeout, Duration::from_secs(1));
    let source = |key: &str| cfg.effective.get(key).unwrap().source.clone();
    assert_eq!(source("peer"), Source::Flag);
    assert_eq!(source("max-backoff"), Source::Env("LUMEN_RELAY_MAX_BACKOFF".into()));
    assert_eq!(source("dial-timeout"), Source::Flag);
    assert_eq!(source("sort-buffer-len-max"), Source::Default);
}

#[test]
fn peers_from_the_file_satisfy_the_required_discovery() {
    // Neither --peer nor --peer-service on the command line: the file's count.
    let cfg = load(&["--config", FILE], &[], "peer-service: 10.0.0.1:4244\n").unwrap();
    assert_eq!(cfg.config.peer_service.as_deref(), Some("10.0.0.1:4244"));
    let Err(Error::Args(e)) = load(&[], &[], "") else {
        panic!("a clap error")
    };
    assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
}

#[test]
fn errors_name_the_place_and_the_reason() {
    assert_eq!(
        load(&["--config", FILE], &[], "peer: a:1\npeers: b:1\n")
            .unwrap_err()
            .to_string(),
        "relay.yaml:2: unknown key \"peers\" (did you mean \"peer\"?)"
    );
    assert_eq!(
        load(&["--config", FILE], &[], "peer: a:1\nlisten-address: localhost\n")
            .unwrap_err()
            .to_string(),
        "relay.yaml:2: listen-address: invalid value \"localhost\": invalid socket address syntax"
    );
    assert_eq!(
        load(&["--peer", "a:1"], &[("LUMEN_RELAY_SORT_BUFFER_LEN_MAX", "many")], "")
            .unwrap_err()
            .to_string(),
        "environment variable LUMEN_RELAY_SORT_BUFFER_LEN_MAX: invalid value \"many\": invalid digit found in string"
    );
}

#[test]
fn print_config_shows_every_key_its_value_and_its_source() {
    let file = "\
# the cluster's observers
peer:
  - 192.168.200.1:4244
  - \"[fd01::2]:4244\"
max-backoff: 30s
";
    let loaded = load(
        &["--config", FILE, "--print-config", "--dial-timeout", "5s"],
        &[("LUMEN_RELAY_LISTEN_ADDRESS", "0.0.0.0:4245")],
        file,
    )
    .unwrap();
    assert!(loaded.print_config);
    assert_eq!(
        loaded.effective.to_string(),
        "\
# lumen-relay settings (default < file < env < flag); file relay.yaml
listen-address: 0.0.0.0:4245     # env LUMEN_RELAY_LISTEN_ADDRESS
peer:                            # relay.yaml:2
  - 192.168.200.1:4244
  - \"[fd01::2]:4244\"
peer-service:                    # default (unset)
sort-buffer-len-max: 10000       # default
sort-buffer-drain-timeout: 50ms  # default
initial-backoff: 200ms           # default
max-backoff: 30s                 # relay.yaml:5
dial-timeout: 5s                 # flag
metrics-listen-address:          # default (unset)
tls: false                       # default
tls-ca-cert-files: []            # default
tls-client-cert-file:            # default (unset)
tls-client-key-file:             # default (unset)
tls-server-name:                 # default (unset)
tls-cert-file:                   # default (unset)
tls-key-file:                    # default (unset)
export-file-path:                # default (unset)
export-file-max-size-mb: 10      # default
export-file-max-backups: 5       # default
export-file-compress: false      # default
export-allowlist:                # default (unset)
export-denylist:                 # default (unset)
export-fieldmask: []             # default
export-aggregate-fields: []      # default
export-aggregate-interval: 30s   # default
flowlogs-config:                 # default (unset)
otlp-endpoint:                   # default (unset)
otlp-protocol:                   # default (unset)
otlp-headers: []                 # default
otlp-compression:                # default (unset)
otlp-ca-file:                    # default (unset)
otlp-timeout:                    # default (unset)
otlp-logs: true                  # default
otlp-metrics-interval:           # default (unset)
otlp-queue-size: 4096            # default
otlp-retry-max-elapsed: 60s      # default
cluster-name:                    # default (unset)
"
    );
    assert_eq!(loaded.effective.file, Some(PathBuf::from(FILE)));
}

/// The binary: `--print-config` prints to stdout and exits 0; a bad file
/// stops it with exit 1 and the error on stderr.
#[test]
fn the_binary_prints_its_configuration_and_refuses_a_bad_file() {
    let dir = tempfile::Builder::new()
        .prefix("lumen-relay-config-")
        .tempdir()
        .unwrap();
    let good = dir.path().join("good.yaml");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&good, "peer-service: 10.0.0.1:4244\n").unwrap();
    std::fs::write(&bad, "peer-service: 10.0.0.1:4244\ndial_timeout: 1s\n").unwrap();
    let run = |file: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lumen-relay"))
            .arg("--config")
            .arg(file)
            .arg("--print-config")
            .env_clear()
            .env("LUMEN_RELAY_MAX_BACKOFF", "1m")
            .output()
            .unwrap()
    };
    let out = run(&good);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..4],
        [
            format!(
                "# lumen-relay settings (default < file < env < flag); file {}",
                good.display()
            ),
            "listen-address: 127.0.0.1:4245   # default".to_string(),
            "peer: []                         # default".to_string(),
            format!("peer-service: 10.0.0.1:4244      # {}:1", good.display()),
        ]
    );
    assert!(lines.contains(&"max-backoff: 1m                  # env LUMEN_RELAY_MAX_BACKOFF"));

    let out = run(&bad);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!(
            "error: {}:2: unknown key \"dial_timeout\" (did you mean \"dial-timeout\"?)\n",
            bad.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
