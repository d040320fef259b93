//! Network namespace plumbing: names, creation/deletion, entering, sweeping.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::{cmd, Error};

/// First bytes of every name the testbed creates; [`sweep_stale`] only
/// considers netns whose names start with it.
pub const TAG: &str = "lt";

/// Where `ip netns` keeps its bind-mounted namespace files.
pub(crate) const NETNS_DIR: &str = "/var/run/netns";

/// Largest interface name Linux accepts (`IFNAMSIZ` minus the NUL).
pub(crate) const IFNAME_MAX: usize = 15;

/// Per-process testbed counter; wraps so prefixes stay short. A wrapped value
/// is only reused once [`next_prefix`] has checked it is free.
static SEQ: AtomicU32 = AtomicU32::new(0);
const SEQ_MASK: u32 = 0xfff;

/// The parsed form of a testbed prefix `lt{pid:x}s{seq:x}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OwnerPrefix {
    /// Id of the process that created the testbed.
    pub pid: u32,
    /// Per-process sequence number of the testbed.
    pub seq: u32,
}

impl OwnerPrefix {
    /// Parses a prefix, or any name that starts with a prefix followed by `-`
    /// (node and pod netns names). Returns `None` for foreign names.
    pub fn parse(name: &str) -> Option<OwnerPrefix> {
        let rest = name.strip_prefix(TAG)?;
        let prefix = rest.split('-').next()?;
        let (pid, seq) = prefix.split_once('s')?;
        Some(OwnerPrefix {
            pid: parse_hex(pid).filter(|&p| p > 0 && p <= i32::MAX as u32)?,
            seq: parse_hex(seq)?,
        })
    }
}

impl fmt::Display for OwnerPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TAG}{:x}s{:x}", self.pid, self.seq)
    }
}

/// Lowercase hex only, as [`OwnerPrefix`]'s `Display` writes it, so that
/// names like `ltABCsX` from other tools are never mistaken for ours.
fn parse_hex(s: &str) -> Option<u32> {
    let ok = !s.is_empty() && s.len() <= 8 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        u32::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

/// Picks a fresh prefix for this process, skipping any for which a netns
/// already exists (left behind by a dead process that had the same pid).
pub(crate) fn next_prefix() -> Result<OwnerPrefix, Error> {
    let existing = list_netns()?;
    let pid = std::process::id();
    for _ in 0..=SEQ_MASK {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed) & SEQ_MASK;
        let prefix = OwnerPrefix { pid, seq };
        if !existing.iter().any(|n| OwnerPrefix::parse(n) == Some(prefix)) {
            return Ok(prefix);
        }
    }
    Err(Error::Invalid {
        what: "testbed prefix".into(),
        reason: format!("all {} prefixes for pid {pid} are in use", SEQ_MASK + 1),
    })
}

/// Name of the host-side veth of the pod with index `idx`.
pub(crate) fn host_ifname(prefix: &str, idx: u32) -> Result<String, Error> {
    let name = format!("{prefix}h{idx:x}");
    if name.len() > IFNAME_MAX {
        return Err(Error::Invalid {
            what: format!("interface name {name:?}"),
            reason: format!("longer than {IFNAME_MAX} bytes; too many pods in one testbed"),
        });
    }
    Ok(name)
}

/// Accepts node and pod names that are safe in file and netns names.
pub(crate) fn validate_name(kind: &str, name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > 63 {
        Some("must be at most 63 bytes")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        Some("only ASCII letters, digits, '-', '_' and '.' are allowed")
    } else if name.starts_with(['-', '.']) {
        Some("must not start with '-' or '.'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::Invalid {
            what: format!("{kind} name {name:?}"),
            reason: reason.into(),
        }),
        None => Ok(()),
    }
}

fn netns_path(netns: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(netns)
}

pub(crate) fn open_netns(netns: &str) -> Result<File, Error> {
    if netns.is_empty() || netns.contains('/') {
        return Err(Error::Invalid {
            what: format!("netns name {netns:?}"),
            reason: "must be a plain name under /var/run/netns".into(),
        });
    }
    // std opens with O_CLOEXEC, so spawned programs never inherit it.
    File::open(netns_path(netns)).map_err(|e| Error::sys(format!("opening netns {netns}"), e))
}

