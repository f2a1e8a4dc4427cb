use std::path::PathBuf;

/// Errors raised while finding, decoding or batching data. Each names the file (and
/// the npz key or image) concerned.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An npz file (or one of its arrays) is malformed or not in the MedMNIST layout.
    #[error("{path}: {}{reason}", key_prefix(key))]
    Npz {
        /// The npz file.
        path: PathBuf,
        /// The array name (without `.npy`), or empty for the archive itself.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Image files could not be decoded.
    #[error("{root}: {} unreadable image file(s) (use --skip-bad to skip them): {}", files.len(), list(files))]
    BadFiles {
        /// The image folder.
        root: PathBuf,
        /// Each unreadable file with the decoder's message.
        files: Vec<(PathBuf, String)>,
    },
    /// The image-folder layout is wrong (a missing split or class folder, no images).
    #[error("{path}: {reason}")]
    Layout {
        /// The folder concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The data file was not found anywhere and could not be downloaded.
    #[error("{file} not found (tried {}); {hint}", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// The file name looked for.
        file: String,
        /// Every location tried, in order.
        tried: Vec<PathBuf>,
        /// How to supply the file.
        hint: String,
    },
    /// The download failed.
    #[error("downloading {url}: {reason}")]
    Download {
        /// The address.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A downloaded file does not have the expected checksum.
    #[error("{path}: md5 {actual} does not match the expected {expected}; the file was removed")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The expected md5.
        expected: String,
        /// The md5 found.
        actual: String,
    },
    /// An argument is out of range (batch size 0, image size 0, ...).
    #[error("invalid argument `{name}`: {reason}")]
    Invalid {
        /// The argument.
        name: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A patient pattern is not a regular expression with exactly one capture group.
    #[error("patient pattern `{pattern}`: {reason}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// A patients table cannot be used (missing column, duplicate file, bad line).
    #[error("{path}: {reason}")]
    PatientTable {
        /// The table.
        path: PathBuf,
        /// What is wrong, with the line where there is one.
        reason: String,
    },
    /// Patients present in more than one split.
    #[error("{} patient(s) have images in more than one split: {}", overlap.len(), overlap_list(overlap))]
    PatientOverlap {
        /// Each such patient with its splits and image counts (`person7 (train 3,
        /// test 1)`), sorted by patient id.
        overlap: Vec<String>,
    },
    /// Building a tensor failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("array `{key}`: ")
    }
}

fn list(files: &[(PathBuf, String)]) -> String {
    let mut s: Vec<String> = files
        .iter()
        .take(10)
        .map(|(p, e)| format!("{} ({e})", p.display()))
        .collect();
    if files.len() > 10 {
        s.push(format!("and {} more", files.len() - 10));
    }
    s.join("; ")
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, DataError>;

/// The first few overlapping patients with their splits, for error messages.
fn overlap_list(overlap: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut s: Vec<String> = overlap.iter().take(SHOWN).cloned().collect();
    if overlap.len() > SHOWN {
        s.push(format!("and {} more", overlap.len() - SHOWN));
    }
    s.join("; ")
}
