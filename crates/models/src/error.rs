use std::path::PathBuf;

/// Errors raised while building, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed (shape mismatch, device error, ...).
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// A weight file lacks a tensor the model needs.
    #[error("{path}: missing tensor `{key}`")]
    MissingTensor {
        /// The weight file.
        path: PathBuf,
        /// The tensor name the model looked for.
        key: String,
    },
    /// A weight file holds a tensor of the wrong shape.
    #[error("{path}: tensor `{key}` has shape {actual:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// The weight file.
        path: PathBuf,
        /// The tensor name.
        key: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape found in the file.
        actual: Vec<usize>,
    },
    /// A weight file could not be read or parsed.
    #[error("{path}: cannot read weights: {reason}")]
    Weights {
        /// The weight file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A weight file holds a tensor the model does not have (another architecture's
    /// weights, e.g. a deeper ResNet or the seed CNN).
    #[error(
        "{path}: tensor `{key}` does not belong to this model (another architecture's weights?)"
    )]
    UnexpectedTensor {
        /// The weight file.
        path: PathBuf,
        /// The unexpected tensor name.
        key: String,
    },
    /// A `--weights` value could not be parsed.
    #[error("weights `{spec}`: {reason}")]
    WeightsSource {
        /// The value as given.
        spec: String,
        /// What is wrong with it, and what is accepted.
        reason: String,
    },
    /// The hub could not be reached and the file is not in the local cache (offline
    /// mode, no network, hub down or rate limited). Callers may fall back to training
    /// from scratch; see [`ModelError::is_hub_unavailable`].
    #[error(
        "hub repo `{repo}`: unavailable (no network or offline, and not in the cache at {cache}): {reason}"
    )]
    HubUnavailable {
        /// The hub repository, `owner/name`.
        repo: String,
        /// The cache folder that was searched.
        cache: PathBuf,
        /// The underlying hub error.
        reason: String,
    },
    /// The hub answered but refused the request: unknown repository, revision or file,
    /// authentication required, or a malformed answer. Not a connectivity problem.
    #[error("hub repo `{repo}`: {reason}")]
    Hub {
        /// The hub repository, `owner/name`.
        repo: String,
        /// The underlying hub error.
        reason: String,
    },
    /// The requested device is not available in this build or on this machine.
    #[error("device `{spec}`: {reason}")]
    Device {
        /// The device as given.
        spec: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// An ensemble's members or weights are unusable.
    #[error("ensemble: {0}")]
    Ensemble(String),
    /// A model name that [`crate::build_classifier`] does not know.
    #[error("unknown model `{name}` (known: {known})")]
    UnknownModel {
        /// The name given.
        name: String,
        /// The names that are known.
        known: String,
    },
    /// The input tensor has a shape the model cannot take.
    #[error("input has shape {actual:?}, expected {expected}")]
    Input {
        /// The shape the model expects, in words.
        expected: String,
        /// The shape it got.
        actual: Vec<usize>,
    },
}

impl ModelError {
    /// True when weights could not be fetched because the hub is unreachable or the
    /// file is not cached offline ([`ModelError::HubUnavailable`]): the one case in
    /// which a pipeline may fall back to training from scratch. Bad files, unknown
    /// repositories and architecture mismatches are false.
    pub fn is_hub_unavailable(&self) -> bool {
        matches!(self, ModelError::HubUnavailable { .. })
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ModelError>;
