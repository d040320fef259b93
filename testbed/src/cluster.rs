//! A multi-node cluster for tests and benchmarks: nodes joined by the
//! fabric, pods on them, and the files each node's observer reads (its
//! endpoints, the policy, the cluster's nodes file) in a directory of its
//! own. Starting the observers is the observer crate's part
//! (`lumen_observer::testing`); this one needs nothing but the testbed.
//!
//! ```no_run
//! # fn main() -> Result<(), lumen_testbed::Error> {
//! use std::net::Ipv4Addr;
//! use lumen_testbed::cluster::ClusterSpec;
//!
//! let cluster = ClusterSpec::new("doc")
//!     .app_pod("a", "n1", Ipv4Addr::new(10, 1, 0, 1))
//!     .app_pod("b", "n2", Ipv4Addr::new(10, 1, 0, 2))
//!     .echo_ports(&[80])
//!     .build()?;
//! assert!(cluster.request("a", "b", 80));
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::{Error, Node, Pod, PodSpec, ServerGuard, Testbed};

/// The port of every node's Observer API on the fabric, unless
/// [`ClusterSpec::api_port`] says otherwise (Hubble's).
pub const API_PORT: u16 = 4244;

/// What to build; see [`ClusterSpec::build`].
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    tag: String,
    nodes: Vec<String>,
    pods: Vec<(String, PodSpec)>,
    api_port: u16,
    policy: String,
    echo_ports: Vec<u16>,
    listed: Option<Vec<String>>,
    fabric: bool,
}

impl ClusterSpec {
    /// An empty cluster; its files go to `<tmp>/lumen-<tag>-<prefix>`.
    pub fn new(tag: &str) -> ClusterSpec {
        ClusterSpec {
            tag: tag.to_string(),
            nodes: Vec::new(),
            pods: Vec::new(),
            api_port: API_PORT,
            policy: String::new(),
            echo_ports: Vec::new(),
            listed: None,
            fabric: true,
        }
    }

    /// A node without pods (nodes are also created by [`ClusterSpec::pod`]),
    /// in the order they are first named.
    pub fn node(mut self, node: &str) -> ClusterSpec {
        if !self.nodes.iter().any(|n| n == node) {
            self.nodes.push(node.to_string());
        }
        self
    }

    /// Pod `spec` on `node`.
    pub fn pod(self, node: &str, spec: PodSpec) -> ClusterSpec {
        let mut s = self.node(node);
        s.pods.push((node.to_string(), spec));
        s
    }

    /// Pod `name` on `node` in namespace default, labelled `app=<name>`.
    pub fn app_pod(self, name: &str, node: &str, ipv4: Ipv4Addr) -> ClusterSpec {
        self.pod(node, PodSpec::new(name, "default", ipv4).label("app", name))
    }

    /// The port each node's Observer API listens on ([`API_PORT`] unless set).
    pub fn api_port(mut self, port: u16) -> ClusterSpec {
        self.api_port = port;
        self
    }

    /// The policy file every node starts with (empty unless set).
    pub fn policy(mut self, yaml: &str) -> ClusterSpec {
        self.policy = yaml.to_string();
        self
    }

    /// A TCP echo server on each of `ports` in every pod, for the cluster's
    /// lifetime.
    pub fn echo_ports(mut self, ports: &[u16]) -> ClusterSpec {
        self.echo_ports = ports.to_vec();
        self
    }

    /// The nodes the nodes file lists at first (all of them unless set);
    /// [`Cluster::write_nodes`] changes it later.
    pub fn listed_nodes(mut self, nodes: &[&str]) -> ClusterSpec {
        self.listed = Some(nodes.iter().map(|n| n.to_string()).collect());
        self
    }

    /// Leaves the nodes unjoined: no fabric, so no Observer API addresses
    /// and no nodes file (a single node needs none).
    pub fn without_fabric(mut self) -> ClusterSpec {
        self.fabric = false;
        self
    }

    /// Builds the testbed (nodes, then the fabric, then the pods), the echo
    /// servers and the files (the nodes file only with a fabric).
    pub fn build(self) -> Result<Cluster, Error> {
        let mut tb = Testbed::new()?;
        for n in &self.nodes {
            tb.add_node(n)?;
        }
        if self.fabric {
            tb.add_fabric()?;
        }
        let dir = std::env::temp_dir().join(format!("lumen-{}-{}", self.tag, tb.prefix()));
        let mut cluster = Cluster {
            servers: Vec::new(),
            tb,
            pods: BTreeMap::new(),
            dir,
            nodes: self.nodes,
            pod_nodes: Vec::new(),
            api_port: self.api_port,
        };
        for (node, spec) in self.pods {
            let name = spec.name.clone();
            let pod = cluster.tb.add_pod(&cluster.node(&node).clone(), spec)?;
            cluster.pods.insert(name.clone(), pod);
            cluster.pod_nodes.push((name, node));
        }
        for n in &cluster.nodes {
            let ndir = cluster.node_dir(n);
            std::fs::create_dir_all(&ndir).map_err(|e| Error::sys(format!("creating {}", ndir.display()), e))?;
            write(&cluster.endpoints_file(n), &cluster.endpoints(n))?;
            write(&cluster.policy_file(n), &self.policy)?;
        }
        if self.fabric {
            let listed = self.listed.unwrap_or_else(|| cluster.nodes.clone());
            cluster.write_nodes(&listed.iter().map(String::as_str).collect::<Vec<_>>());
        }
        for pod in cluster.pods.values() {
            for port in &self.echo_ports {
                cluster.servers.push(pod.tcp_echo_server(*port)?);
            }
        }
        Ok(cluster)
    }
}

