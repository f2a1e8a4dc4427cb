//! Reading and writing the folder's files: whole files, optional files, simple CSV (no
//! quoting in this format) and JSON with errors naming the file and the line or field;
//! every write atomic.

use std::io::Write as _;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Result, RunFolderError};

/// The whole text of `path`.
pub fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| RunFolderError::io(path, source))
}

/// The whole text of `path`, `Ok(None)` when the file does not exist; other I/O
/// failures are errors.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RunFolderError::io(path, source)),
    }
}

pub(crate) fn format_err(path: &Path, reason: impl Into<String>) -> RunFolderError {
    RunFolderError::format(path, reason)
}

/// A parsed CSV file of this format (comma-separated, no quoting): the header that
/// matched and the data rows with their 1-based line numbers. Field accessors check
/// values and name the file, line and column in their errors.
pub struct Csv<'a> {
    /// The file (for error messages).
    pub path: &'a Path,
    /// The header's column names.
    pub header: Vec<&'a str>,
    /// `(line, fields)` of each data row.
    pub rows: Vec<(usize, Vec<&'a str>)>,
}

impl<'a> Csv<'a> {
    /// Splits `text` into rows after checking that the header is one of `headers`;
    /// each row must have as many fields as the header. Blank lines are skipped.
    pub fn parse(path: &'a Path, text: &'a str, headers: &[&str]) -> Result<Self> {
        let mut lines = text.lines();
        let first = lines
            .next()
            .ok_or_else(|| format_err(path, "empty file"))?
            .trim_end();
        let first = first.strip_prefix('\u{feff}').unwrap_or(first);
        if !headers.contains(&first) {
            let expected: Vec<String> = headers.iter().map(|h| format!("`{h}`")).collect();
            return Err(format_err(
                path,
                format!(
                    "line 1: header is `{first}`, expected {}",
                    expected.join(" or ")
                ),
            ));
        }
        let header: Vec<&str> = first.split(',').collect();
        let mut rows = Vec::new();
        for (i, line) in lines.enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.trim_end().split(',').collect();
            if fields.len() != header.len() {
                return Err(format_err(
                    path,
                    format!(
                        "line {}: {} fields, expected {}",
                        i + 2,
                        fields.len(),
                        header.len()
                    ),
                ));
            }
            rows.push((i + 2, fields));
        }
        Ok(Self { path, header, rows })
    }

    /// Column position of `name` (the header was checked, so a miss is a bug in the
    /// caller's header list; it is reported as a format error all the same).
    pub fn col(&self, name: &str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format_err(self.path, format!("line 1: no column `{name}`")))
    }

    /// Parses field `name` of a row.
    pub fn get<T: std::str::FromStr>(&self, line: usize, row: &[&str], name: &str) -> Result<T> {
        let v = row[self.col(name)?];
        parse(self.path, line, name, v)
    }

    /// The raw text of field `name`.
    pub fn text<'r>(&self, row: &'r [&'a str], name: &str) -> Result<&'a str> {
        Ok(row[self.col(name)?])
    }

    /// Parses a finite float in field `name`.
    pub fn float(&self, line: usize, row: &[&str], name: &str) -> Result<f64> {
        let v: f64 = self.get(line, row, name)?;
        if !v.is_finite() {
            return Err(format_err(
                self.path,
                format!("line {line}: `{name}` is not finite: `{v}`"),
            ));
        }
        Ok(v)
    }

    /// Parses a float in [0, 1] in field `name`.
    pub fn unit(&self, line: usize, row: &[&str], name: &str) -> Result<f64> {
        let v = self.float(line, row, name)?;
        if !(0.0..=1.0).contains(&v) {
            return Err(format_err(
                self.path,
                format!("line {line}: `{name}` = {v} is outside [0, 1]"),
            ));
        }
        Ok(v)
    }

    /// Parses a 0/1 label in field `name`.
    pub fn label(&self, line: usize, row: &[&str], name: &str) -> Result<u8> {
        let v: u8 = self.get(line, row, name)?;
        if v > 1 {
            return Err(format_err(
                self.path,
                format!("line {line}: {name} {v} is not 0 or 1"),
            ));
        }
        Ok(v)
    }
}

/// Parses `value`, field `field` on line `line` of `path`.
pub fn parse<T: std::str::FromStr>(
    path: &Path,
    line: usize,
    field: &str,
    value: &str,
) -> Result<T> {
    value.parse().map_err(|_| {
        format_err(
            path,
            format!("line {line}: `{field}` is not a valid value: `{value}`"),
        )
    })
}

/// Deserialises JSON text; errors name the file and serde's line/column and field.
pub fn json<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| format_err(path, e.to_string()))
}

/// Reads and deserialises the JSON file `path`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    json(path, &read(path)?)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder is written,
/// flushed to disk and renamed over `path`, so readers see the old file or the new one,
/// never a partial one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut w = AtomicWriter::create(path)?;
    w.write(bytes)?;
    w.commit()
}

/// `value` as pretty JSON with a final newline, written atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut s = serde_json::to_string_pretty(value)
        .map_err(|e| RunFolderError::io(path, std::io::Error::other(e)))?;
    s.push('\n');
    write_atomic(path, s.as_bytes())
}

/// A file written in parts and put in place at once: its bytes go to a temporary file
/// beside `path` that [`AtomicWriter::commit`] flushes to disk and renames over `path`.
/// Dropped without a commit (an error, a panic), the temporary file is removed and
/// `path` is untouched.
#[derive(Debug)]
pub struct AtomicWriter {
    path: std::path::PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl AtomicWriter {
    /// Starts writing `path` (its folder must exist).
    pub fn create(path: &Path) -> Result<Self> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        // `.<name>.tmp-<pid>-<random>`: the pid lets a later run tell a killed writer's
        // leftovers from a live one's (`RunLock::remove_stale_temps`).
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.tmp-{}-", std::process::id()))
            .tempfile_in(dir)
            .map_err(|e| RunFolderError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
        })
    }

    /// Appends `bytes`, flushed to the operating system.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let f = self.tmp.as_file_mut();
        f.write_all(bytes)
            .and_then(|()| f.flush())
            .map_err(|e| RunFolderError::io(&self.path, e))
    }

    /// Syncs the data to disk and renames the file over the destination.
    pub fn commit(self) -> Result<()> {
        let path = self.path;
        self.tmp
            .as_file()
            .sync_all()
            .map_err(|e| RunFolderError::io(&path, e))?;
        self.tmp
            .persist(&path)
            .map_err(|e| RunFolderError::io(&path, e.error))?;
        Ok(())
    }
}

/// Creates `dir` (and parents) and checks that a file can be written in it, so an
/// unwritable output folder fails before any work is spent.
pub fn ensure_writable_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| RunFolderError::io(dir, e))?;
    tempfile::tempfile_in(dir).map_err(|e| RunFolderError::io(dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn uncommitted_writer_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"old").unwrap();
        let mut w = AtomicWriter::create(&p).unwrap();
        w.write(b"new, half").unwrap();
        drop(w);
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_parent_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/a.json");
        let e = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(e.contains("a.json"), "{e}");
    }
}
