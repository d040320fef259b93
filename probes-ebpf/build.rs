//! Compiles the C datapath with clang for the BPF target and generates
//! compile-time checks that the Rust mirror in `src/abi.rs` has exactly the
//! layout the C header gives (STYLE.md rule 3: the header is the one source
//! of truth for the kernel ABI).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const SETUP_HINT: &str = "run `sudo scripts/setup.sh`, or `apt-get install -y clang-19 llvm-19 libbpf-dev`";

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let include = manifest.join("include");
    let source = manifest.join("src/bpf/lumen.bpf.c");
    for path in [
        "include/lumen.h",
        "src/bpf/lumen.bpf.c",
        "src/bpf/pass.bpf.c",
        "src/abi.rs",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=LUMEN_CLANG");

    let clang = find_clang();
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        fail(&format!("libbpf headers (bpf/bpf_helpers.h) are missing: {SETUP_HINT}"));
    }
    for (src, obj) in [
        (source, "lumen.bpf.o"),
        (manifest.join("src/bpf/pass.bpf.c"), "pass.bpf.o"),
    ] {
        run(Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .arg(format!("-I{}", include.display()))
            .arg("-I/usr/include/x86_64-linux-gnu")
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(out.join(obj)));
    }

    let abi = fs::read_to_string(manifest.join("src/abi.rs")).expect("read src/abi.rs");
    let checks = layout_checks(&clang, &include, &out, &abi);
    fs::write(out.join("layout_check.rs"), checks).expect("write layout_check.rs");
}

fn find_clang() -> String {
    let candidates = match env::var("LUMEN_CLANG") {
        Ok(c) => vec![c],
        Err(_) => vec!["clang-19".to_string(), "clang".to_string()],
    };
    for c in &candidates {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.clone();
        }
    }
    fail(&format!(
        "no clang found (tried {}): the eBPF datapath is C compiled with clang; {SETUP_HINT}",
        candidates.join(", ")
    ))
}

fn run(cmd: &mut Command) {
    let output = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {cmd:?}: {e}")));
    if !output.status.success() {
        fail(&format!(
            "{cmd:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    panic!("{msg}");
}

/// A struct of `src/abi.rs` that mirrors a C struct, as marked by a
/// `/// C: struct name` doc line right above it.
struct Mirror {
    rust: String,
    c: String,
    fields: Vec<String>,
}

fn parse_mirrors(abi: &str) -> (Vec<Mirror>, Vec<String>) {
    let mut mirrors = Vec::new();
    let mut consts = Vec::new();
    let mut pending_c: Option<String> = None;
    let mut current: Option<Mirror> = None;
    for line in abi.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix("/// C: struct ") {
            pending_c = Some(c.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("pub struct ") {
            if let Some(c) = pending_c.take() {
                let rust = rest.split([' ', '{']).next().unwrap().to_string();
                current = Some(Mirror {
                    rust,
                    c,
                    fields: Vec::new(),
                });
            }
        } else if let Some(m) = current.as_mut() {
            if line == "}" {
                mirrors.push(current.take().unwrap());
            } else if let Some(field) = line.strip_prefix("pub ") {
                m.fields.push(field.split(':').next().unwrap().trim().to_string());
            }
        } else if let Some(rest) = line.strip_prefix("pub const ") {
            consts.push(rest.split(':').next().unwrap().trim().to_string());
        }
    }
    (mirrors, consts)
}

/// Asks the C compiler for every size and offset and writes them out as
/// Rust `const` assertions, so a mismatch is a compile error.
fn layout_checks(clang: &str, include: &Path, out: &Path, abi: &str) -> String {
    let (mirrors, consts) = parse_mirrors(abi);
    assert!(!mirrors.is_empty(), "src/abi.rs declares no `/// C: struct` mirrors");
    let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n#include \"lumen.h\"\nint main(void) {\n");
    for m in &mirrors {
        writeln!(
            c,
            "printf(\"const _: () = assert!(::core::mem::size_of::<crate::abi::{r}>() == %zu, \\\"size of {r} differs from struct {cs}\\\");\\n\", sizeof(struct {cs}));",
            r = m.rust,
            cs = m.c
        )
        .unwrap();
        for f in &m.fields {
            writeln!(
                c,
                "printf(\"const _: () = assert!(::core::mem::offset_of!(crate::abi::{r}, {f}) == %zu, \\\"offset of {r}.{f} differs from struct {cs}\\\");\\n\", offsetof(struct {cs}, {f}));",
                r = m.rust,
                cs = m.c
            )
            .unwrap();
        }
    }
    for k in &consts {
        writeln!(
            c,
            "printf(\"const _: () = assert!(crate::abi::{k} as u64 == %lluu64, \\\"constant {k} differs from LUMEN_{k}\\\");\\n\", (unsigned long long)LUMEN_{k});"
        )
        .unwrap();
    }
    c.push_str("return 0;\n}\n");
    let src = out.join("layout.c");
    let exe = out.join("layout");
    fs::write(&src, c).expect("write layout.c");
    run(Command::new(clang)
        .arg(format!("-I{}", include.display()))
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg(&src)
        .arg("-o")
        .arg(&exe));
    let output = Command::new(&exe).output().expect("run layout probe");
    String::from_utf8(output.stdout).expect("utf-8 layout checks")
}
