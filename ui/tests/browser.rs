//! The UI in a real browser: a three-node testbed cluster with real
//! observers, a relay and live traffic across three namespaces, one path
//! denied by policy; `lumen-ui` follows the relay, and headless Chromium,
//! driven by Playwright (`web/tests/browser.mjs`), checks what a user sees.
//! The script asks this test to act on the cluster (stop the relay, start
//! it again, stop a node) with `ACTION` lines on its stdout. Screenshots go
//! to `target/ui-artifacts/`.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use lumen_observer::testing::{self, ClusterSpec};
use lumen_relay::{RelayConfig, RelayHandle};
use lumen_testbed::{Pod, PodSpec};

/// A label value a user controls: it must show as text, never as markup.
/// The observers refuse such a label (Kubernetes' label syntax), so it
/// reaches the page through a second lumen-ui whose hub is fed directly.
const HTML_LABEL: &str = "<img src=x onerror=alert(1)><script>alert(2)</script>";

/// A lumen-ui server in this process (the same router as the binary's),
/// its hub holding one flow from a pod labelled [`HTML_LABEL`]; stopped
/// when dropped.
struct HtmlUi {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HtmlUi {
    fn start() -> HtmlUi {
        use lumen_proto::flow::{Endpoint, Flow, Verdict};
        use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
        let pod = |name: &str, labels: Vec<String>| Endpoint {
            identity: 4242,
            namespace: "evil".into(),
            pod_name: name.into(),
            labels,
            ..Default::default()
        };
        let flow = Flow {
            time: Some(std::time::SystemTime::now().into()),
            verdict: Verdict::Forwarded as i32,
            source: Some(pod("x-0", vec!["k8s:app=x".into(), format!("k8s:note={HTML_LABEL}")])),
            destination: Some(pod("y-0", vec!["k8s:app=y".into()])),
            ..Default::default()
        };
        let mut hub = lumen_ui::hub::Hub::new(10);
        hub.respond(GetFlowsResponse {
            response_types: Some(ResponseTypes::Flow(flow)),
            ..Default::default()
        });
        hub.follow(lumen_rpc::FollowEvent::Connected, std::time::SystemTime::now());
        let state = lumen_ui::api::AppState {
            hub: Arc::new(lumen_ui::hub::Shared::new(hub)),
            token: None,
            history: None,
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, lumen_ui::api::router(state))
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        HtmlUi {
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for HtmlUi {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// db (namespace data) admits cart (namespace shop) only: web's requests
/// to db are dropped on db's node, by this policy's default deny.
const POLICY: &str = "apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db-in, namespace: data}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: cart, k8s:io.kubernetes.pod.namespace: shop}}]
      toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]
";

/// A child process, killed and reaped when dropped (also on panic).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// TCP requests to port 80 on each (from, to) pair every 200 ms, until dropped.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(pairs: Vec<(Pod, Pod)>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    for (from, to) in &pairs {
                        let dst = SocketAddr::new(to.ipv4.into(), 80);
                        let _ = from.tcp_request(dst, b"hi", Duration::from_millis(300));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay(listen: &str, peer_service: &str) -> RelayHandle {
    RelayHandle::spawn(RelayConfig::parse_from([
        "lumen-relay",
        "--listen-address",
        listen,
        "--peer-service",
        peer_service,
        "--initial-backoff",
        "100ms",
        "--max-backoff",
        "500ms",
    ]))
}

#[test]
#[ignore = "needs root, a BPF-capable kernel, Chromium and ui/web/node_modules: run ui/setup.sh, then scripts/test.sh"]
fn the_map_and_the_flows_in_a_real_browser() {
    let ip = |last| Ipv4Addr::new(10, 6, 0, last);
    let spec = ClusterSpec::new("ui-browser")
        .pod("n1", PodSpec::new("web", "shop", ip(1)).label("app", "web"))
        .pod("n2", PodSpec::new("cart", "shop", ip(2)).label("app", "cart"))
        .pod("n3", PodSpec::new("payments", "pay", ip(3)).label("app", "payments"))
        .pod("n3", PodSpec::new("db", "data", ip(4)).label("app", "db"))
        .policy(POLICY)
        .echo_ports(&[80]);
    let mut cluster = testing::Cluster::new(spec);
    cluster.start_all();
    let n3_name = cluster.name("n3");
    let relay_listen = lumen_testbed::free_loopback_address();
    let peer_service = cluster.api("n1").to_string();
    let mut relay_handle = Some(relay(&relay_listen, &peer_service));
    let pod = |p: &str| cluster.pods[p].clone();
    let traffic = Traffic::start(vec![
        (pod("web"), pod("cart")),
        (pod("cart"), pod("payments")),
        (pod("cart"), pod("db")),
        (pod("web"), pod("db")),
    ]);

    // The observers hold a few seconds of flows before lumen-ui starts; it
    // follows from its start on, and the last 5 minutes reach back for them.
    std::thread::sleep(Duration::from_secs(3));
    let ui_started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let ui_listen = lumen_testbed::free_loopback_address();
    let ui = Killed(
        Command::new(env!("CARGO_BIN_EXE_lumen-ui"))
            .args(["--listen", &ui_listen, "--server", &relay_listen, "--history", "0s"])
            .env("LUMEN_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start lumen-ui"),
    );

    let html_ui = HtmlUi::start();

    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let mut script = Killed(
        Command::new("node")
            .arg("tests/browser.mjs")
            .current_dir(&web)
            .env("LUMEN_UI_URL", format!("http://{ui_listen}/"))
            .env("LUMEN_ARTIFACTS", lumen_testbed::artifacts_dir("ui-artifacts"))
            .env("LUMEN_HTML_LABEL", HTML_LABEL)
            .env("LUMEN_UI_HTML_URL", &html_ui.url)
            .env("LUMEN_UI_STARTED_MS", ui_started_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node (ui/setup.sh installs it)"),
    );
    let mut to_script = script.0.stdin.take().unwrap();
    let from_script = BufReader::new(script.0.stdout.take().unwrap());
    for line in from_script.lines() {
        let line = line.unwrap();
        eprintln!("browser: {line}");
        let Some(action) = line.strip_prefix("ACTION ") else {
            continue;
        };
        let reply = match action {
            "stop-relay" => {
                drop(relay_handle.take());
                "ok".to_string()
            }
            "start-relay" => {
                relay_handle = Some(relay(&relay_listen, &peer_service));
                "ok".to_string()
            }
            "stop-node" => {
                cluster.stop("n3");
                format!("ok {n3_name}")
            }
            other => panic!("the script asked for {other:?}"),
        };
        writeln!(to_script, "{reply}").unwrap();
    }
    let status = script.0.wait().unwrap();
    assert!(
        status.success(),
        "the browser script failed ({status}); its steps are above"
    );
    drop((traffic, ui, relay_handle, html_ui));
}
