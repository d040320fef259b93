//! Reading YAML input files with errors that name the file, the line and
//! the reason, as an operator needs them.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// An input file could not be used. Nothing from it was applied.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: cannot read", file.display())]
    Read { file: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: {reason}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{}:{line}: {reason}", file.display())]
    Invalid { file: PathBuf, line: usize, reason: String },
}

impl FileError {
    pub fn file(&self) -> &Path {
        match self {
            FileError::Read { file, .. } | FileError::Syntax { file, .. } | FileError::Invalid { file, .. } => file,
        }
    }
}

/// A parsed document and where each item of its top-level list starts.
#[derive(Debug)]
pub struct Document<T> {
    pub value: T,
    pub file: PathBuf,
    item_lines: Vec<usize>,
    list_line: usize,
}

impl<T> Document<T> {
    /// An error about the `index`-th item of the top-level list.
    pub fn invalid(&self, index: usize, reason: impl Into<String>) -> FileError {
        FileError::Invalid {
            file: self.file.clone(),
            line: self.item_lines.get(index).copied().unwrap_or(self.list_line),
            reason: reason.into(),
        }
    }
}

pub fn read<T: DeserializeOwned>(file: &Path, list_key: &str) -> Result<Document<T>, FileError> {
    let text = std::fs::read_to_string(file).map_err(|source| FileError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse(&text, file, list_key)
}

/// Parses `text` (named `file` in errors). `list_key` is the top-level key
/// whose list items later validation errors point at.
pub fn parse<T: DeserializeOwned>(text: &str, file: &Path, list_key: &str) -> Result<Document<T>, FileError> {
    let value = serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
        FileError::Syntax {
            file: file.to_path_buf(),
            line,
            column,
            reason: strip_location(&e.to_string()),
        }
    })?;
    let (list_line, item_lines) = item_lines(text, list_key);
    Ok(Document {
        value,
        file: file.to_path_buf(),
        item_lines,
        list_line,
    })
}

/// serde_yaml_ng appends " at line L column C"; we print the location ourselves.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// 1-based lines of the key `key:` and of each `- ` item of its block list.
fn item_lines(text: &str, key: &str) -> (usize, Vec<usize>) {
    let mut key_line = 1;
    let mut items = Vec::new();
    let mut in_list = false;
    let mut indent = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let depth = line.len() - trimmed.len();
        if depth == 0 && !trimmed.starts_with("- ") && trimmed != "-" {
            in_list = trimmed
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with(':'));
            if in_list {
                key_line = i + 1;
            }
            continue;
        }
        if in_list && (trimmed.starts_with("- ") || trimmed == "-") {
            let d = *indent.get_or_insert(depth);
            if depth == d {
                items.push(i + 1);
            }
        }
    }
    (key_line, items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_item_lines() {
        let text = "# c\nendpoints:\n  - name: a\n    labels:\n      - x\n  - name: b\nother: 1\n";
        assert_eq!(item_lines(text, "endpoints"), (2, vec![3, 6]));
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            a: u32,
        }
        let err = parse::<T>("a: 1\nb: [x\nc: 2\n", Path::new("f.yaml"), "a").unwrap_err();
        let FileError::Syntax { line, .. } = err else {
            panic!("{err}")
        };
        assert_eq!(line, 3);
        let err = parse::<T>("a: x\n", Path::new("f.yaml"), "a").unwrap_err();
        assert_eq!(
            err.to_string(),
            "f.yaml:1:4: a: invalid type: string \"x\", expected u32"
        );
    }
}
