//! A file of lines rotated by size: `events.log` is renamed `events.log.1`
//! when the next line would take it past the limit, `.1` becomes `.2` and
//! so on; beyond the number of backups the oldest is removed. With
//! compression the backups are `events.log.1.gz`, ….
//!
//! Lines are collected and written with one `write` per batch. The file is
//! opened (and its directory created) on the first write and again after
//! any failure, so that a full or unwritable disk costs the lines of the
//! failed writes and writing resumes as soon as it works again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Lines collected before they are written even within one batch.
const PENDING_MAX: usize = 256 * 1024;

/// What became of the lines handed to a [`RotatingFile`] so far.
#[derive(Debug, Default)]
pub struct Tally {
    pub written: u64,
    /// Lines lost to a failed write.
    pub failed: u64,
    /// The last failure (a failed rotation loses no line but is reported).
    pub error: Option<String>,
}

#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_backups: u32,
    compress: bool,
    file: Option<File>,
    /// Bytes in the file (as opened, plus what was written since).
    size: u64,
    pending: Vec<u8>,
    pending_lines: u64,
}

impl RotatingFile {
    pub fn new(path: impl Into<PathBuf>, max_bytes: u64, max_backups: u32, compress: bool) -> RotatingFile {
        RotatingFile {
            path: path.into(),
            max_bytes,
            max_backups,
            compress,
            file: None,
            size: 0,
            pending: Vec::new(),
            pending_lines: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds one line (with its newline); it is written by [`Self::flush`]
    /// at the latest.
    pub fn append(&mut self, line: &[u8], tally: &mut Tally) {
        let written: Result<(), std::convert::Infallible> = self.append_with(tally, |out| {
            out.extend_from_slice(line);
            Ok(())
        });
        let Ok(()) = written;
    }

    /// Adds the line `write` appends (with its newline), written in place
    /// among the lines collected; if `write` fails, nothing is added.
    pub fn append_with<E>(
        &mut self,
        tally: &mut Tally,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.file.is_none() && self.pending.is_empty() {
            // To know the size of a file written before; a failure shows
            // when the line is written.
            let _ = self.open();
        }
        let start = self.pending.len();
        if let Err(e) = write(&mut self.pending) {
            self.pending.truncate(start);
            return Err(e);
        }
        let length = (self.pending.len() - start) as u64;
        let used = self.size + start as u64;
        if used > 0 && used + length > self.max_bytes {
            // The line goes to the next file: what came before it is
            // written, and the file rotated, first (rarely; so a copy).
            let line = self.pending.split_off(start);
            self.flush(tally);
            // Only when the file is open: after a failed open or write there
            // is nothing known to rotate.
            if self.file.is_some() && self.size > 0 {
                if let Err(e) = self.rotate() {
                    tally.error = Some(format!("cannot rotate {}: {e}", self.path.display()));
                }
            }
            self.pending.extend_from_slice(&line);
        }
        self.pending_lines += 1;
        if self.pending.len() >= PENDING_MAX {
            self.flush(tally);
        }
        Ok(())
    }

    /// Writes the lines collected.
    pub fn flush(&mut self, tally: &mut Tally) {
        if self.pending.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.pending_lines);
        let pending = std::mem::take(&mut self.pending);
        let result = self.open().and_then(|f| f.write_all(&pending));
        self.pending = pending;
        match result {
            Ok(()) => {
                self.size += self.pending.len() as u64;
                tally.written += lines;
            }
            Err(e) => {
                tally.failed += lines;
                tally.error = Some(format!("cannot write {}: {e}", self.path.display()));
                // Reopened (and its size read anew) on the next write.
                self.file = None;
            }
        }
        self.pending.clear();
    }

    fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    fn backup(&self, n: u32) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        if self.compress {
            name.push(".gz");
        }
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.max_backups == 0 {
            fs::remove_file(&self.path)?;
        } else {
            // Renaming onto the last backup removes the oldest.
            for n in (1..self.max_backups).rev() {
                match fs::rename(self.backup(n), self.backup(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            if self.compress {
                gzip(&self.path, &self.backup(1))?;
                fs::remove_file(&self.path)?;
            } else {
                fs::rename(&self.path, self.backup(1))?;
            }
        }
        self.size = 0;
        Ok(())
    }
}

/// Compresses `from` into `to`, through a temporary file so that `to` is
/// never half written.
fn gzip(from: &Path, to: &Path) -> io::Result<()> {
    let mut partial = to.to_path_buf().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut encoder = flate2::write::GzEncoder::new(File::create(&partial)?, flate2::Compression::default());
    io::copy(&mut File::open(from)?, &mut encoder)?;
    encoder.finish()?.sync_all()?;
    fs::rename(&partial, to)
}

#[cfg(test)]
#[path = "rotate_tests.rs"]
mod tests;
