//! `lumen ui`: the browser service map and flow explorer, which is the
//! `lumen-ui` binary beside this one (its own crate, with the page built
//! in); every flag is its own.

use std::path::PathBuf;

use anyhow::Context as _;

/// `lumen-ui` beside this binary, or why it is not there.
pub fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()
        .context("cannot find this binary")?
        .with_file_name("lumen-ui");
    anyhow::ensure!(
        exe.exists(),
        "{} is missing: build it with `ui/setup.sh && cargo build --release -p lumen-ui`",
        exe.display()
    );
    Ok(exe)
}

/// Becomes `lumen-ui` with `args`; returns only if it cannot.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let exe = binary()?;
    let error = std::process::Command::new(&exe).args(args).exec();
    Err(error).with_context(|| format!("cannot run {}", exe.display()))
}
