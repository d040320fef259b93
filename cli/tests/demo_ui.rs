//! The README's main command, `lumen demo`, looked at in a real browser: the
//! demo runs its shop on a three-node testbed cluster with its relay and web
//! UI, and headless Chromium, driven by Playwright (`ui/web/tests/demo.mjs`),
//! checks that the map shows the shop and the paths its policies deny.
//! Screenshots go to `target/ui-artifacts-demo/`.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The demo, interrupted (as Ctrl-C does, so that it removes what it made)
/// and waited for when dropped, also when the test fails.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child this test spawned.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root, a BPF-capable kernel, Chromium and ui/web/node_modules: run scripts/test.sh"]
fn the_demo_in_a_real_browser() {
    // The demo starts the web UI it finds beside lumen.
    support::ui_binary();
    let node = format!("uidemo{}", std::process::id());
    let dir = support::temp("demo-ui");
    let (relay, ui) = (
        lumen_testbed::free_loopback_address(),
        lumen_testbed::free_loopback_address(),
    );
    let mut demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_lumen"))
            .args(["demo", "--duration", "5m", "--policy-after", "3s", "--node-name", &node])
            .args(["--relay-address", &relay, "--ui-address", &ui, "--control-socket"])
            .arg(dir.join("demo.sock"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start lumen demo"),
    );
    // Up when it prints the web UI's address.
    let mut out = BufReader::new(demo.0.stdout.take().unwrap());
    let ui_line = format!("  web UI           http://{ui}/  (service map and flows)");
    let mut printed = String::new();
    loop {
        let mut line = String::new();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "the demo stopped before its web UI was up:\n{printed}");
        printed.push_str(&line);
        if line.trim_end() == ui_line {
            break;
        }
    }
    // Its flows go on being printed: read them, so that it never blocks.
    let drain = std::thread::spawn(move || for _ in out.lines() {});

    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/web");
    let script = Command::new("node")
        .arg("tests/demo.mjs")
        .current_dir(&web)
        .env("LUMEN_UI_URL", format!("http://{ui}/"))
        .env("LUMEN_ARTIFACTS", lumen_testbed::artifacts_dir("ui-artifacts-demo"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (ui/setup.sh installs it)");
    let output = script.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    for line in said.lines() {
        eprintln!("browser: {line}");
    }
    assert!(
        output.status.success() && said.lines().any(|l| l == "PASS"),
        "the browser script failed ({}); its steps are above",
        output.status
    );
    drop(demo);
    drain.join().unwrap();
    for n in 1..=3 {
        assert!(!Path::new("/sys/fs/bpf/lumen").join(format!("{node}-node{n}")).exists());
    }
    std::fs::remove_dir_all(dir).unwrap();
}
