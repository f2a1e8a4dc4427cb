use serde::{Deserialize, Serialize};

use crate::error::check_probs;
use crate::threshold::confusion_unchecked;
use crate::{MetricsError, Result, roc_curve};

/// The threshold maximising Youden's J = sensitivity + specificity − 1 over the
/// ROC curve's thresholds; among equal J the highest threshold wins (fewer
/// positives called). Needs both classes.
pub fn threshold_youden(labels: &[u8], probs: &[f64]) -> Result<f64> {
    check_probs(labels, probs)?;
    let pts = roc_curve(labels, probs, false)?;
    let mut best = (f64::NEG_INFINITY, 0.5);
    for p in pts.iter().skip(1) {
        let j = p.tpr - p.fpr;
        if j > best.0 + 1e-12 {
            best = (j, p.threshold);
        }
    }
    Ok(best.1)
}

/// The highest threshold whose sensitivity is at least `target` (so specificity is
/// as high as that sensitivity allows). Needs both classes; `target` in (0, 1].
pub fn threshold_for_sensitivity(labels: &[u8], probs: &[f64], target: f64) -> Result<f64> {
    check_probs(labels, probs)?;
    if !(target > 0.0 && target <= 1.0) {
        return Err(MetricsError::Invalid {
            name: "target sensitivity".into(),
            reason: format!("must lie in (0, 1], got {target}"),
        });
    }
    let pts = roc_curve(labels, probs, false)?;
    pts.iter()
        .skip(1)
        .find(|p| p.tpr >= target - 1e-12)
        .map(|p| p.threshold)
        .ok_or_else(|| MetricsError::Invalid {
            name: "target sensitivity".into(),
            reason: "unreachable".into(),
        })
}

/// Metrics at one decision threshold (chosen on one split, scored on another).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// How the threshold was chosen, e.g. `youden`, `sensitivity_0.95`, `default_0.5`.
    pub name: String,
    /// Predict positive iff P(positive) ≥ threshold.
    pub threshold: f64,
    /// Accuracy.
    pub accuracy: f64,
    /// Precision.
    pub precision: f64,
    /// Recall (sensitivity).
    pub recall: f64,
    /// Specificity.
    pub specificity: f64,
    /// F1.
    pub f1: f64,
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

/// Scores `threshold` on `labels`/`probs`.
pub fn operating_point(
    name: &str,
    threshold: f64,
    labels: &[u8],
    probs: &[f64],
) -> Result<OperatingPoint> {
    check_probs(labels, probs)?;
    let c = confusion_unchecked(labels, probs, threshold);
    Ok(OperatingPoint {
        name: name.to_string(),
        threshold,
        accuracy: c.accuracy(),
        precision: c.precision(),
        recall: c.recall(),
        specificity: c.specificity(),
        f1: c.f1(),
        tp: c.tp,
        fp: c.fp,
        tn: c.tn,
        fn_: c.fn_,
    })
}

/// Mean and sample standard deviation (ddof = 1; 0 for a single value) of per-seed
/// figures.
pub fn mean_std(values: &[f64]) -> Result<(f64, f64)> {
    if values.is_empty() {
        return Err(MetricsError::Empty);
    }
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(MetricsError::NonFinite { index });
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Ok((mean, var.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_on_a_small_case() {
        let labels = [0, 0, 1, 0, 1, 1];
        let probs = [0.1, 0.3, 0.35, 0.6, 0.7, 0.9];
        // J at 0.7: tpr 2/3, fpr 0 → 0.667; at 0.35: tpr 1, fpr 1/3 → 0.667; tie → higher
        assert_eq!(threshold_youden(&labels, &probs).unwrap(), 0.7);
        assert_eq!(
            threshold_for_sensitivity(&labels, &probs, 0.95).unwrap(),
            0.35
        );
        assert_eq!(
            threshold_for_sensitivity(&labels, &probs, 0.5).unwrap(),
            0.7
        );
        let op = operating_point("x", 0.5, &labels, &probs).unwrap();
        assert_eq!((op.tp, op.fp, op.tn, op.fn_), (2, 1, 2, 1));
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((m, s), (2.0, 1.0));
    }
}
