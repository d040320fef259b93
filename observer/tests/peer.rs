//! Hubble's Peer service end to end: the real `lumen-observer` announcing the
//! nodes of a `--nodes-file` that is rewritten while a Notify stream is open,
//! through the generated tonic client. Needs root: run `scripts/test.sh`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use lumen_proto::peer::{peer_client::PeerClient, ChangeNotification, ChangeNotificationType, NotifyRequest, Tls};
use lumen_proto::tonic::transport::{Channel, Endpoint, Uri};
use lumen_proto::tonic::Streaming;
use lumen_testbed::Process;
use support::*;

use ChangeNotificationType::{PeerAdded, PeerDeleted, PeerUpdated};

/// More than one poll of the nodes file.
const QUIET: Duration = Duration::from_millis(2500);

fn change(kind: ChangeNotificationType, name: &str, address: &str, tls: Option<&str>) -> ChangeNotification {
    ChangeNotification {
        name: name.into(),
        address: address.into(),
        r#type: kind as i32,
        tls: tls.map(|s| Tls { server_name: s.into() }),
    }
}

/// Replaces the file in one step, as an operator (or a ConfigMap mount)
/// should, so the observer never reads half of it.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn notify(channel: Channel) -> Streaming<ChangeNotification> {
    PeerClient::new(channel)
        .notify(NotifyRequest {})
        .await
        .expect("Notify")
        .into_inner()
}

/// The next `n` notifications, each within 5 s, then nothing more for
/// [`QUIET`] (the stream staying open).
async fn expect(stream: &mut Streaming<ChangeNotification>, expected: &[ChangeNotification]) {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < expected.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.message()).await {
            Ok(Ok(Some(n))) => got.push(n),
            Ok(other) => panic!("stream ended after {got:?}: {other:?}"),
            Err(_) => panic!("only {got:?} within 5 s, expected {expected:?}"),
        }
    }
    assert_eq!(got, expected);
    match tokio::time::timeout(QUIET, stream.message()).await {
        Err(_) => {}
        Ok(other) => panic!("after {got:?}, unexpected {other:?}"),
    }
}

