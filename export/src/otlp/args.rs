//! The `--otlp-*` flags and the standard `OTEL_EXPORTER_OTLP_*` variables,
//! resolved into one [`OtlpSettings`]: a flag wins over the signal's
//! variable (`OTEL_EXPORTER_OTLP_LOGS_*`, `…_METRICS_*`), which wins over
//! the generic one (`OTEL_EXPORTER_OTLP_*`). The environment is read
//! through a function so that tests never set variables.

use std::path::PathBuf;
use std::time::Duration;

use crate::queue::DEFAULT_QUEUE_CAPACITY;

use super::OtlpError;

/// How long an export may take unless `--otlp-timeout` or
/// `OTEL_EXPORTER_OTLP_TIMEOUT` says otherwise (the specification's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// OTLP export flags; flatten beside [`crate::ExportArgs`].
#[derive(Clone, Debug, Default, clap::Args)]
pub struct OtlpArgs {
    /// OpenTelemetry Collector (OTLP receiver) to send flows and flow
    /// metrics to, e.g. http://otel-collector:4317 (gRPC) or
    /// http://otel-collector:4318 (HTTP, to which /v1/logs and /v1/metrics
    /// are appended). Default: OTEL_EXPORTER_OTLP_ENDPOINT (or the _LOGS_ /
    /// _METRICS_ variants, used as they are); no OTLP export without either.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// grpc or http/protobuf. Default: OTEL_EXPORTER_OTLP_PROTOCOL, else grpc.
    #[arg(long, value_parser = parse_protocol)]
    pub otlp_protocol: Option<Protocol>,
    /// Request headers, e.g. "authorization=Bearer token", comma separated
    /// or repeated. Default: OTEL_EXPORTER_OTLP_HEADERS.
    #[arg(long, value_delimiter = ',')]
    pub otlp_headers: Vec<String>,
    /// gzip or none. Default: OTEL_EXPORTER_OTLP_COMPRESSION, else none.
    #[arg(long, value_parser = parse_compression)]
    pub otlp_compression: Option<Compression>,
    /// PEM file of the CA that signed the collector's certificate (https
    /// endpoints); the system's roots without it. Default:
    /// OTEL_EXPORTER_OTLP_CERTIFICATE.
    #[arg(long)]
    pub otlp_ca_file: Option<PathBuf>,
    /// How long one export may take. Default: OTEL_EXPORTER_OTLP_TIMEOUT
    /// (milliseconds), else 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub otlp_timeout: Option<Duration>,
    /// Send every flow and loss notice as an OTLP log record.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub otlp_logs: bool,
    /// How often flow metrics are sent; 0 sends none. Default:
    /// OTEL_METRIC_EXPORT_INTERVAL (milliseconds), else 60s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub otlp_metrics_interval: Option<Duration>,
    /// Log records waiting to be sent at most; more are dropped and counted
    /// (lumen_exporter_dropped_total{exporter="otlp",reason="queue_full"}).
    #[arg(long, default_value_t = DEFAULT_QUEUE_CAPACITY, value_parser = parse_queue_size)]
    pub otlp_queue_size: usize,
    /// How long a batch of log records is retried, with backoff, while the
    /// collector refuses it or cannot be reached; then it is dropped and
    /// counted (reason="write_error").
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub otlp_retry_max_elapsed: Duration,
    /// Cluster name, sent as the k8s.cluster.name resource attribute.
    #[arg(long)]
    pub cluster_name: Option<String>,
}

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// Request body compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

fn parse_queue_size(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("the queue must hold at least 1 record".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_protocol(text: &str) -> Result<Protocol, String> {
    match text.trim() {
        "grpc" => Ok(Protocol::Grpc),
        "http/protobuf" => Ok(Protocol::HttpProtobuf),
        other => Err(format!("{other:?} is not grpc or http/protobuf")),
    }
}

fn parse_compression(text: &str) -> Result<Compression, String> {
    match text.trim() {
        "gzip" => Ok(Compression::Gzip),
        "none" | "" => Ok(Compression::None),
        other => Err(format!("{other:?} is not gzip or none")),
    }
}

/// Where and how one signal (logs or metrics) is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The full URL: for HTTP with the signal's path (`/v1/logs`).
    pub endpoint: String,
    pub protocol: Protocol,
    /// Lower-case names, in the order given.
    pub headers: Vec<(String, String)>,
    pub compression: Compression,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// Everything OTLP export needs, flags and environment resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpSettings {
    /// `None` with `--otlp-logs=false`.
    pub logs: Option<Target>,
    /// With the interval; `None` when the interval is 0.
    pub metrics: Option<(Target, Duration)>,
    pub queue_size: usize,
    pub retry_max_elapsed: Duration,
    pub cluster_name: Option<String>,
}

/// Metrics are sent this often unless configured otherwise (the
/// specification's default for `OTEL_METRIC_EXPORT_INTERVAL`).
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Clone, Copy)]
enum Signal {
    Logs,
    Metrics,
}

impl Signal {
    fn var(self, what: &str) -> String {
        match self {
            Signal::Logs => format!("OTEL_EXPORTER_OTLP_LOGS_{what}"),
            Signal::Metrics => format!("OTEL_EXPORTER_OTLP_METRICS_{what}"),
        }
    }

    fn path(self) -> &'static str {
        match self {
            Signal::Logs => "/v1/logs",
            Signal::Metrics => "/v1/metrics",
        }
    }
}

