/// An error of a cxr command: what was being done, and the error of the crate that
/// failed as its source (printed as a "caused by" chain by the `cxr` binary).
#[derive(Debug, thiserror::Error)]
pub enum CxrError {
    /// A step failed.
    #[error("{what}")]
    Step {
        /// What was being done (naming the folder or file).
        what: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A setting is unusable; checked before any data is read.
    #[error("{0}")]
    Setting(String),
}

impl CxrError {
    /// A failed step: `what` was being done when `source` happened.
    pub fn step(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::Step {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, CxrError>;

/// Adds what was being done to another crate's error.
pub(crate) trait Context<T> {
    /// The error becomes the source of a [`CxrError::Step`] saying `what()`.
    fn step(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E> Context<T> for std::result::Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn step(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| CxrError::step(what(), e))
    }
}
