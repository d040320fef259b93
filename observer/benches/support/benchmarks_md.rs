//! BENCHMARKS.md is shared by several benchmarks: each owns a marked section.

use std::path::Path;

/// Replaces this benchmark's section of BENCHMARKS.md (between markers).
pub fn update_benchmarks(name: &str, section: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| "# Benchmarks\n\nEach section is written by the command it names.\n".into());
    let (start, end) = (
        format!("<!-- bench:{name}:start -->"),
        format!("<!-- bench:{name}:end -->"),
    );
    let block = format!("{start}\n{section}{end}");
    let new = match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) => format!("{}{}{}", &text[..a], block, &text[b + end.len()..]),
        _ => format!("{}\n{}\n", text.trim_end(), block),
    };
    std::fs::write(path, new).unwrap();
}
