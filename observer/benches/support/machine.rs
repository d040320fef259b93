//! What machine a benchmark ran on, for BENCHMARKS.md.

pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string());
    // Counted from cpuinfo, not the affinity mask: benchmarks pin themselves.
    let cpus = info.lines().filter(|l| l.starts_with("processor")).count();
    format!("{cpus} × {}", model.unwrap_or_else(|| "unknown CPU".into()))
}

pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}
