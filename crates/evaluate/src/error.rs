use std::path::PathBuf;

/// Errors of an evaluation. Each names the file, column or setting concerned.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// Loading or applying the model failed.
    #[error(transparent)]
    Predict(#[from] cxr_predict::PredictError),
    /// The labelled set could not be read.
    #[error(transparent)]
    Data(#[from] cxr_data::DataError),
    /// The run folder or the evaluation folder could not be read or written.
    #[error(transparent)]
    RunFolder(#[from] cxr_runfolder::RunFolderError),
    /// A figure could not be computed.
    #[error("{what}: {source}")]
    Metrics {
        /// The figure.
        what: String,
        /// Why.
        source: cxr_metrics::MetricsError,
    },
    /// The metadata table is unusable.
    #[error("{}: {reason}", path.display())]
    Metadata {
        /// The table.
        path: PathBuf,
        /// What is wrong, naming the column or the values.
        reason: String,
    },
    /// A table could not be built or written.
    #[error("{}: {source}", path.display())]
    Table {
        /// The file being read or written.
        path: PathBuf,
        /// Polars' error.
        source: polars::error::PolarsError,
    },
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A setting is out of range or inconsistent with the set.
    #[error("invalid setting `{field}`: {reason}")]
    Setting {
        /// The setting's name (as on the command line).
        field: String,
        /// Why it is rejected.
        reason: String,
    },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, EvaluateError>;

impl EvaluateError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn setting(field: &str, reason: impl Into<String>) -> Self {
        Self::Setting {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn table(
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(polars::error::PolarsError) -> Self {
        let path = path.into();
        move |source| Self::Table { path, source }
    }

    pub(crate) fn metrics(what: &str) -> impl Fn(cxr_metrics::MetricsError) -> Self + '_ {
        move |source| Self::Metrics {
            what: what.into(),
            source,
        }
    }
}
