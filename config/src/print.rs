//! `--print-config`: every setting as a line of YAML that the `--config`
//! file takes back, with where its value came from as a comment.

use std::fmt;
use std::path::PathBuf;

use crate::Source;

/// The settings a daemon runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    pub program: String,
    /// The `--config` file, if any.
    pub file: Option<PathBuf>,
    pub settings: Vec<Setting>,
}

/// One key: its values as the flag parser read them (none: unset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub key: String,
    pub values: Vec<String>,
    pub list: bool,
    pub source: Source,
}

impl Effective {
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.key == key)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "{}:{line}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

/// Comments line up after the widest `key: value` up to this column.
const MAX_WIDTH: usize = 48;

impl fmt::Display for Effective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# {} settings (default < file < env < flag){}",
            self.program,
            self.file
                .as_ref()
                .map(|p| format!("; file {}", p.display()))
                .unwrap_or_default()
        )?;
        let lines: Vec<(String, &Setting)> = self.settings.iter().map(|s| (head(s), s)).collect();
        let width = lines
            .iter()
            .map(|(h, _)| h.chars().count())
            .filter(|w| *w <= MAX_WIDTH)
            .max()
            .unwrap_or(0);
        for (head, s) in lines {
            let unset = if s.values.is_empty() && !s.list { " (unset)" } else { "" };
            writeln!(f, "{head:width$}  # {}{unset}", s.source)?;
            if s.list && !s.values.is_empty() {
                for v in &s.values {
                    writeln!(f, "  - {}", scalar(v))?;
                }
            }
        }
        Ok(())
    }
}

/// `key: value`, or `key:` before a list's items or for no value.
fn head(s: &Setting) -> String {
    match (s.list, s.values.as_slice()) {
        (true, []) => format!("{}: []", s.key),
        (true, _) | (false, []) => format!("{}:", s.key),
        (false, [v, ..]) => format!("{}: {}", s.key, scalar(v)),
    }
}

/// `v` as a YAML scalar that reads back as the same text: plain when it
/// surely is, else double-quoted.
fn scalar(v: &str) -> String {
    let plain = v
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '.')
        && v.chars().all(|c| c.is_ascii_alphanumeric() || "._/:@+-".contains(c))
        && !v.ends_with(':')
        && !matches!(v, "null" | "Null" | "NULL");
    if plain {
        return v.to_string();
    }
    let mut quoted = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_read_back_as_written() {
        assert_eq!(scalar("0.0.0.0:4244"), "0.0.0.0:4244");
        assert_eq!(scalar("/var/run/lumen"), "/var/run/lumen");
        assert_eq!(scalar("-"), "\"-\"");
        assert_eq!(scalar("[fd00::1]:4244"), "\"[fd00::1]:4244\"");
        assert_eq!(scalar("a b"), "\"a b\"");
        assert_eq!(scalar("null"), "\"null\"");
        assert_eq!(scalar(""), "\"\"");
        assert_eq!(scalar("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
    }
}