/// Moves the calling thread into the netns behind `file`.
fn enter(file: &File, netns: &str) -> Result<(), Error> {
    // SAFETY: plain syscall on a valid fd; it only affects the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(Error::sys(
            format!("setns into netns {netns}"),
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Runs `f` on a fresh OS thread that first joined the network namespace
/// `/var/run/netns/<netns>`, and returns its result. Sockets created by `f`
/// belong to that netns and may be used from any thread afterwards. A panic
/// in `f` is propagated to the caller.
pub fn in_netns<F, R>(netns: &str, f: F) -> Result<R, Error>
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    let file = open_netns(netns)?;
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name(format!("netns {netns}"))
            .spawn_scoped(scope, move || {
                enter(&file, netns)?;
                drop(file);
                Ok(f())
            })
            .map_err(|e| Error::sys("spawning a netns thread", e))?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Writes `(key, value)` sysctls inside `netns`; keys are `/proc/sys`
/// relative paths such as `net/ipv4/ip_forward`. `/proc/sys/net` resolves
/// against the netns of the *thread* that opens it, hence [`in_netns`].
pub(crate) fn write_sysctls(netns: &str, values: &[(&str, &str)]) -> Result<(), Error> {
    in_netns(netns, || {
        for (key, value) in values {
            let path = format!("/proc/sys/{key}");
            fs::write(&path, value)
                .map_err(|e| Error::sys(format!("writing {value} to {path} in netns {netns}"), e))?;
        }
        Ok(())
    })?
}

/// Names of all named network namespaces (`ip netns list`, without ids).
pub fn list_netns() -> Result<Vec<String>, Error> {
    let entries = match fs::read_dir(NETNS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::sys(format!("listing {NETNS_DIR}"), e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::sys(format!("listing {NETNS_DIR}"), e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// `ip netns add` sets up the shared `/var/run/netns` mount on first use and
/// concurrent first uses can stack mounts; serialising costs little.
static CREATE: Mutex<()> = Mutex::new(());

/// Creates the named netns.
pub(crate) fn create_netns(netns: &str) -> Result<(), Error> {
    let _guard = CREATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    cmd::ip(&["netns", "add", netns]).map(drop)
}

/// SIGKILLs every process (other than this one) whose main thread lives in
/// one of `names`, like `ip netns pids`, so that nothing keeps a namespace
/// alive after its name is gone. One `/proc` scan serves all names. Returns
/// how many processes were signalled.
pub(crate) fn kill_pids_in(names: &[String]) -> Result<usize, Error> {
    let mut targets = Vec::with_capacity(names.len());
    let mut first_error = None;
    for name in names {
        match fs::metadata(netns_path(name)) {
            Ok(meta) => targets.push((meta.dev(), meta.ino())),
            Err(e) => {
                first_error.get_or_insert(Error::sys(format!("stat of netns {name}"), e));
            }
        }
    }
    let me = std::process::id();
    let procs = fs::read_dir("/proc").map_err(|e| Error::sys("listing /proc", e))?;
    let mut killed = 0;
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Processes may exit while we scan; those simply fail to stat.
        let Ok(meta) = fs::metadata(format!("/proc/{pid}/ns/net")) else {
            continue;
        };
        if targets.contains(&(meta.dev(), meta.ino())) {
            // SAFETY: sending a signal has no memory-safety implications.
            if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(killed),
    }
}

/// Deletes the named netns. The namespace itself (and the veth ends inside)
/// goes away once nothing references it any more.
pub(crate) fn delete_netns(netns: &str) -> Result<(), Error> {
    cmd::ip(&["netns", "delete", netns]).map(drop)
}

/// Whether a process with this pid exists (in our pid namespace).
fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Deletes testbed netns, and fabric veths in the caller's netns, left
/// behind by processes that no longer exist; returns how many netns and
/// links were deleted. Those of live processes (including this one) are
/// never touched. Pids are checked in the caller's pid namespace, so run it
/// where the testbeds' creators are visible, and in the netns they ran in.
pub fn sweep_stale() -> Result<usize, Error> {
    let is_stale = |owner: OwnerPrefix| !pid_alive(owner.pid);
    let stale: Vec<String> = list_netns()?
        .into_iter()
        .filter(|name| OwnerPrefix::parse(name).is_some_and(is_stale))
        .collect();
    let mut first_error = kill_pids_in(&stale).err();
    let mut deleted = 0;
    // Deleting a fabric netns takes its veth to the caller's netns along,
    // but asynchronously; deleting the veth first is immediate.
    match crate::fabric::stale_root_links(is_stale) {
        Ok(links) => {
            for link in links {
                match cmd::ip(&["link", "del", &link]) {
                    Ok(_) => deleted += 1,
                    // Another sweep (or the kernel, tearing down the peer's
                    // netns) got there first.
                    Err(_) if cmd::ip(&["link", "show", "dev", &link]).is_err() => {}
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        Err(e) => {
            first_error.get_or_insert(e);
        }
    }
    for name in &stale {
        match delete_netns(name) {
            Ok(()) => deleted += 1,
            // Another sweep, e.g. of a test process running in parallel,
            // got there first.
            Err(_) if !netns_path(name).exists() => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(deleted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_round_trips() {
        let p = OwnerPrefix { pid: 0x1f3a, seq: 0 };
        assert_eq!(p.to_string(), "lt1f3as0");
        assert_eq!(OwnerPrefix::parse("lt1f3as0"), Some(p));
        assert_eq!(OwnerPrefix::parse("lt1f3as0-node1"), Some(p));
        assert_eq!(OwnerPrefix::parse("lt1f3as0-node-1-pod-a"), Some(p));
        let max = OwnerPrefix {
            pid: 4_194_304,
            seq: SEQ_MASK,
        };
        assert_eq!(OwnerPrefix::parse(&max.to_string()), Some(max));
    }

    #[test]
    fn foreign_names_do_not_parse() {
        for name in [
            "",
            "lt",
            "lts0",
            "lt12s",
            "lt12",
            "lt12x3",
            "ltABs0",
            "lt12s3x",
            "lt0s1",
            "lt123456789s0",
            "netns1",
            "xlt12s0",
            "lt12s0_foo",
        ] {
            assert_eq!(OwnerPrefix::parse(name), None, "{name:?}");
        }
    }

    #[test]
    fn host_ifnames_fit_ifnamsiz() {
        // Worst case: largest pid_max (2^22), largest sequence number.
        let prefix = OwnerPrefix {
            pid: 4_194_304,
            seq: SEQ_MASK,
        }
        .to_string();
        for idx in 0..=0xff {
            let name = host_ifname(&prefix, idx).unwrap();
            assert!(name.len() <= IFNAME_MAX, "{name}");
            assert!(name.starts_with(&prefix));
        }
        assert!(host_ifname(&prefix, 0x1000).is_err());
    }

    #[test]
    fn host_ifnames_are_unambiguous() {
        // seq 1 / pod 0x12 and seq 0x11 / pod 2 must not collide.
        let a = host_ifname(&OwnerPrefix { pid: 7, seq: 1 }.to_string(), 0x12).unwrap();
        let b = host_ifname(&OwnerPrefix { pid: 7, seq: 0x11 }.to_string(), 2).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn next_prefix_is_unique_and_owned() {
        let a = next_prefix().unwrap();
        let b = next_prefix().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.pid, std::process::id());
        assert_eq!(OwnerPrefix::parse(&a.to_string()), Some(a));
    }

    #[test]
    fn names_are_validated() {
        for ok in ["node1", "web-7d9f", "a.b_c"] {
            assert!(validate_name("pod", ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a b", "-x", ".x", "ä", &"x".repeat(64)] {
            assert!(validate_name("pod", bad).is_err(), "{bad}");
        }
    }
}
