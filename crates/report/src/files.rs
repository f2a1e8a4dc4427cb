//! Reading helpers shared by the run-folder and audit readers: whole files, optional
//! files, simple CSV (no quoting in this contract) and JSON with errors naming the file
//! and the line or field.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::{ReportError, Result};

pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `Ok(None)` when the file does not exist; other I/O failures are errors.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ReportError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

pub(crate) fn format_err(path: &Path, reason: impl Into<String>) -> ReportError {
    ReportError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A parsed CSV file: the header that matched and the data rows with their 1-based
/// line numbers.
pub(crate) struct Csv<'a> {
    pub path: &'a Path,
    pub header: Vec<&'a str>,
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

pub(crate) fn parse<T: std::str::FromStr>(
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
pub(crate) fn json<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| format_err(path, e.to_string()))
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a
/// rename, so readers never see a half-written file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}
