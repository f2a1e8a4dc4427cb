use std::path::PathBuf;

/// Errors of an audit. Each names the file, setting or split concerned.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// Building or running the model failed.
    #[error(transparent)]
    Model(#[from] cxr_models::ModelError),
    /// Loading or transforming data failed.
    #[error(transparent)]
    Data(#[from] cxr_data::DataError),
    /// Reading or writing the run folder failed.
    #[error(transparent)]
    RunFolder(#[from] cxr_runfolder::RunFolderError),
    /// A metric could not be computed (e.g. a split with one class).
    #[error("metrics on {split}: {source}")]
    Metrics {
        /// The split being scored.
        split: String,
        /// The underlying error.
        source: cxr_metrics::MetricsError,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The run folder does not fit the data or holds unusable weights.
    #[error("{path}: {reason}")]
    Run {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid setting `{field}`: {reason}")]
    Config {
        /// The setting's name.
        field: String,
        /// Why it is rejected.
        reason: String,
    },
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, AuditError>;
