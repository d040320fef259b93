//! Running iproute2's `ip` and reporting its failures with context.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::Error;

/// Renders a command line for error messages.
pub(crate) fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion, feeding it `stdin`, and returns its stdout.
/// A non-zero exit becomes [`Error::Command`] carrying stderr.
pub(crate) fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<String, Error> {
    let shown = display(cmd);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Error messages and ping summaries are parsed or shown; keep them English.
        .env("LC_ALL", "C");
    let mut child = cmd.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::MissingTool {
                tool: cmd.get_program().to_string_lossy().into_owned(),
                source,
            }
        } else {
            Error::sys(format!("spawning `{shown}`"), source)
        }
    })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A failing command may exit before reading everything; its stderr
        // then explains more than the broken pipe would.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::sys(format!("waiting for `{shown}`"), e))?;
    if !out.status.success() {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if let Some(input) = stdin {
            stderr.push_str("\n--- batch input ---\n");
            stderr.push_str(input);
        }
        return Err(Error::Command {
            cmd: shown,
            status: out.status.to_string(),
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip ARGS...`.
pub(crate) fn ip(args: &[&str]) -> Result<String, Error> {
    run(Command::new("ip").args(args), None)
}

/// Runs a batch of `ip` commands (one per line) inside `netns`, stopping at
/// the first failure. One process per batch keeps testbed setup fast.
pub(crate) fn ip_batch(netns: &str, lines: &[String]) -> Result<(), Error> {
    let mut script = lines.join("\n");
    script.push('\n');
    run(Command::new("ip").args(["-n", netns, "-batch", "-"]), Some(&script)).map(drop)
}
