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
    /// The input tensor has a shape the model cannot take.
    #[error("input has shape {actual:?}, expected {expected}")]
    Input {
        /// The shape the model expects, in words.
        expected: String,
        /// The shape it got.
        actual: Vec<usize>,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, ModelError>;
