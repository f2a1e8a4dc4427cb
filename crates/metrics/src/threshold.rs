use serde::{Deserialize, Serialize};

use crate::calibration::{CalibrationKind, calibration_error_unchecked, log_loss_unchecked};
use crate::curves::roc_auc_unchecked;
use crate::error::{check_both_classes, check_probs, check_scores, check_threshold};
use crate::{Binning, Result};

/// Counts of a binary decision at one threshold.
///
/// Serialised with the field names `tp`, `fp`, `tn`, `fn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Confusion {
    /// Positives predicted positive.
    pub tp: u64,
    /// Negatives predicted positive.
    pub fp: u64,
    /// Negatives predicted negative.
    pub tn: u64,
    /// Positives predicted negative (`fn` in JSON; `fn` is a Rust keyword).
    #[serde(rename = "fn")]
    pub fn_: u64,
}

/// `a / b`, or 0 when `b` is 0 (scikit-learn's `zero_division` default, which
/// returns 0.0 with a warning).
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Confusion {
    /// Number of items.
    pub fn total(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }
    /// (tp + tn) / total; 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }
    /// tp / (tp + fp); 0 when nothing is predicted positive (scikit-learn's
    /// `zero_division` default).
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    /// Recall = sensitivity = true-positive rate, tp / (tp + fn); 0 when there is
    /// no positive.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    /// Same as [`Confusion::recall`].
    pub fn sensitivity(&self) -> f64 {
        self.recall()
    }
    /// Specificity = true-negative rate, tn / (tn + fp); 0 when there is no
    /// negative.
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }
    /// F1 = 2·tp / (2·tp + fp + fn) (the harmonic mean of precision and recall);
    /// 0 when that denominator is 0.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

/// The confusion matrix of predicting positive iff `prob >= threshold`.
///
/// `probs` may be any finite scores (logits too); `threshold` may be ±∞ but not
/// NaN. Errors on empty or mismatched input, labels outside {0, 1} and non-finite
/// scores.
pub fn confusion(labels: &[u8], probs: &[f64], threshold: f64) -> Result<Confusion> {
    check_scores(labels, probs)?;
    check_threshold(threshold)?;
    Ok(confusion_unchecked(labels, probs, threshold))
}

pub(crate) fn confusion_unchecked(labels: &[u8], probs: &[f64], threshold: f64) -> Confusion {
    let mut c = Confusion::default();
    for (&y, &p) in labels.iter().zip(probs) {
        match (y == 1, p >= threshold) {
            (true, true) => c.tp += 1,
            (true, false) => c.fn_ += 1,
            (false, true) => c.fp += 1,
            (false, false) => c.tn += 1,
        }
    }
    c
}

/// Threshold metrics, ROC AUC and calibration of one split (the `val`/`test`
/// objects of a run's `metrics.json`).
///
/// Serialised field names, in order: `accuracy`, `precision`, `recall`,
/// `specificity`, `f1`, `auc`, `threshold`, `tp`, `fp`, `tn`, `fn`, `brier`,
/// `log_loss`, `ece`, `ece_pos`, `mce`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BinaryReport {
    /// Accuracy at `threshold`.
    pub accuracy: f64,
    /// Precision at `threshold` (0 when nothing is predicted positive).
    pub precision: f64,
    /// Recall (sensitivity) at `threshold`.
    pub recall: f64,
    /// Specificity at `threshold`.
    pub specificity: f64,
    /// F1 at `threshold`.
    pub f1: f64,
    /// ROC AUC (threshold-free), as [`roc_auc`](crate::roc_auc).
    pub auc: f64,
    /// The decision threshold on P(positive): positive iff `p >= threshold`.
    pub threshold: f64,
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives (`fn` in JSON).
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Brier score, as [`brier`](crate::brier).
    pub brier: f64,
    /// Log loss with probabilities clipped at 1e-15, as
    /// [`log_loss`](crate::log_loss).
    pub log_loss: f64,
    /// Top-label expected calibration error, 15 equal-width bins, as
    /// [`ece`](crate::ece).
    pub ece: f64,
    /// Positive-class expected calibration error (torchmetrics'), 15 equal-width
    /// bins, as [`ece_pos`](crate::ece_pos).
    pub ece_pos: f64,
    /// Top-label maximum calibration error, 15 equal-width bins, as
    /// [`mce`](crate::mce).
    pub mce: f64,
}

