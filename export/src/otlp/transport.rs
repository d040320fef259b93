//! The SDK's OTLP exporters for one [`Target`]: tonic for gRPC, our own
//! HTTP client for HTTP/protobuf. Built inside Lumen's OTLP runtime, and
//! with the SDK's own retries off: the callers retry and count.
//!
//! The SDK also reads `OTEL_EXPORTER_OTLP_*HEADERS` itself and adds those
//! headers to every request; ours are set after it (a tonic interceptor, the
//! HTTP client), so that `--otlp-headers` wins as the flags do elsewhere.

use std::sync::Arc;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{LogExporter, MetricExporter, RetryPolicy, WithExportConfig, WithHttpConfig, WithTonicConfig};
use tokio::runtime::Handle;
use tonic::metadata::{Ascii, MetadataKey, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig};

use super::args::{Compression, Protocol, Target};
use super::OtlpError;

pub(crate) fn log_exporter(target: &Target, runtime: &Handle) -> Result<LogExporter, OtlpError> {
    let _entered = runtime.enter();
    let built = match target.protocol {
        Protocol::Grpc => tonic_config(LogExporter::builder().with_tonic(), target)?.build(),
        Protocol::HttpProtobuf => http_config(LogExporter::builder().with_http(), target, runtime)?.build(),
    };
    built.map_err(|e| build_error(target, e))
}

pub(crate) fn metric_exporter(target: &Target, runtime: &Handle) -> Result<MetricExporter, OtlpError> {
    let _entered = runtime.enter();
    let built = match target.protocol {
        Protocol::Grpc => tonic_config(MetricExporter::builder().with_tonic(), target)?.build(),
        Protocol::HttpProtobuf => http_config(MetricExporter::builder().with_http(), target, runtime)?.build(),
    };
    built.map_err(|e| build_error(target, e))
}

fn build_error(target: &Target, e: impl std::fmt::Display) -> OtlpError {
    OtlpError::Build {
        endpoint: target.endpoint.clone(),
        reason: e.to_string(),
    }
}

/// A gRPC exporter builder (logs or metrics) set up for `target`.
fn tonic_config<B: WithExportConfig + WithTonicConfig>(b: B, target: &Target) -> Result<B, OtlpError> {
    let mut b = b
        .with_endpoint(&target.endpoint)
        .with_timeout(target.timeout)
        .with_retry_policy(RetryPolicy::disabled())
        .with_interceptor(Headers::new(target)?);
    if let Some(tls) = tonic_tls(target)? {
        b = b.with_tls_config(tls);
    }
    if target.compression == Compression::Gzip {
        b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    Ok(b)
}

/// An HTTP/protobuf exporter builder (logs or metrics) set up for `target`.
fn http_config<B: WithExportConfig + WithHttpConfig>(b: B, target: &Target, runtime: &Handle) -> Result<B, OtlpError> {
    let mut b = b
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(&target.endpoint)
        .with_timeout(target.timeout)
        .with_retry_policy(RetryPolicy::disabled())
        .with_http_client(Client::new(target, runtime)?);
    if target.compression == Compression::Gzip {
        b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
    }
    Ok(b)
}

fn read_ca(target: &Target) -> Result<Option<Vec<u8>>, OtlpError> {
    let Some(path) = &target.ca_file else {
        return Ok(None);
    };
    std::fs::read(path).map(Some).map_err(|source| OtlpError::CaFile {
        path: path.clone(),
        reason: source.to_string(),
    })
}

fn tonic_tls(target: &Target) -> Result<Option<ClientTlsConfig>, OtlpError> {
    if !target.endpoint.starts_with("https:") {
        return Ok(None);
    }
    let tls = ClientTlsConfig::new();
    Ok(Some(match read_ca(target)? {
        Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
        None => tls.with_native_roots(),
    }))
}

/// The configured headers, set on every gRPC request over any the SDK added.
#[derive(Clone)]
struct Headers(Vec<(MetadataKey<Ascii>, MetadataValue<Ascii>)>);

impl Headers {
    fn new(target: &Target) -> Result<Headers, OtlpError> {
        let bad = |key: &str| OtlpError::Headers {
            source_name: target.endpoint.clone(),
            reason: format!("{key:?} cannot be sent as gRPC metadata"),
        };
        let mut list = Vec::new();
        for (key, value) in &target.headers {
            let k = MetadataKey::from_bytes(key.as_bytes()).map_err(|_| bad(key))?;
            let v = MetadataValue::try_from(value.as_str()).map_err(|_| bad(key))?;
            list.push((k, v));
        }
        Ok(Headers(list))
    }
}

impl tonic::service::Interceptor for Headers {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        for (key, value) in &self.0 {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        Ok(request)
    }
}

/// HTTP/protobuf through reqwest on Lumen's OTLP runtime (the SDK polls
/// the export future on the caller's thread, which has no reactor).
#[derive(Debug)]
struct Client {
    client: reqwest::Client,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    runtime: Handle,
}

impl Client {
    fn new(target: &Target, runtime: &Handle) -> Result<Client, OtlpError> {
        let build = |reason: String| OtlpError::Build {
            endpoint: target.endpoint.clone(),
            reason,
        };
        let mut roots = rustls::RootCertStore::empty();
        match read_ca(target)? {
            Some(pem) => {
                let mut reader = std::io::BufReader::new(pem.as_slice());
                let certs = rustls::pki_types::pem::PemObject::pem_reader_iter(&mut reader)
                    .collect::<Result<Vec<rustls::pki_types::CertificateDer<'static>>, _>>()
                    .map_err(|e| OtlpError::CaFile {
                        path: target.ca_file.clone().unwrap_or_default(),
                        reason: e.to_string(),
                    })?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(OtlpError::CaFile {
                        path: target.ca_file.clone().unwrap_or_default(),
                        reason: "no certificate in it".into(),
                    });
                }
            }
            None if target.endpoint.starts_with("https:") => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
            None => {}
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| build(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .timeout(target.timeout)
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| build(e.to_string()))?;
        let headers = target
            .headers
            .iter()
            .map(|(k, v)| {
                Ok((
                    http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| build(e.to_string()))?,
                    http::HeaderValue::from_str(v).map_err(|e| build(e.to_string()))?,
                ))
            })
            .collect::<Result<_, OtlpError>>()?;
        Ok(Client {
            client,
            headers,
            runtime: runtime.clone(),
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        for (key, value) in &self.headers {
            request.headers_mut().insert(key.clone(), value.clone());
        }
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let response = client.execute(request).await?;
            let mut out = Response::builder().status(response.status());
            if let Some(headers) = out.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await?;
            Ok::<_, HttpError>(out.body(body)?)
        });
        sent.await?
    }
}