impl OtlpArgs {
    /// The settings from the flags and `env` (a variable's value, if set
    /// and not empty); `None` when no endpoint is configured.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<OtlpSettings>, OtlpError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let logs = match self.otlp_logs {
            true => self.target(Signal::Logs, &env)?,
            false => None,
        };
        let interval = match self.otlp_metrics_interval {
            Some(interval) => interval,
            None => match env("OTEL_METRIC_EXPORT_INTERVAL") {
                Some(ms) => millis("OTEL_METRIC_EXPORT_INTERVAL", &ms)?,
                None => DEFAULT_METRICS_INTERVAL,
            },
        };
        let metrics = match interval.is_zero() {
            true => None,
            false => self.target(Signal::Metrics, &env)?.map(|t| (t, interval)),
        };
        if logs.is_none() && metrics.is_none() {
            return Ok(None);
        }
        Ok(Some(OtlpSettings {
            logs,
            metrics,
            queue_size: self.otlp_queue_size.max(1),
            retry_max_elapsed: self.otlp_retry_max_elapsed,
            cluster_name: self.cluster_name.clone().filter(|c| !c.is_empty()),
        }))
    }

    fn target(&self, signal: Signal, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Target>, OtlpError> {
        // The signal's variable first, then the generic one.
        let var = |what: &str| {
            let name = signal.var(what);
            match env(&name) {
                Some(v) => Some((name, v)),
                None => env(&format!("OTEL_EXPORTER_OTLP_{what}")).map(|v| (format!("OTEL_EXPORTER_OTLP_{what}"), v)),
            }
        };
        let protocol = match self.otlp_protocol {
            Some(p) => p,
            None => match var("PROTOCOL") {
                Some((name, value)) => parse_protocol(&value).map_err(|reason| OtlpError::Env { name, reason })?,
                None => Protocol::Grpc,
            },
        };
        // A generic endpoint (the flag or OTEL_EXPORTER_OTLP_ENDPOINT) is a
        // base to which HTTP appends the signal's path; the signal's own
        // variable is the full URL (as the specification says).
        let endpoint = match (&self.otlp_endpoint, env(&signal.var("ENDPOINT"))) {
            (Some(base), _) => with_path(base, protocol, signal),
            (None, Some(full)) => full,
            (None, None) => match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(base) => with_path(&base, protocol, signal),
                None => return Ok(None),
            },
        };
        let headers = match self.otlp_headers.is_empty() {
            false => parse_headers("--otlp-headers", &self.otlp_headers.join(","))?,
            true => match var("HEADERS") {
                Some((name, value)) => parse_headers(&name, &value)?,
                None => Vec::new(),
            },
        };
        let from_env = match var("COMPRESSION") {
            Some((name, value)) => Some((
                parse_compression(&value).map_err(|reason| OtlpError::Env {
                    name: name.clone(),
                    reason,
                })?,
                name,
            )),
            None => None,
        };
        let compression = match (self.otlp_compression, from_env) {
            // The OpenTelemetry SDK reads the variable itself and has no
            // setting for "none" that overrides it: refuse rather than
            // compress against the flag.
            (Some(Compression::None), Some((Compression::Gzip, name))) => {
                return Err(OtlpError::Env {
                    name,
                    reason: "gzip cannot be overridden by --otlp-compression=none (the OpenTelemetry SDK reads \
                             this variable itself): unset it, or leave out the flag"
                        .into(),
                })
            }
            (Some(c), _) => c,
            (None, Some((c, _))) => c,
            (None, None) => Compression::None,
        };
        let ca_file = match &self.otlp_ca_file {
            Some(path) => Some(path.clone()),
            None => var("CERTIFICATE").map(|(_, path)| PathBuf::from(path)),
        };
        let timeout = match self.otlp_timeout {
            Some(t) => t,
            None => match var("TIMEOUT") {
                Some((name, ms)) => millis(&name, &ms)?,
                None => DEFAULT_TIMEOUT,
            },
        };
        Ok(Some(Target {
            endpoint,
            protocol,
            headers,
            compression,
            ca_file,
            timeout,
        }))
    }
}

fn with_path(base: &str, protocol: Protocol, signal: Signal) -> String {
    match protocol {
        Protocol::Grpc => base.to_string(),
        Protocol::HttpProtobuf => format!("{}{}", base.trim_end_matches('/'), signal.path()),
    }
}

fn millis(name: &str, value: &str) -> Result<Duration, OtlpError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| OtlpError::Env {
            name: name.to_string(),
            reason: format!("{value:?} is not a number of milliseconds: {e}"),
        })
}

/// `key=value,key2=value2`, values percent-decoded (the W3C Baggage form
/// the specification uses for `OTEL_EXPORTER_OTLP_HEADERS`).
fn parse_headers(source: &str, text: &str) -> Result<Vec<(String, String)>, OtlpError> {
    let bad = |reason: String| OtlpError::Headers {
        source_name: source.to_string(),
        reason,
    };
    let mut headers = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| bad(format!("{item:?} is not key=value")))?;
        let key = key.trim().to_ascii_lowercase();
        let value = percent_decode(value.trim()).ok_or_else(|| bad(format!("{item:?}: bad percent-encoding")))?;
        http::HeaderName::from_bytes(key.as_bytes()).map_err(|_| bad(format!("{key:?} is not a header name")))?;
        http::HeaderValue::from_str(&value).map_err(|_| bad(format!("the value of {key:?} is not a header value")))?;
        headers.push((key, value));
    }
    Ok(headers)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
