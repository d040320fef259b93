//! Helpers shared by the CLI's integration tests.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// Runs `lumen` with `args`: (exit code, stdout, stderr).
pub fn lumen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lumen"))
        .args(args)
        .env_remove("LUMEN_SERVER")
        .env_remove("LUMEN_CONTROL_SOCKET")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory for one test.
pub fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lumen-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
