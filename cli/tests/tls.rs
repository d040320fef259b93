//! `lumen status` to a relay that speaks TLS: with the right CA it works;
//! without it, the error says which certificate was refused and why.

mod support;

use std::time::Duration;

use lumen_relay::daemon::RelayTls;
use lumen_relay::{RelayConfig, RelayHandle};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use support::{lumen, temp};

#[test]
fn status_over_tls_and_a_refused_certificate() {
    let dir = temp("tls");
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "lumen test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["relay.lumen.local".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let ca_file = write("ca.pem", ca.pem());
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let relay = RelayHandle::spawn(RelayConfig {
        metrics_listen_address: None,
        listen_address: listen,
        peers: vec!["127.0.0.1:1".into()],
        peer_service: None,
        sort_buffer_len_max: 100,
        sort_buffer_drain_timeout: Duration::from_millis(50),
        initial_backoff: Duration::from_secs(5),
        max_backoff: Duration::from_secs(5),
        dial_timeout: Duration::from_millis(200),
        export: Default::default(),
        otlp: Default::default(),
        tls: RelayTls {
            tls_cert_file: Some(write("relay.crt", cert.pem())),
            tls_key_file: Some(write("relay.key", key.serialize_pem())),
            ..Default::default()
        },
    });
    std::thread::sleep(Duration::from_millis(300));
    let server = relay.address.to_string();
    let ca_arg = ca_file.to_str().unwrap();
    let tls = ["--tls", "--tls-server-name", "relay.lumen.local"];
    let status = |extra: &[&str]| {
        let mut args = vec!["status", "--server", &server];
        args.extend_from_slice(&tls);
        args.extend_from_slice(extra);
        lumen(&args)
    };
    let (code, out, err) = status(&["--tls-ca-cert-files", ca_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("Healthcheck (via {server}): Ok\n")), "{out}");
    assert!(
        out.contains("Connected Nodes: 0/1\nUnavailable Nodes: 127.0.0.1:1\n"),
        "{out}"
    );

    // Without the relay's CA the client refuses its certificate, and says so.
    let (code, _, err) = status(&[]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            format!(
                "error: TLS with {server}: the server's certificate was refused: it is signed by a CA this client does not trust\n"
            )
            .as_str()
        )
    );
    drop(relay);
    std::fs::remove_dir_all(dir).unwrap();
}
