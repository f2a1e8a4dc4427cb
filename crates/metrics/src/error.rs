/// Errors from metric computations. Metrics never return NaN for bad input: they
/// return one of these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// No items were given.
    #[error("empty input")]
    Empty,
    /// Labels and scores differ in length.
    #[error("{labels} labels but {scores} scores")]
    LengthMismatch {
        /// Number of labels.
        labels: usize,
        /// Number of scores.
        scores: usize,
    },
    /// A label is not 0 or 1.
    #[error("label {value} at index {index} is not 0 or 1")]
    BadLabel {
        /// Position.
        index: usize,
        /// The value found.
        value: u8,
    },
    /// A score is NaN or infinite.
    #[error("score at index {index} is not finite")]
    NonFinite {
        /// Position.
        index: usize,
    },
    /// A probability lies outside [0, 1].
    #[error("probability {value} at index {index} is outside [0, 1]")]
    NotAProbability {
        /// Position.
        index: usize,
        /// The value found.
        value: f64,
    },
    /// The metric needs both classes but only one is present.
    #[error("only class {class} is present; this metric needs both classes")]
    SingleClass {
        /// The class present.
        class: u8,
    },
    /// An argument is out of range.
    #[error("invalid argument `{name}`: {reason}")]
    Invalid {
        /// The argument.
        name: String,
        /// Why it is rejected.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, MetricsError>;

/// Checks lengths, labels and finiteness.
pub(crate) fn check_scores(labels: &[u8], scores: &[f64]) -> Result<()> {
    if labels.len() != scores.len() {
        return Err(MetricsError::LengthMismatch {
            labels: labels.len(),
            scores: scores.len(),
        });
    }
    if labels.is_empty() {
        return Err(MetricsError::Empty);
    }
    if let Some((index, &value)) = labels.iter().enumerate().find(|(_, v)| **v > 1) {
        return Err(MetricsError::BadLabel { index, value });
    }
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::NonFinite { index });
    }
    Ok(())
}

/// [`check_scores`] plus every score in [0, 1].
pub(crate) fn check_probs(labels: &[u8], probs: &[f64]) -> Result<()> {
    check_scores(labels, probs)?;
    if let Some((index, &value)) = probs
        .iter()
        .enumerate()
        .find(|(_, p)| !(0.0..=1.0).contains(*p))
    {
        return Err(MetricsError::NotAProbability { index, value });
    }
    Ok(())
}

/// Errors unless both classes are present.
pub(crate) fn check_both_classes(labels: &[u8]) -> Result<(usize, usize)> {
    let pos = labels.iter().filter(|&&l| l == 1).count();
    let neg = labels.len() - pos;
    if pos == 0 {
        return Err(MetricsError::SingleClass { class: 0 });
    }
    if neg == 0 {
        return Err(MetricsError::SingleClass { class: 1 });
    }
    Ok((pos, neg))
}
