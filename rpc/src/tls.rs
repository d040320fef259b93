//! TLS for the gRPC APIs: certificates read from PEM files with errors that
//! name the file, and handshake failures explained as certificate problems.

use std::path::{Path, PathBuf};

use lumen_proto::tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A certificate or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", file.display())]
pub struct TlsFileError {
    pub file: PathBuf,
    pub reason: String,
}

fn read_pem(file: &Path, what: &str, marker: &str) -> Result<Vec<u8>, TlsFileError> {
    let bytes = std::fs::read(file).map_err(|e| TlsFileError {
        file: file.to_path_buf(),
        reason: format!("cannot read the {what}: {e}"),
    })?;
    if !String::from_utf8_lossy(&bytes).contains(marker) {
        return Err(TlsFileError {
            file: file.to_path_buf(),
            reason: format!("not a PEM {what} (no \"{marker}\" block)"),
        });
    }
    Ok(bytes)
}

fn certificate(file: &Path, what: &str) -> Result<Vec<u8>, TlsFileError> {
    read_pem(file, what, "-----BEGIN CERTIFICATE-----")
}

fn key(file: &Path) -> Result<Vec<u8>, TlsFileError> {
    read_pem(file, "private key", "PRIVATE KEY-----")
}

/// A server's TLS: its certificate and key; with client CAs, clients must
/// present a certificate one of them signed (mTLS).
pub fn server_config(cert: &Path, key_file: &Path, client_cas: &[PathBuf]) -> Result<ServerTlsConfig, TlsFileError> {
    let identity = Identity::from_pem(certificate(cert, "certificate")?, key(key_file)?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if !client_cas.is_empty() {
        let mut pem = Vec::new();
        for ca in client_cas {
            pem.extend(certificate(ca, "client CA certificate")?);
            pem.push(b'\n');
        }
        config = config.client_ca_root(Certificate::from_pem(pem));
    }
    Ok(config)
}

/// How a client checks servers and, for mTLS, proves who it is.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// CA certificates (PEM) the servers' certificates must chain to.
    pub ca_files: Vec<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl ClientTls {
    /// The client configuration for a server that must present a
    /// certificate valid for `server_name`.
    pub fn config(&self, server_name: &str) -> Result<ClientTlsConfig, TlsFileError> {
        let mut config = ClientTlsConfig::new().domain_name(server_name);
        for ca in &self.ca_files {
            config = config.ca_certificate(Certificate::from_pem(certificate(ca, "CA certificate")?));
        }
        if let (Some(cert), Some(key_file)) = (&self.cert_file, &self.key_file) {
            config = config.identity(Identity::from_pem(
                certificate(cert, "client certificate")?,
                key(key_file)?,
            ));
        }
        Ok(config)
    }

    /// Reads every file once, so that a bad one is reported at start.
    pub fn check(&self) -> Result<(), TlsFileError> {
        self.config("check").map(|_| ())
    }
}

/// What a failed TLS connection says about certificates, in words: `None`
/// when the failure is not about a certificate.
pub fn explain(error_chain: &str) -> Option<String> {
    const SERVER: &str = "the server's certificate";
    const CLIENT: &str = "this client's certificate";
    // (markers in rustls' messages, whose certificate, why), most specific first.
    let reasons: [(&[&str], &str, &str); 9] = [
        (
            &["CertificateRequired", "certificate required"],
            CLIENT,
            "the server requires one and none was sent",
        ),
        (
            &["UnknownCA", "unknown ca"],
            CLIENT,
            "the server does not trust the CA that signed it",
        ),
        (&["CertificateExpired"], CLIENT, "the server says it has expired"),
        (&["BadCertificate", "bad certificate"], CLIENT, "the server rejected it"),
        (
            &["UnknownIssuer", "unknown issuer"],
            SERVER,
            "it is signed by a CA this client does not trust",
        ),
        (
            &["NotValidForName", "not valid for name"],
            SERVER,
            "it is not valid for the server name asked for",
        ),
        (&["Expired", "expired"], SERVER, "it has expired"),
        (&["NotValidYet", "not valid yet"], SERVER, "it is not valid yet"),
        (
            &["BadSignature", "bad signature"],
            SERVER,
            "its signature does not verify",
        ),
    ];
    let (_, whose, reason) = reasons
        .iter()
        .find(|(markers, ..)| markers.iter().any(|m| error_chain.contains(m)))?;
    Some(format!("{whose} was refused: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_certificate_failures() {
        assert_eq!(
            explain("transport error: invalid peer certificate: UnknownIssuer").as_deref(),
            Some("the server's certificate was refused: it is signed by a CA this client does not trust")
        );
        assert_eq!(
            explain("invalid peer certificate: Expired").as_deref(),
            Some("the server's certificate was refused: it has expired")
        );
        assert_eq!(
            explain("received fatal alert: CertificateRequired").as_deref(),
            Some("this client's certificate was refused: the server requires one and none was sent")
        );
        assert_eq!(
            explain("invalid peer certificate: certificate not valid for name \"x\"").as_deref(),
            Some("the server's certificate was refused: it is not valid for the server name asked for")
        );
        assert_eq!(explain("connection refused"), None);
    }

    #[test]
    fn bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("lumen-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("cert.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let err = server_config(&not_pem, &not_pem, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: not a PEM certificate (no \"-----BEGIN CERTIFICATE-----\" block)",
                not_pem.display()
            )
        );
        let missing = dir.join("nope.pem");
        let err = ClientTls {
            ca_files: vec![missing.clone()],
            ..Default::default()
        }
        .check()
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: cannot read the CA certificate: ", missing.display())),
            "{err}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