fn write(path: &std::path::Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::sys(format!("writing {}", path.display()), e))
}

/// A built [`ClusterSpec`]. Dropping it stops the echo servers, removes its
/// directory and then the testbed's namespaces, also when a test panics.
pub struct Cluster {
    servers: Vec<ServerGuard>,
    /// The namespaces and links.
    pub tb: Testbed,
    /// Every pod by name.
    pub pods: BTreeMap<String, Pod>,
    /// Holds a directory per node ([`Cluster::node_dir`]) and the nodes file.
    pub dir: PathBuf,
    nodes: Vec<String>,
    /// (pod, node) in the order the pods were added.
    pod_nodes: Vec<(String, String)>,
    api_port: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.servers.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    /// The nodes' names as given to the spec, in order.
    pub fn node_names(&self) -> &[String] {
        &self.nodes
    }

    /// Node `n` of the testbed.
    pub fn node(&self, n: &str) -> &Node {
        self.tb
            .nodes()
            .iter()
            .find(|x| x.name == n)
            .unwrap_or_else(|| panic!("no node {n}"))
    }

    /// The name node `n` goes by in the cluster (unique per run, so pins of
    /// parallel tests never meet).
    pub fn name(&self, n: &str) -> String {
        format!("{}-{n}", self.tb.prefix())
    }

    /// True unless built [`ClusterSpec::without_fabric`].
    pub fn has_fabric(&self) -> bool {
        self.tb.fabric().is_some()
    }

    /// Node `n`'s Observer API on the fabric.
    pub fn api(&self, n: &str) -> SocketAddr {
        let address = self.node(n).address.expect("the fabric joined every node");
        SocketAddr::new(address.ipv4.into(), self.api_port)
    }

    /// Node `n`'s own directory: its endpoints and policy files, its sockets
    /// and state.
    pub fn node_dir(&self, n: &str) -> PathBuf {
        self.dir.join(n)
    }

    /// Node `n`'s endpoints file ([`Cluster::endpoints`]).
    pub fn endpoints_file(&self, n: &str) -> PathBuf {
        self.node_dir(n).join("endpoints.yaml")
    }

    /// Node `n`'s policy file (the spec's [`ClusterSpec::policy`]).
    pub fn policy_file(&self, n: &str) -> PathBuf {
        self.node_dir(n).join("policy.yaml")
    }

    /// The nodes file every node's observer watches.
    pub fn nodes_file(&self) -> PathBuf {
        self.dir.join("nodes.yaml")
    }

    /// Node `n`'s endpoints: every pod of the cluster, its own with their
    /// interfaces and the others by address, so identities agree everywhere.
    pub fn endpoints(&self, n: &str) -> String {
        let mut text = String::from("endpoints:\n");
        for (p, node) in &self.pod_nodes {
            let pod = &self.pods[p];
            let labels: Vec<String> = pod.labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let ips: Vec<String> = pod
                .ips()
                .iter()
                .map(|ip| match ip {
                    IpAddr::V4(ip) => ip.to_string(),
                    IpAddr::V6(ip) => format!("\"{ip}\""),
                })
                .collect();
            let _ = writeln!(text, "  - name: {p}");
            if pod.namespace != "default" {
                let _ = writeln!(text, "    namespace: {}", pod.namespace);
            }
            let _ = writeln!(
                text,
                "    labels: {{{}}}\n    ips: [{}]",
                labels.join(", "),
                ips.join(", ")
            );
            if node == n {
                let _ = writeln!(text, "    interface: {}", pod.host_ifname);
            }
        }
        text
    }

    /// Makes the nodes file list `nodes`, replaced in one step so no
    /// observer reads half of it.
    pub fn write_nodes(&self, nodes: &[&str]) {
        let mut text = String::from("nodes:\n");
        for n in nodes {
            let _ = writeln!(text, "  - name: {}\n    address: {}", self.name(n), self.api(n));
        }
        let tmp = self.dir.join("nodes.yaml.tmp");
        std::fs::write(&tmp, text).expect("writing the nodes file");
        std::fs::rename(tmp, self.nodes_file()).expect("replacing the nodes file");
    }

    /// True if pod `from` gets an answer from `to`'s TCP `port` within 700 ms.
    pub fn request(&self, from: &str, to: &str, port: u16) -> bool {
        let dst = SocketAddr::new(self.pods[to].ipv4.into(), port);
        self.pods[from]
            .tcp_request(dst, b"hi", Duration::from_millis(700))
            .is_ok()
    }
}