/// Every [`BinaryReport`] figure for probabilities `probs` at `threshold`
/// (calibration with [`Binning::default`], 15 equal-width bins).
///
/// Errors on empty or mismatched input, labels outside {0, 1}, non-finite values,
/// probabilities outside [0, 1], a NaN threshold and a single class (the AUC needs
/// both).
pub fn binary_report(labels: &[u8], probs: &[f64], threshold: f64) -> Result<BinaryReport> {
    check_probs(labels, probs)?;
    check_threshold(threshold)?;
    check_both_classes(labels)?;
    let c = confusion_unchecked(labels, probs, threshold);
    let bins = Binning::default();
    let calib = |kind, max| calibration_error_unchecked(labels, probs, bins, kind, max);
    Ok(BinaryReport {
        accuracy: c.accuracy(),
        precision: c.precision(),
        recall: c.recall(),
        specificity: c.specificity(),
        f1: c.f1(),
        auc: roc_auc_unchecked(labels, probs),
        threshold,
        tp: c.tp,
        fp: c.fp,
        tn: c.tn,
        fn_: c.fn_,
        brier: crate::calibration::brier_unchecked(labels, probs),
        log_loss: log_loss_unchecked(labels, probs),
        ece: calib(CalibrationKind::TopLabel, false)?,
        ece_pos: calib(CalibrationKind::Positive, false)?,
        mce: calib(CalibrationKind::TopLabel, true)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates() {
        let labels = [1, 1, 0, 0, 1];
        let probs = [0.9, 0.4, 0.6, 0.1, 0.5];
        let c = confusion(&labels, &probs, 0.5).unwrap();
        assert_eq!(
            c,
            Confusion {
                tp: 2,
                fp: 1,
                tn: 1,
                fn_: 1
            }
        );
        // exact: small-integer ratios
        assert_eq!(c.f1(), 4.0 / 6.0);
        assert_eq!(c.accuracy(), 3.0 / 5.0);
        assert_eq!(c.sensitivity(), 2.0 / 3.0);
        assert_eq!(c.specificity(), 0.5);
        let none = confusion(&[0, 1], &[0.1, 0.2], 0.5).unwrap();
        assert_eq!(none.precision(), 0.0);
        assert_eq!(none.f1(), 0.0);
        assert_eq!(Confusion::default().accuracy(), 0.0);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"tp":2,"fp":1,"tn":1,"fn":1}"#);
        assert!(confusion(&labels, &probs, f64::NAN).is_err());
        // +inf calls nothing positive; -inf calls everything positive
        assert_eq!(confusion(&labels, &probs, f64::INFINITY).unwrap().tp, 0);
        assert_eq!(confusion(&labels, &probs, f64::NEG_INFINITY).unwrap().tn, 0);
    }

    #[test]
    fn report_fields_and_names() {
        let labels = [1, 1, 0, 0, 1, 0];
        let probs = [0.9, 0.4, 0.6, 0.1, 0.5, 0.0];
        let r = binary_report(&labels, &probs, 0.5).unwrap();
        assert_eq!((r.tp, r.fp, r.tn, r.fn_), (2, 1, 2, 1));
        assert_eq!(r.auc, crate::roc_auc(&labels, &probs).unwrap());
        assert_eq!(r.brier, crate::brier(&labels, &probs).unwrap());
        assert_eq!(r.log_loss, crate::log_loss(&labels, &probs).unwrap());
        let b = Binning::default();
        assert_eq!(r.ece, crate::ece(&labels, &probs, b).unwrap());
        assert_eq!(r.ece_pos, crate::ece_pos(&labels, &probs, b).unwrap());
        assert_eq!(r.mce, crate::mce(&labels, &probs, b).unwrap());
        let v = serde_json::to_value(r).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = [
            "accuracy",
            "precision",
            "recall",
            "specificity",
            "f1",
            "auc",
            "threshold",
            "tp",
            "fp",
            "tn",
            "fn",
            "brier",
            "log_loss",
            "ece",
            "ece_pos",
            "mce",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        let back: BinaryReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
