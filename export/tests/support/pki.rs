//! A test PKI: a CA, and a certificate it signed for `localhost` and
//! 127.0.0.1 with its key, as PEM files. Included by the TLS tests of the
//! crates that serve over TLS (`#[path]`), as the benchmarks share theirs.

use std::path::{Path, PathBuf};

/// In `dir`: (`ca.pem`, `<name>.crt`, `<name>.key`).
pub fn pki(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let write = |file: String, pem: String| {
        let path = dir.join(file);
        std::fs::write(&path, pem).unwrap();
        path
    };
    (
        write("ca.pem".into(), ca.pem()),
        write(format!("{name}.crt"), leaf.pem()),
        write(format!("{name}.key"), key.serialize_pem()),
    )
}
