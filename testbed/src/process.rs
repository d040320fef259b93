//! Processes started inside a netns, killed and reaped when their guard drops.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::netns::open_netns;
use crate::{cmd, Error};

/// A child process running inside a testbed netns. Dropping it sends SIGKILL
/// (if it still runs) and reaps it, so no zombie or stray process remains.
#[derive(Debug)]
pub struct Process {
    child: Child,
    netns: String,
    cmd: String,
    status: Option<ExitStatus>,
}

/// Starts `cmd` with its network namespace switched to `netns`.
///
/// The switch happens in the forked child right before `exec` instead of
/// wrapping the program in `ip netns exec`, so the caller's stdio, env and
/// working-directory settings on `cmd` are kept. Unlike `ip netns exec`,
/// `/sys` is not remounted: `/sys/class/net` still shows the caller's view,
/// while everything netlink/socket based sees the netns.
pub(crate) fn spawn_in(netns: &str, mut cmd: Command) -> Result<Process, Error> {
    let file = open_netns(netns)?;
    let fd = file.as_raw_fd();
    // SAFETY: the hook runs between fork and exec and only calls setns(2),
    // which is async-signal-safe; `file` outlives `spawn`, keeping `fd` valid.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
    let shown = cmd::display(&cmd);
    let child = cmd.spawn().map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            Error::MissingTool {
                tool: cmd.get_program().to_string_lossy().into_owned(),
                source,
            }
        } else {
            Error::sys(format!("spawning `{shown}` in netns {netns}"), source)
        }
    })?;
    drop(file);
    Ok(Process {
        child,
        netns: netns.to_string(),
        cmd: shown,
        status: None,
    })
}

impl Process {
    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The netns the process was started in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Sends SIGKILL (unless it already exited) and reaps the process.
    /// Calling it again is a no-op.
    pub fn kill(&mut self) -> Result<(), Error> {
        if self.status.is_some() {
            return Ok(());
        }
        self.child
            .kill()
            .map_err(|e| Error::sys(format!("killing `{}`", self.cmd), e))?;
        self.wait().map(drop)
    }

    /// Returns the exit status if the process has exited, without blocking.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        if self.status.is_none() {
            self.status = self
                .child
                .try_wait()
                .map_err(|e| Error::sys(format!("checking on `{}`", self.cmd), e))?;
        }
        Ok(self.status)
    }

    /// Blocks until the process exits.
    pub fn wait(&mut self) -> Result<ExitStatus, Error> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = self
            .child
            .wait()
            .map_err(|e| Error::sys(format!("waiting for `{}`", self.cmd), e))?;
        self.status = Some(status);
        Ok(status)
    }

    /// Waits up to `timeout` for the process to exit; `Ok(None)` if it still
    /// runs afterwards.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(5)));
        }
    }

    /// The underlying child, e.g. to read from its pipes. Reap it through
    /// [`Process`]'s own methods so the guard knows it is gone.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Takes the child's stdout pipe (set `Stdio::piped()` on the command).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Takes the child's stderr pipe (set `Stdio::piped()` on the command).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Takes the child's stdin pipe (set `Stdio::piped()` on the command).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            crate::topology::log(format_args!("lumen-testbed: {e}"));
        }
    }
}
