//! Endpoints: the workloads whose interfaces the datapath guards, and the
//! standalone endpoint source (a YAML file plus runtime additions).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use lumen_policy::compile::NamedPort;
use lumen_policy::names::is_dns_label;

use crate::identity::{self, Labels};
use crate::source::{self, FileError};

/// One endpoint as an operator declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Host-side interface to guard. Without one the endpoint is only known
    /// by its IPs (it lives elsewhere, e.g. on another node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    pub ips: Vec<IpAddr>,
    /// Ports the endpoint declares by name, for policies' named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
}

/// A named port, as a container declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub name: String,
    pub port: u16,
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_protocol() -> String {
    "TCP".to_string()
}

impl PortSpec {
    fn named_port(&self) -> Result<NamedPort, String> {
        let proto = match self.protocol.as_str() {
            "TCP" => 6,
            "UDP" => 17,
            "SCTP" => 132,
            other => {
                return Err(format!(
                    "port {:?}: unknown protocol {other:?} (TCP, UDP, SCTP)",
                    self.name
                ))
            }
        };
        if self.port == 0 {
            return Err(format!("port {:?}: port 0 is not a port (1-65535)", self.name));
        }
        Ok(NamedPort {
            name: self.name.clone(),
            port: self.port,
            proto,
        })
    }
}

fn default_namespace() -> String {
    "default".to_string()
}

