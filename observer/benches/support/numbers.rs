//! Numbers as BENCHMARKS.md prints them.

/// 12345 as "12,345".
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}
