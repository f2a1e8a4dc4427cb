use std::path::PathBuf;

/// Errors of reading, writing or claiming a run folder. Each names the file (or folder)
/// and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum RunFolderError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is malformed or breaks the run-folder format.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line or key where known.
        reason: String,
    },
    /// A setting is out of range (see [`crate::TrainConfig::validate`]).
    #[error("invalid setting `{field}`: {reason}")]
    Setting {
        /// The setting's name (as on the command line).
        field: String,
        /// Why it is rejected.
        reason: String,
    },
    /// Another live process holds the run folder (see [`crate::RunLock`]).
    #[error("{dir} is in use by another cxr run (pid {pid}); choose another --out or wait for it")]
    Locked {
        /// The run folder.
        dir: PathBuf,
        /// The owner's process id.
        pid: u32,
    },
}

impl RunFolderError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A format error in `path`.
    pub fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, RunFolderError>;