/// The observer as a process this test owns, so it can be stopped with
/// SIGTERM; its log goes to `log`.
fn spawn_observer(c: &Cluster, extra: &[&str], log: &Path) -> Process {
    let mut cmd = c.observer_command("", extra);
    cmd.stdout(Stdio::null()).stderr(std::fs::File::create(log).unwrap());
    let mut process = c.node.spawn(cmd).expect("spawn lumen-observer");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(c.call(Request::ListEndpoints), Ok(Response::Endpoints { .. })) {
        if let Ok(Some(status)) = process.try_wait() {
            panic!(
                "lumen-observer exited with {status}: {}",
                std::fs::read_to_string(log).unwrap()
            );
        }
        assert!(Instant::now() < deadline, "lumen-observer did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    process
}

fn warnings(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .matches("nodes file not applied")
        .count()
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn notify_announces_the_nodes_file_and_each_change_to_it() {
    let c = cluster(&[("frontend", &[("app", "frontend")])]);
    let nodes: PathBuf = c.dir.join("nodes.yaml");
    let log = c.dir.join("observer.log");
    write_atomically(
        &nodes,
        "nodes:\n  - name: node2\n    address: \"[fd01::2]:4244\"\n  - name: node1\n    address: 192.168.200.1:4244\n    tls-server-name: node1.lumen.local\n",
    );
    let mut observer = spawn_observer(&c, &["--nodes-file", nodes.to_str().unwrap()], &log);
    let rt = runtime();
    rt.block_on(async {
        let channel = lumen_observer::server::connect_unix(&c.grpc_socket()).await.unwrap();
        let mut stream = notify(channel.clone()).await;
        expect(
            &mut stream,
            &[
                change(PeerAdded, "node1", "192.168.200.1:4244", Some("node1.lumen.local")),
                change(PeerAdded, "node2", "[fd01::2]:4244", None),
            ],
        )
        .await;

        write_atomically(
            &nodes,
            "nodes:\n  - name: node2\n    address: 192.168.200.2:4244\n  - name: node3\n    address: 192.168.200.3:4244\n    tls-server-name: node3.lumen.local\n",
        );
        expect(
            &mut stream,
            &[
                change(PeerDeleted, "node1", "192.168.200.1:4244", Some("node1.lumen.local")),
                change(PeerUpdated, "node2", "192.168.200.2:4244", None),
                change(PeerAdded, "node3", "192.168.200.3:4244", Some("node3.lumen.local")),
            ],
        )
        .await;

        // Invalid: nothing is sent, the stream stays open, the last valid
        // set stays, and the warning is logged once for this version.
        write_atomically(
            &nodes,
            "nodes:\n  - name: node2\n    address: 192.168.200.2:4244\n  - name: node2\n    address: 192.168.200.9:4244\n",
        );
        expect(&mut stream, &[]).await;
        assert_eq!(warnings(&log), 1, "{}", std::fs::read_to_string(&log).unwrap());
        let mut late = notify(channel.clone()).await;
        expect(
            &mut late,
            &[
                change(PeerAdded, "node2", "192.168.200.2:4244", None),
                change(PeerAdded, "node3", "192.168.200.3:4244", Some("node3.lumen.local")),
            ],
        )
        .await;

        write_atomically(
            &nodes,
            "nodes:\n  - name: node2\n    address: 192.168.200.2:4244\n  - name: node3\n    address: 192.168.200.3:4244\n  - name: node4\n    address: 192.168.200.4:4244\n",
        );
        let diff = [
            change(PeerUpdated, "node3", "192.168.200.3:4244", None),
            change(PeerAdded, "node4", "192.168.200.4:4244", None),
        ];
        expect(&mut stream, &diff).await;
        expect(&mut late, &diff).await;

        // Shutdown ends open streams cleanly, rather than cutting them.
        // SAFETY: kill(2) on the pid of our own child.
        assert_eq!(unsafe { libc::kill(observer.pid() as i32, libc::SIGTERM) }, 0);
        let end = tokio::time::timeout(Duration::from_secs(2), stream.message()).await;
        assert!(matches!(end, Ok(Ok(None))), "{end:?}");
    });
    let status = observer.wait_timeout(Duration::from_secs(10)).unwrap();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert_eq!(warnings(&log), 1);
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn without_a_nodes_file_the_observer_announces_its_own_tcp_address() {
    let mut c = cluster(&[("frontend", &[("app", "frontend")])]);
    c.start_observer("", &[]);
    let rt = runtime();
    rt.block_on(async {
        let channel = lumen_observer::server::connect_unix(&c.grpc_socket()).await.unwrap();
        // Only a Unix socket: nothing a relay could dial.
        expect(&mut notify(channel).await, &[]).await;
    });
    c.kill_observer();

    c.start_observer("", &["--listen-address", "127.0.0.1:4244"]);
    let netns = c.node.netns.clone();
    rt.block_on(async {
        // 127.0.0.1 of the node's namespace: connect from inside it.
        let channel = Endpoint::try_from("http://127.0.0.1:4244")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let netns = netns.clone();
                async move {
                    let std = lumen_testbed::in_netns(&netns, || std::net::TcpStream::connect("127.0.0.1:4244"))
                        .map_err(std::io::Error::other)??;
                    std.set_nonblocking(true)?;
                    Ok::<_, std::io::Error>(TokioIo::new(tokio::net::TcpStream::from_std(std)?))
                }
            }))
            .await
            .expect("connect over TCP inside the node");
        expect(
            &mut notify(channel).await,
            &[change(PeerAdded, &c.node_name, "127.0.0.1:4244", None)],
        )
        .await;
    });
}

#[test]
#[ignore = "needs root and a BPF-capable kernel: run scripts/test.sh"]
fn a_bad_nodes_file_stops_the_observer_naming_file_and_line() {
    let c = cluster(&[("frontend", &[("app", "frontend")])]);
    let nodes = c.dir.join("nodes.yaml");
    let flags = ["--nodes-file", nodes.to_str().unwrap()];
    let cases = [
        (
            "nodes:\n  - name: node1\n    address: 192.168.200.1:4244\n  - name: node1\n    address: 192.168.200.2:4244\n",
            ":4: node node1 is declared twice",
        ),
        (
            "nodes:\n  - name: node1\n    address: 192.168.200.1\n",
            ":2:5: nodes[0]: address \"192.168.200.1\" is not IP:PORT, IPv6 in brackets and quoted: \"[fd01::1]:4244\"",
        ),
        (
            "nodes:\n  - name: node1\n    address: 192.168.200.1:4244\n    port: 4244\n",
            ":4:5: nodes[0]: unknown field `port`, expected one of `name`, `address`, `tls-server-name`",
        ),
    ];
    for (text, reason) in cases {
        std::fs::write(&nodes, text).unwrap();
        let out = c.observer_command("", &flags).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("error: {}{reason}", nodes.display())), "{err}");
    }
    let missing = c.dir.join("missing.yaml");
    let out = c
        .observer_command("", &["--nodes-file", missing.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("error: {}: cannot read", missing.display())),
        "{err}"
    );
    assert!(!c.pin_dir().exists(), "nothing was pinned by failed starts");
}
