//! Removes what test processes that were killed outright left behind: their
//! network namespaces (with the veths and processes in them), the fabric
//! veths they had in this network namespace, and the BPF pins of the observers they ran, under /sys/fs/bpf/lumen. Only names that
//! carry the testbed's prefix of a process that no longer exists are touched.

use std::path::Path;

use lumen_testbed::OwnerPrefix;

const PIN_ROOT: &str = "/sys/fs/bpf/lumen";

fn main() {
    let netns = match lumen_testbed::sweep_stale() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: sweeping stale network namespaces and links: {e}");
            std::process::exit(1);
        }
    };
    let mut pins = 0;
    if let Ok(dir) = std::fs::read_dir(PIN_ROOT) {
        for entry in dir.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(owner) = OwnerPrefix::parse(&name) else {
                continue;
            };
            if Path::new("/proc").join(owner.pid.to_string()).exists() {
                continue;
            }
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => pins += 1,
                Err(e) => eprintln!("warning: cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
    if netns + pins > 0 {
        eprintln!("removed {netns} network namespaces or links and {pins} pin directories left by dead test processes");
    }
}
