//! The browser side over TLS: lumen-ui serves its page and API over HTTPS
//! with the certificate it is given (HTTP/1.1 and HTTP/2), the bearer token
//! still guards the API, a plain HTTP request gets no page, and files that
//! are not a certificate and its key stop it at start with the reason.

#[path = "../../export/tests/support/pki.rs"]
mod pki;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser as _;
use pki::pki;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One HTTP/1.1 request over TLS trusting `ca`: (the ALPN protocol agreed,
/// the whole response); with no request, the handshake only.
fn https(address: SocketAddr, ca: &Path, alpn: &[&[u8]], request: &str) -> (Option<Vec<u8>>, String) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut socket = TcpStream::connect(address).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if request.is_empty() {
        // The handshake only.
        while tls.is_handshaking() {
            tls.complete_io(&mut socket).unwrap();
        }
        return (tls.alpn_protocol().map(<[u8]>::to_vec), String::new());
    }
    let mut stream = rustls::Stream::new(&mut tls, &mut socket);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let agreed = tls.alpn_protocol().map(<[u8]>::to_vec);
    (agreed, String::from_utf8_lossy(&response).into_owned())
}

fn args(listen: SocketAddr, extra: &[&str]) -> lumen_ui::Args {
    let listen = listen.to_string();
    let mut argv = vec!["lumen-ui", "--listen", &listen, "--server", "127.0.0.1:1"];
    argv.extend_from_slice(extra);
    lumen_ui::Args::try_parse_from(argv).unwrap()
}

#[test]
fn the_page_and_the_api_over_https_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(dir.path(), "ui");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let address = free_port();
    let (cert, key, token) = (cert.to_str().unwrap(), key.to_str().unwrap(), token.to_str().unwrap());
    let args = args(
        address,
        &[
            "--listen-tls-cert-file",
            cert,
            "--listen-tls-key-file",
            key,
            "--auth-token-file",
            token,
        ],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.spawn(lumen_ui::run(args));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(address).is_err() {
        assert!(Instant::now() < deadline, "lumen-ui did not listen on {address}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let get =
        |path: &str, auth: &str| format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
    let (alpn, page) = https(address, &ca, &[b"http/1.1"], &get("/", ""));
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("<html"), "{page}");
    let (_, refused) = https(address, &ca, &[], &get("/api/health", ""));
    assert!(refused.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{refused}");
    assert!(
        refused.ends_with(r#"{"error":"this API needs its bearer token"}"#),
        "{refused}"
    );
    let (_, health) = https(
        address,
        &ca,
        &[],
        &get("/api/health", "Authorization: Bearer s3cret\r\n"),
    );
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.contains("content-type: application/json"), "{health}");
    // A browser that offers HTTP/2 gets it.
    let (alpn, _) = https(address, &ca, &[b"h2", b"http/1.1"], "");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));

    // Plain HTTP to the HTTPS port: no page.
    let mut plain = TcpStream::connect(address).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    plain.write_all(get("/", "").as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("<html"));
    server.abort();
}

#[test]
fn files_that_are_not_a_certificate_and_its_key_stop_it_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = pki(dir.path(), "ui");
    let (_, other_cert, _) = pki(
        &{
            let other = dir.path().join("other");
            std::fs::create_dir(&other).unwrap();
            other
        },
        "ui",
    );
    let missing = dir.path().join("missing.crt");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let run = |cert: &Path, key: &Path| {
        let args = args(
            free_port(),
            &[
                "--listen-tls-cert-file",
                cert.to_str().unwrap(),
                "--listen-tls-key-file",
                key.to_str().unwrap(),
            ],
        );
        format!("{:#}", rt.block_on(lumen_ui::run(args)).unwrap_err())
    };
    let error = run(&missing, &key);
    assert!(
        error.starts_with(&format!("--listen-tls-cert-file {}: ", missing.display())),
        "{error}"
    );
    let error = run(&key, &key);
    assert_eq!(
        error,
        format!("--listen-tls-cert-file {}: no certificate in it", key.display())
    );
    let error = run(&other_cert, &key);
    assert!(
        error.starts_with("--listen-tls-cert-file and --listen-tls-key-file do not make a certificate and its key"),
        "{error}"
    );
    let error = run(&cert, &cert);
    assert!(
        error.starts_with(&format!("--listen-tls-key-file {}: ", cert.display())),
        "{error}"
    );
    // One without the other is a usage error.
    let only = lumen_ui::Args::try_parse_from(["lumen-ui", "--listen-tls-cert-file", cert.to_str().unwrap()]);
    assert!(only
        .unwrap_err()
        .to_string()
        .contains("--listen-tls-key-file <LISTEN_TLS_KEY_FILE>"));
}
