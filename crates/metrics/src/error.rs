/// Errors from metric computations. Metrics never return NaN for bad input: they
/// return one of these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// No items were given.
    #[error("empty input: a metric needs at least one item")]
    Empty,
    /// Labels and scores differ in length.
    #[error("length mismatch: {labels} labels but {scores} scores")]
    LengthMismatch {
        /// Number of labels.
        labels: usize,
        /// Number of scores (or probabilities, or logits).
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
    #[error("score at index {index} is not finite (NaN or infinite)")]
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

/// Shorthand for [`MetricsError::Invalid`].
pub(crate) fn invalid(name: &str, reason: impl Into<String>) -> MetricsError {
    MetricsError::Invalid {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Checks lengths (first), emptiness, labels and finiteness, in that order.
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

/// Errors unless both classes are present; returns (positives, negatives).
/// Call after [`check_scores`] (labels are then 0 or 1 and not empty).
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

/// A decision threshold may be any number, ±∞ included, but not NaN.
pub(crate) fn check_threshold(threshold: f64) -> Result<()> {
    if threshold.is_nan() {
        return Err(invalid("threshold", "is NaN"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_run_in_order_and_name_the_problem() {
        assert_eq!(
            check_scores(&[0, 1], &[0.5]),
            Err(MetricsError::LengthMismatch {
                labels: 2,
                scores: 1
            })
        );
        assert_eq!(check_scores(&[], &[]), Err(MetricsError::Empty));
        assert_eq!(
            check_scores(&[0, 3], &[f64::NAN, 0.5]),
            Err(MetricsError::BadLabel { index: 1, value: 3 })
        );
        assert_eq!(
            check_probs(&[0, 1], &[0.5, -0.0]),
            Ok(()),
            "-0.0 is a probability"
        );
        assert_eq!(
            check_probs(&[0, 1], &[0.5, 1.5]),
            Err(MetricsError::NotAProbability {
                index: 1,
                value: 1.5
            })
        );
        assert_eq!(check_both_classes(&[0, 1, 1]), Ok((2, 1)));
        assert!(check_threshold(f64::INFINITY).is_ok());
        let e = check_threshold(f64::NAN).unwrap_err();
        assert_eq!(e.to_string(), "invalid argument `threshold`: is NaN");
    }
}
