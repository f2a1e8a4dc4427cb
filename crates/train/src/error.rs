use std::path::PathBuf;

/// Errors raised while training, checkpointing or writing a run folder.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// Building or running the model failed.
    #[error(transparent)]
    Model(#[from] cxr_models::ModelError),
    /// Loading or batching data failed.
    #[error(transparent)]
    Data(#[from] cxr_data::DataError),
    /// A metric could not be computed (e.g. a split with one class).
    #[error("metrics on {split}: {source}")]
    Metrics {
        /// The split being scored.
        split: String,
        /// The underlying error.
        source: cxr_metrics::MetricsError,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A checkpoint is unreadable, incomplete or belongs to another configuration.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid setting `{field}`: {reason}")]
    Config {
        /// The setting's name (as on the command line).
        field: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The loss or a gradient became NaN or infinite, or the loss exploded
    /// (see [`crate::EXPLODED_LOSS`]).
    #[error(
        "training diverged at epoch {epoch}, step {step}: {what} (lower --lr?); \
         the last good checkpoint is kept"
    )]
    Diverged {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based step within the epoch.
        step: usize,
        /// What happened (e.g. "the training loss is not finite").
        what: String,
    },
    /// A run given as an ensemble member cannot be one.
    #[error("ensemble member {path}: {reason}")]
    Ensemble {
        /// The member's run folder (or its weights file).
        path: PathBuf,
        /// Why it cannot be a member.
        reason: String,
    },
    /// A run-folder file is malformed, or the folder is held by another process.
    #[error(transparent)]
    RunFolder(cxr_runfolder::RunFolderError),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, TrainError>;

impl From<cxr_runfolder::RunFolderError> for TrainError {
    /// I/O errors and rejected settings keep this crate's variants (and messages);
    /// format errors and a held lock stay run-folder errors.
    fn from(e: cxr_runfolder::RunFolderError) -> Self {
        use cxr_runfolder::RunFolderError as R;
        match e {
            R::Io { path, source } => Self::Io { path, source },
            R::Setting { field, reason } => Self::Config { field, reason },
            other => Self::RunFolder(other),
        }
    }
}