impl EndpointSpec {
    /// `namespace/name`, the way Hubble names pods.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn security_labels(&self) -> Labels {
        Labels::for_endpoint(&self.labels, &self.namespace)
    }

    /// Endpoint id: small, stable for the same name on this node.
    pub fn endpoint_id(&self) -> u32 {
        1 + (identity::fnv1a(self.key().as_bytes()) % 65_535) as u32
    }

    /// The named ports policies can refer to (validated).
    pub fn named_ports(&self) -> Vec<NamedPort> {
        self.ports.iter().filter_map(|p| p.named_port().ok()).collect()
    }

    /// Checks one endpoint on its own; returns the reason it is unusable.
    pub fn validate(&self) -> Result<(), String> {
        if !is_dns_label(&self.name) {
            return Err(format!(
                "endpoint name {:?} is not a DNS label (a-z, 0-9, '-', at most 63)",
                self.name
            ));
        }
        if !is_dns_label(&self.namespace) {
            return Err(format!(
                "namespace {:?} of {} is not a DNS label",
                self.namespace, self.name
            ));
        }
        if self.ips.is_empty() {
            return Err(format!("endpoint {} has no ips", self.key()));
        }
        if let Some(ifname) = &self.interface {
            if ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ']) {
                return Err(format!(
                    "interface {ifname:?} of {} is not a valid interface name",
                    self.key()
                ));
            }
        }
        let mut port_names = HashSet::new();
        for p in &self.ports {
            p.named_port().map_err(|r| format!("{} {r}", self.key()))?;
            if !port_names.insert(&p.name) {
                return Err(format!("{}: port name {:?} is declared twice", self.key(), p.name));
            }
        }
        for (k, v) in &self.labels {
            if k.is_empty() || k.contains(['=', ',', ' ']) || v.contains([',', ' ']) {
                return Err(format!("label {k:?}={v:?} of {} is not a valid label", self.key()));
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointFile {
    endpoints: Vec<EndpointSpec>,
}

/// Reads and validates an endpoint file as a whole.
pub fn load_file(path: &Path) -> Result<Vec<EndpointSpec>, FileError> {
    let doc = source::read::<EndpointFile>(path, "endpoints")?;
    check_set(&doc.value.endpoints).map_err(|(i, e)| doc.invalid(i, e.to_string()))?;
    Ok(doc.value.endpoints)
}

/// Why a set of endpoints is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// One endpoint is unusable on its own.
    #[error("{reason}")]
    Invalid { reason: String },
    #[error("endpoint {key} is declared twice")]
    Duplicate { key: String },
    #[error("ip {ip} of {key} is already used by another endpoint")]
    IpTaken { ip: IpAddr, key: String },
    #[error("interface {ifname} of {key} is already used by another endpoint")]
    InterfaceTaken { ifname: String, key: String },
}

/// Validates a set of endpoints together: each on its own, then no two
/// sharing a name, an IP or an interface. On error: the offending index.
pub fn check_set(endpoints: &[EndpointSpec]) -> Result<(), (usize, SetError)> {
    let mut names = HashSet::new();
    let mut ips = HashSet::new();
    let mut ifaces = HashSet::new();
    for (i, ep) in endpoints.iter().enumerate() {
        ep.validate().map_err(|reason| (i, SetError::Invalid { reason }))?;
        if !names.insert(ep.key()) {
            return Err((i, SetError::Duplicate { key: ep.key() }));
        }
        for ip in &ep.ips {
            if !ips.insert(*ip) {
                return Err((i, SetError::IpTaken { ip: *ip, key: ep.key() }));
            }
        }
        if let Some(ifname) = &ep.interface {
            if !ifaces.insert(ifname.clone()) {
                let ifname = ifname.clone();
                return Err((i, SetError::InterfaceTaken { ifname, key: ep.key() }));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile_lite::TempFile {
        let f = tempfile_lite::TempFile::new("endpoints.yaml");
        std::fs::File::create(f.path())
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        f
    }

    mod tempfile_lite {
        use std::path::{Path, PathBuf};
        pub struct TempFile(PathBuf);
        impl TempFile {
            pub fn new(name: &str) -> Self {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                TempFile(std::env::temp_dir().join(format!("lumen-test-{}-{n}-{name}", std::process::id())))
            }
            pub fn path(&self) -> &Path {
                &self.0
            }
        }
        impl Drop for TempFile {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn parses_a_valid_file() {
        let f = file(
            "endpoints:\n  - name: frontend\n    labels: {app: frontend}\n    interface: lx0h\n    ips: [10.0.0.1, 'fd00::1']\n  - name: db\n    namespace: prod\n    ips: [10.0.9.9]\n",
        );
        let eps = load_file(f.path()).unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].key(), "default/frontend");
        assert_eq!(eps[0].interface.as_deref(), Some("lx0h"));
        assert_eq!(
            eps[0].ips,
            vec!["10.0.0.1".parse::<IpAddr>().unwrap(), "fd00::1".parse().unwrap()]
        );
        assert_eq!(eps[1].key(), "prod/db");
        assert_eq!(eps[1].interface, None);
        assert_eq!(eps[1].security_labels().get(identity::NAMESPACE_LABEL), Some("prod"));
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let cases = [
            (
                "endpoints:\n  - name: a\n    ips: [10.0.0.300]\n",
                ":3:",
                "invalid IP address syntax",
            ),
            (
                "endpoints:\n  - name: a\n    ips: [10.0.0.1]\n    colour: red\n",
                ":4:",
                "unknown field `colour`",
            ),
            (
                "endpoints:\n  - name: a\n    ips: [10.0.0.1]\n  - name: a\n    ips: [10.0.0.2]\n",
                ":4:",
                "endpoint default/a is declared twice",
            ),
            (
                "endpoints:\n  - name: a\n    ips: [10.0.0.1]\n  - name: b\n    ips: [10.0.0.1]\n",
                ":4:",
                "ip 10.0.0.1 of default/b is already used",
            ),
            (
                "endpoints:\n  - name: Bad_Name\n    ips: [10.0.0.1]\n",
                ":2:",
                "is not a DNS label",
            ),
            ("endpoints:\n  - name: a\n    ips: []\n", ":2:", "has no ips"),
            (
                "endpoints:\n  - name: a\n    interface: waytoolonginterfacename\n    ips: [10.0.0.1]\n",
                ":2:",
                "not a valid interface name",
            ),
            ("endpoints: [\n", ":2:", ""),
        ];
        for (text, line, reason) in cases {
            let f = file(text);
            let err = load_file(f.path()).unwrap_err().to_string();
            assert!(err.starts_with(&f.path().display().to_string()), "{err}");
            assert!(err.contains(line), "{text:?} -> {err}");
            assert!(err.contains(reason), "{text:?} -> {err}");
        }
    }

    #[test]
    fn missing_file_is_reported() {
        let err = crate::error_chain(&load_file(Path::new("/nonexistent/eps.yaml")).unwrap_err());
        assert_eq!(
            err,
            "/nonexistent/eps.yaml: cannot read: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn endpoint_ids_are_stable() {
        let ep = EndpointSpec {
            name: "frontend".into(),
            namespace: "default".into(),
            labels: BTreeMap::new(),
            interface: None,
            ips: vec![],
            ports: vec![],
        };
        assert_eq!(ep.endpoint_id(), ep.clone().endpoint_id());
        assert!((1..=65_535).contains(&ep.endpoint_id()));
    }
}
