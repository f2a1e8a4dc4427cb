use std::path::PathBuf;

/// Errors raised while reading a run folder or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is malformed or breaks the run folder contract.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line or key where known.
        reason: String,
    },
    /// A figure could not be drawn or encoded.
    #[error("figure `{figure}`: {reason}")]
    Figure {
        /// The figure's name.
        figure: String,
        /// What went wrong.
        reason: String,
    },
    /// Headless Chromium could not render a report, or the render failed a check.
    #[error("{path}: chromium: {reason}")]
    Browser {
        /// The report.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Writing or reading `predictions.parquet` failed.
    #[error("{path}: parquet: {reason}")]
    Parquet {
        /// The parquet file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ReportError>;

impl From<cxr_runfolder::RunFolderError> for ReportError {
    /// A run-folder error keeps its file and reason.
    fn from(e: cxr_runfolder::RunFolderError) -> Self {
        use cxr_runfolder::RunFolderError as R;
        match e {
            R::Io { path, source } => Self::Io { path, source },
            R::Format { path, reason } => Self::Format { path, reason },
            R::Locked { dir, pid } => Self::Format {
                path: dir,
                reason: format!("in use by another cxr run (pid {pid})"),
            },
            R::Setting { field, reason } => Self::Format {
                path: cxr_runfolder::names::CONFIG.into(),
                reason: format!("setting `{field}`: {reason}"),
            },
        }
    }
}
