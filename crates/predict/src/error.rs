use std::path::PathBuf;

/// Errors of a prediction. Each names the file, folder or setting concerned; an input
/// that cannot be read is not an error but a row of `predictions.csv` (unless
/// `strict`).
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// Building or running the model failed.
    #[error(transparent)]
    Model(#[from] cxr_models::ModelError),
    /// Preparing images failed.
    #[error(transparent)]
    Data(#[from] cxr_data::DataError),
    /// The run folder or the prediction folder could not be read or written.
    #[error(transparent)]
    RunFolder(#[from] cxr_runfolder::RunFolderError),
    /// An explanation could not be computed.
    #[error(transparent)]
    Explain(#[from] cxr_audit::AuditError),
    /// The site check could not be computed.
    #[error("site check: {0}")]
    Metrics(#[from] cxr_metrics::MetricsError),
    /// A file or folder could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A setting is out of range or names something the model card lacks.
    #[error("invalid setting `{field}`: {reason}")]
    Setting {
        /// The setting's name (as on the command line).
        field: String,
        /// Why it is rejected.
        reason: String,
    },
    /// Inputs could not be read and `strict` was set, or none could be read at all.
    /// The prediction folder has been written all the same.
    #[error("{reason} (rows with the reasons: {})", csv.display())]
    Unreadable {
        /// What went wrong, with the first file and its reason.
        reason: String,
        /// The `predictions.csv` that lists every input.
        csv: PathBuf,
    },
}

impl PredictError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, PredictError>;
