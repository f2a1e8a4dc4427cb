use serde::{Deserialize, Serialize};

use crate::error::{check_probs, check_threshold, invalid};
use crate::threshold::confusion_unchecked;
use crate::{MetricsError, Result, roc_curve};

/// Two J values (or sensitivities) closer than this count as equal.
const TIE: f64 = 1e-12;

/// The threshold maximising Youden's J = TPR − FPR (sensitivity + specificity − 1)
/// over the thresholds of the full ROC curve (`roc_curve(.., false)`: every
/// distinct probability, the +∞ start excluded), for the rule "positive iff
/// `p >= threshold`".
///
/// Ties: among thresholds whose J is within 1e-12 of the best, the *highest*
/// threshold wins (fewest positive calls, so the highest specificity among them).
/// The result is always one of the given probabilities. Needs both classes and
/// probabilities in [0, 1].
pub fn threshold_youden(labels: &[u8], probs: &[f64]) -> Result<f64> {
    check_probs(labels, probs)?;
    let pts = roc_curve(labels, probs, false)?;
    let mut best = (f64::NEG_INFINITY, 0.5);
    for p in pts.iter().skip(1) {
        let j = p.tpr - p.fpr;
        // thresholds descend along the curve: only a clearly larger J replaces
        if j > best.0 + TIE {
            best = (j, p.threshold);
        }
    }
    Ok(best.1)
}

/// The highest threshold whose sensitivity (TPR, rule "positive iff
/// `p >= threshold`") is at least `target` — so specificity is as high as that
/// sensitivity allows. Candidates are the distinct probabilities (the full ROC
/// curve's thresholds); a sensitivity within 1e-12 below `target` counts as
/// reaching it, so that e.g. 19/20 meets 0.95 whatever the rounding. The smallest
/// probability always reaches sensitivity 1, so an answer exists for every
/// `target` in (0, 1].
///
/// Needs both classes and probabilities in [0, 1]; `target` must lie in (0, 1].
pub fn threshold_for_sensitivity(labels: &[u8], probs: &[f64], target: f64) -> Result<f64> {
    check_probs(labels, probs)?;
    if !(target > 0.0 && target <= 1.0) {
        return Err(invalid(
            "target",
            format!("sensitivity target must lie in (0, 1], got {target}"),
        ));
    }
    let pts = roc_curve(labels, probs, false)?;
    pts.iter()
        .skip(1)
        .find(|p| p.tpr >= target - TIE)
        .map(|p| p.threshold)
        .ok_or_else(|| invalid("target", "no threshold reaches it"))
}

/// Metrics at one decision threshold (typically chosen on validation, scored on
/// test).
///
/// Serialised field names, in order: `name`, `threshold`, `accuracy`, `precision`,
/// `recall`, `specificity`, `f1`, `tp`, `fp`, `tn`, `fn`.
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
    /// False negatives (`fn` in JSON).
    #[serde(rename = "fn")]
    pub fn_: u64,
}

/// Scores the rule "positive iff `p >= threshold`" on `labels`/`probs` — usually
/// another split than the one the threshold was chosen on — and labels the result
/// `name`.
///
/// Needs probabilities in [0, 1] (one class alone is fine: rates without a
/// denominator are 0); `threshold` may be ±∞ but not NaN.
pub fn operating_point(
    name: &str,
    threshold: f64,
    labels: &[u8],
    probs: &[f64],
) -> Result<OperatingPoint> {
    check_probs(labels, probs)?;
    check_threshold(threshold)?;
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

/// Mean and sample standard deviation of per-seed figures, returned as
/// `(mean, std)`.
///
/// The standard deviation is the *sample* one, with Bessel's correction
/// (ddof = 1, dividing by n − 1, as `numpy.std(x, ddof=1)` and pandas' default);
/// for a single value it is 0 (not NaN). Errors on an empty slice or a non-finite
/// value.
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
        assert_eq!(mean_std(&[4.0]).unwrap(), (4.0, 0.0));
        assert_eq!(mean_std(&[]), Err(MetricsError::Empty));
        assert_eq!(
            mean_std(&[1.0, f64::INFINITY]),
            Err(MetricsError::NonFinite { index: 1 })
        );
    }

    #[test]
    fn sensitivity_targets_and_serialisation() {
        // 20 positives at scores 0.01..0.20, 20 negatives below them but one
        let mut labels = vec![1u8; 20];
        let mut probs: Vec<f64> = (1..=20).map(|i| f64::from(i) / 100.0).collect();
        labels.extend([0u8; 20]);
        probs.extend((0..20).map(|i| if i == 0 { 0.5 } else { 0.001 }));
        // 19 of 20 positives (0.95) at threshold 0.02; all 20 at 0.01
        assert_eq!(
            threshold_for_sensitivity(&labels, &probs, 0.95).unwrap(),
            0.02
        );
        assert_eq!(
            threshold_for_sensitivity(&labels, &probs, 1.0).unwrap(),
            0.01
        );
        // Youden: at 0.01 J = 1 − 1/20 — the best
        assert_eq!(threshold_youden(&labels, &probs).unwrap(), 0.01);
        for bad in [0.0, -0.1, 1.1, f64::NAN] {
            assert!(matches!(
                threshold_for_sensitivity(&labels, &probs, bad),
                Err(MetricsError::Invalid { .. })
            ));
        }
        let op = operating_point("youden", 0.01, &labels, &probs).unwrap();
        let v = serde_json::to_value(&op).unwrap();
        for k in [
            "name",
            "threshold",
            "accuracy",
            "precision",
            "recall",
            "specificity",
            "f1",
            "tp",
            "fp",
            "tn",
            "fn",
        ] {
            assert!(v.get(k).is_some(), "missing {k} in {v}");
        }
        assert_eq!(v.as_object().unwrap().len(), 11);
        assert_eq!(v["fn"], 0);
        assert!(operating_point("x", f64::NAN, &labels, &probs).is_err());
        // one class is fine for an operating point
        let one = operating_point("x", 0.5, &[1, 1], &[0.7, 0.2]).unwrap();
        assert_eq!((one.recall, one.specificity), (0.5, 0.0));
    }
}
