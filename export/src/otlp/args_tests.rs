use std::collections::HashMap;

use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    otlp: OtlpArgs,
}

fn parse(args: &[&str]) -> OtlpArgs {
    Cli::try_parse_from(std::iter::once("lumen").chain(args.iter().copied()))
        .map(|c| c.otlp)
        .unwrap()
}

fn resolve(args: &[&str], env: &[(&str, &str)]) -> Result<Option<OtlpSettings>, String> {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    parse(args)
        .resolve(&|name| env.get(name).cloned())
        .map_err(|e| e.to_string())
}

fn target(endpoint: &str) -> Target {
    Target {
        endpoint: endpoint.into(),
        protocol: Protocol::Grpc,
        headers: Vec::new(),
        compression: Compression::None,
        ca_file: None,
        timeout: DEFAULT_TIMEOUT,
    }
}

#[test]
fn no_endpoint_no_export() {
    assert_eq!(resolve(&[], &[]), Ok(None));
    assert_eq!(
        resolve(
            &["--otlp-headers=a=b", "--cluster-name=c1"],
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]
        ),
        Ok(None)
    );
}

#[test]
fn defaults_with_an_endpoint_flag() {
    let settings = resolve(&["--otlp-endpoint=http://collector:4317"], &[])
        .unwrap()
        .unwrap();
    assert_eq!(
        settings,
        OtlpSettings {
            logs: Some(target("http://collector:4317")),
            metrics: Some((target("http://collector:4317"), Duration::from_secs(60))),
            queue_size: DEFAULT_QUEUE_CAPACITY,
            retry_max_elapsed: Duration::from_secs(60),
            cluster_name: None,
        }
    );
}

#[test]
fn flags_set_everything() {
    let settings = resolve(
        &[
            "--otlp-endpoint=https://collector:4318/",
            "--otlp-protocol=http/protobuf",
            "--otlp-headers=Authorization=Bearer x,x-tenant=a%2Cb",
            "--otlp-compression=gzip",
            "--otlp-ca-file=/etc/ca.pem",
            "--otlp-timeout=3s",
            "--otlp-logs=false",
            "--otlp-metrics-interval=15s",
            "--otlp-queue-size=10",
            "--otlp-retry-max-elapsed=2m",
            "--cluster-name=prod",
        ],
        &[],
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        settings,
        OtlpSettings {
            logs: None,
            metrics: Some((
                Target {
                    endpoint: "https://collector:4318/v1/metrics".into(),
                    protocol: Protocol::HttpProtobuf,
                    headers: vec![
                        ("authorization".into(), "Bearer x".into()),
                        ("x-tenant".into(), "a,b".into())
                    ],
                    compression: Compression::Gzip,
                    ca_file: Some("/etc/ca.pem".into()),
                    timeout: Duration::from_secs(3),
                },
                Duration::from_secs(15)
            )),
            queue_size: 10,
            retry_max_elapsed: Duration::from_secs(120),
            cluster_name: Some("prod".into()),
        }
    );
}

#[test]
fn environment_the_signal_variable_first_then_the_generic_one() {
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:9999/custom"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20generic"),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "authorization=Bearer metrics"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "none"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
    ];
    let settings = resolve(&[], &env).unwrap().unwrap();
    let logs = settings.logs.unwrap();
    assert_eq!(logs.endpoint, "http://logs:9999/custom");
    assert_eq!(logs.protocol, Protocol::HttpProtobuf);
    assert_eq!(
        logs.headers,
        [("authorization".to_string(), "Bearer generic".to_string())]
    );
    assert_eq!(logs.compression, Compression::None);
    assert_eq!(logs.timeout, Duration::from_millis(2500));
    assert_eq!(logs.ca_file, Some("/ca.pem".into()));
    let (metrics, interval) = settings.metrics.unwrap();
    assert_eq!(metrics.endpoint, "http://base:4318/v1/metrics");
    assert_eq!(
        metrics.headers,
        [("authorization".to_string(), "Bearer metrics".to_string())]
    );
    assert_eq!(metrics.compression, Compression::Gzip);
    assert_eq!(interval, Duration::from_secs(5));
}

#[test]
fn flags_win_over_the_environment() {
    let env = [
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:4318/v1/logs"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=env"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "100"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
    ];
    let settings = resolve(
        &[
            "--otlp-endpoint=http://flag:4317",
            "--otlp-protocol=grpc",
            "--otlp-headers=authorization=flag",
            "--otlp-compression=gzip",
            "--otlp-timeout=1s",
            "--otlp-metrics-interval=0s",
        ],
        &env,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        settings.logs,
        Some(Target {
            headers: vec![("authorization".into(), "flag".into())],
            timeout: Duration::from_secs(1),
            compression: Compression::Gzip,
            ..target("http://flag:4317")
        })
    );
    assert_eq!(settings.metrics, None);
}

/// The SDK compresses when the variable says gzip whatever it is told, so
/// a flag saying otherwise is refused, not silently overruled.
#[test]
fn no_compression_by_flag_against_gzip_in_the_environment_is_refused() {
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
        ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip"),
    ];
    assert_eq!(
        resolve(&["--otlp-compression=none"], &env),
        Err(
            "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION: gzip cannot be overridden by --otlp-compression=none (the \
             OpenTelemetry SDK reads this variable itself): unset it, or leave out the flag"
                .into()
        )
    );
    let settings = resolve(&[], &env).unwrap().unwrap();
    assert_eq!(settings.logs.unwrap().compression, Compression::Gzip);
}

#[test]
fn bad_values_name_their_source() {
    assert_eq!(
        resolve(
            &["--otlp-headers=novalue"],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]
        ),
        Err("--otlp-headers: bad header: \"novalue\" is not key=value".into())
    );
    assert_eq!(
        resolve(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")
            ]
        ),
        Err(
            "OTEL_EXPORTER_OTLP_TIMEOUT: \"10s\" is not a number of milliseconds: invalid digit found in string".into()
        )
    );
    assert_eq!(
        resolve(
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "http/json")
            ]
        ),
        Err("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: \"http/json\" is not grpc or http/protobuf".into())
    );
    let err = Cli::try_parse_from(["lumen", "--otlp-compression=zstd"])
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with(
            "error: invalid value 'zstd' for '--otlp-compression <OTLP_COMPRESSION>': \"zstd\" is not gzip or none"
        ),
        "{err}"
    );
}
