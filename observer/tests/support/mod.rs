//! A node with pods on the testbed and a real `lumen-observer` process
//! guarding them. Everything is removed on drop, also when a test fails.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lumen_observer::identity::{IdentityAllocator, Labels};
use lumen_testbed::{Node, Pod, PodSpec, Process, Testbed};
use serde_json::Value;

mod control;

// Not every test binary uses every type.
#[allow(unused_imports)]
pub use control::{PolicyDocument, Request, Response};

pub const BPFFS_ROOT: &str = "/sys/fs/bpf/lumen";

/// The backend accepts TCP 80 from the frontend, nothing else.
pub const ALLOW_HTTP: &str = "\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: allow-http
spec:
  endpointSelector:
    matchLabels: {app: backend}
  ingress:
    - fromEndpoints:
        - matchLabels: {app: frontend}
      toPorts:
        - ports: [{port: \"80\", protocol: TCP}]
";

/// A CiliumNetworkPolicy in namespace default named `name` with `spec`
/// (YAML indented by two spaces).
pub fn cnp(name: &str, spec: &str) -> String {
    format!("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

pub struct Cluster {
    pub tb: Testbed,
    pub node: Node,
    pub pods: BTreeMap<String, Pod>,
    pub dir: PathBuf,
    pub node_name: String,
    /// Pods that are not endpoints: outside the cluster as far as policy goes.
    pub unguarded: std::collections::BTreeSet<String>,
    /// `name=PORT/PROTO` named ports per pod, for the endpoint file.
    pub named_ports: BTreeMap<String, Vec<(String, u16, String)>>,
    observer: Option<Process>,
}

/// `(name, labels)` of each pod; pod i gets 10.0.0.(i+1) and fd00::(i+1).
pub fn cluster(pods: &[(&str, &[(&str, &str)])]) -> Cluster {
    let specs = pods
        .iter()
        .enumerate()
        .map(|(i, (name, labels))| {
            let n = i as u8 + 1;
            let ipv6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n.into());
            let mut spec = PodSpec::new(name, "default", Ipv4Addr::new(10, 0, 0, n)).ipv6(ipv6);
            for (k, v) in *labels {
                spec = spec.label(k, v);
            }
            spec
        })
        .collect();
    cluster_of(specs)
}

/// Pods as given; every one is an endpoint unless [`Cluster::unguarded`]
/// says otherwise.
pub fn cluster_of(specs: Vec<PodSpec>) -> Cluster {
    let mut tb = Testbed::new().expect("testbed (run the tests as root: scripts/test.sh)");
    let node = tb.add_node("node").expect("node");
    let mut map = BTreeMap::new();
    for spec in specs {
        map.insert(spec.name.clone(), tb.add_pod(&node, spec).expect("pod"));
    }
    let node_name = format!("{}-node", tb.prefix());
    let dir = std::env::temp_dir().join(format!("lumen-e2e-{node_name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let c = Cluster {
        tb,
        node,
        pods: map,
        dir,
        node_name,
        unguarded: Default::default(),
        named_ports: Default::default(),
        observer: None,
    };
    c.write_endpoints();
    c
}

impl Cluster {
    pub fn pod(&self, name: &str) -> &Pod {
        &self.pods[name]
    }

    pub fn addr(&self, pod: &str, v6: bool, port: u16) -> SocketAddr {
        let p = self.pod(pod);
        let ip = if v6 {
            IpAddr::V6(p.ipv6.unwrap())
        } else {
            IpAddr::V4(p.ipv4)
        };
        SocketAddr::new(ip, port)
    }

    pub fn endpoints_file(&self) -> PathBuf {
        self.dir.join("endpoints.yaml")
    }

    pub fn policy_file(&self) -> PathBuf {
        self.dir.join("policy.yaml")
    }

    pub fn events_file(&self) -> PathBuf {
        self.dir.join("events.jsonl")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    /// Unix socket of the observer's gRPC API.
    pub fn grpc_socket(&self) -> PathBuf {
        self.dir.join("observer.sock")
    }

    pub fn pin_dir(&self) -> PathBuf {
        Path::new(BPFFS_ROOT).join(&self.node_name)
    }

    pub fn write_endpoints(&self) {
        let mut text = String::from("endpoints:\n");
        for pod in self.pods.values().filter(|p| !self.unguarded.contains(&p.name)) {
            text.push_str(&format!(
                "  - name: {}\n    namespace: {}\n    labels: {{",
                pod.name, pod.namespace
            ));
            let labels: Vec<String> = pod.labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            text.push_str(&labels.join(", "));
            let ips: Vec<String> = pod.ips().iter().map(|ip| format!("\"{ip}\"")).collect();
            text.push_str(&format!(
                "}}\n    interface: {}\n    ips: [{}]\n",
                pod.host_ifname,
                ips.join(", ")
            ));
            if let Some(ports) = self.named_ports.get(&pod.name) {
                text.push_str("    ports:\n");
                for (name, port, proto) in ports {
                    text.push_str(&format!("      - {{name: {name}, port: {port}, protocol: {proto}}}\n"));
                }
            }
        }
        std::fs::write(self.endpoints_file(), text).unwrap();
    }

    /// The identity every node computes for a pod's labels.
    pub fn identity(&self, pod: &str) -> u64 {
        let p = self.pod(pod);
        u64::from(IdentityAllocator::default().allocate(&Labels::for_endpoint(&p.labels, &p.namespace)))
    }

    /// The observer with `policy` (YAML) as its `--policy` file.
    pub fn observer_command(&self, policy: &str, extra: &[&str]) -> Command {
        std::fs::write(self.policy_file(), policy).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lumen-observer"));
        cmd.args(["--node-name", &self.node_name, "--netns", &self.node.netns]);
        if !extra.contains(&"--bpffs-root") {
            cmd.arg("--bpffs-root").arg(BPFFS_ROOT);
        }
        cmd.arg("--state-dir").arg(self.dir.join("state"));
        cmd.arg("--endpoints").arg(self.endpoints_file());
        cmd.arg("--policy").arg(self.policy_file());
        cmd.arg("--control-socket").arg(self.socket());
        cmd.arg("--socket").arg(self.grpc_socket());
        cmd.arg("--events-output").arg(self.events_file());
        cmd.args(extra);
        cmd.env("LUMEN_LOG", "warn");
        cmd
    }

    /// Starts the observer and waits until its control socket answers.
    pub fn start_observer(&mut self, policy: &str, extra: &[&str]) {
        let mut cmd = self.observer_command(policy, extra);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut process = self.node.spawn(cmd).expect("spawn lumen-observer");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Response::Endpoints { .. }) = self.call(Request::ListEndpoints) {
                break;
            }
            if let Ok(Some(status)) = process.try_wait() {
                let mut err = String::new();
                use std::io::Read;
                process.take_stderr().unwrap().read_to_string(&mut err).unwrap();
                panic!("lumen-observer exited with {status}: {err}");
            }
            assert!(Instant::now() < deadline, "lumen-observer did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.observer = Some(process);
    }

    /// The running observer's process id.
    pub fn observer_pid(&self) -> u32 {
        self.observer.as_ref().expect("an observer is running").pid()
    }

    /// The body of `GET /metrics` on `port`, fetched inside the node's namespace.
    pub fn scrape(&self, port: u16) -> String {
        use std::io::{Read, Write};
        lumen_testbed::in_netns(&self.node.netns, || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to /metrics");
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            let mut response = String::new();
            s.read_to_string(&mut response).unwrap();
            let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
            assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
            body.to_string()
        })
        .unwrap()
    }

    /// Kills the observer outright (SIGKILL), as a crash would.
    pub fn kill_observer(&mut self) {
        if let Some(mut p) = self.observer.take() {
            p.kill().unwrap();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    pub fn call(&self, request: Request) -> Result<Response, lumen_proto::tonic::transport::Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(control::call(&self.socket(), request))
    }

    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.events_file()).unwrap_or_default();
        text.lines()
            .filter(|l| l.ends_with('}'))
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    /// Flow events, waiting up to 5 s for one that matches `pred`.
    pub fn wait_flow(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(v) = self.events().into_iter().find(|e| e["kind"] == "flow" && pred(e)) {
                return v;
            }
            assert!(Instant::now() < deadline, "no matching flow among:\n{}", self.dump());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn flows(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["kind"] == "flow" && pred(e))
            .collect()
    }

    pub fn dump(&self) -> String {
        std::fs::read_to_string(self.events_file()).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_observer();
        let _ = lumen_observer::daemon::uninstall(&self.pin_dir());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Matches a flow by its 5-tuple-ish fields.
pub fn flow_is(e: &Value, dir: &str, src: IpAddr, dst: IpAddr, proto: u64, dport: u64) -> bool {
    e["direction"] == dir
        && e["source"] == src.to_string()
        && e["destination"] == dst.to_string()
        && e["protocol"] == proto
        && e["destination_port"] == dport
}

pub const SHORT: Duration = Duration::from_millis(700);
pub const LONG: Duration = Duration::from_secs(3);

/// The series of `family` (lines starting with its name and `{`).
pub fn series(body: &str, family: &str) -> Vec<String> {
    let prefix = format!("{family}{{");
    body.lines()
        .filter(|l| l.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

pub fn has(line: &str) -> impl Fn(&str) -> bool + '_ {
    move |body: &str| body.lines().any(|l| l == line)
}

/// The ones' complement sum Internet checksums are made of.
fn sum16(bytes: &[u8], mut acc: u32) -> u32 {
    for pair in bytes.chunks(2) {
        acc += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    acc
}

/// Sends one TCP SYN from pod `from` (port `sport`) to `dst:dport` with a
/// raw socket: a new connection that nothing answers or retransmits.
pub fn send_syn(from: &Pod, dst: Ipv4Addr, sport: u16, dport: u16) {
    let src = from.ipv4;
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&sport.to_be_bytes());
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&1u32.to_be_bytes()); // sequence number
    tcp.extend_from_slice(&0u32.to_be_bytes()); // acknowledgment number
    tcp.extend_from_slice(&[5 << 4, 0x02]); // header length 20, SYN
    tcp.extend_from_slice(&64240u16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    let pseudo = [&src.octets()[..], &dst.octets()[..], &[0, 6, 0, 20]].concat();
    let mut sum = sum16(&tcp, sum16(&pseudo, 0));
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    tcp[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    send_raw_ipv4(from, libc::IPPROTO_TCP, dst, &tcp);
}

/// Sends `payload` (a transport header and what follows) from inside pod
/// `from` to `dst` over IPv4 with a raw socket of `protocol`: packets the
/// testbed's traffic helpers do not make (a bare SYN, SCTP).
pub fn send_raw_ipv4(from: &lumen_testbed::Pod, protocol: i32, dst: Ipv4Addr, payload: &[u8]) {
    lumen_testbed::in_netns(&from.netns, || {
        // SAFETY: a raw socket we own, a sockaddr_in we build, closed at once.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, protocol);
            assert!(fd >= 0, "raw socket ({protocol}): {}", std::io::Error::last_os_error());
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(dst.octets()),
                },
                sin_zero: [0; 8],
            };
            let n = libc::sendto(
                fd,
                payload.as_ptr().cast(),
                payload.len(),
                0,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            );
            libc::close(fd);
            assert_eq!(n, payload.len() as isize, "sendto: {}", std::io::Error::last_os_error());
        }
    })
    .unwrap();
}
