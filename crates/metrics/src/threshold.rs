use serde::{Deserialize, Serialize};

use crate::error::{check_probs, check_scores};
use crate::{Result, roc_auc};

/// Counts of a binary decision at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Confusion {
    /// Positives predicted positive.
    pub tp: u64,
    /// Negatives predicted positive.
    pub fp: u64,
    /// Negatives predicted negative.
    pub tn: u64,
    /// Positives predicted negative.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl Confusion {
    /// Number of items.
    pub fn total(&self) -> u64 {
        self.tp + self.fp + self.tn + self.fn_
    }
    /// (tp + tn) / total.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.total())
    }
    /// tp / (tp + fp); 0 when nothing is predicted positive (scikit-learn's
    /// `zero_division` default).
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    /// Sensitivity, tp / (tp + fn); 0 when there is no positive.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    /// tn / (tn + fp); 0 when there is no negative.
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }
    /// 2·tp / (2·tp + fp + fn); 0 when that denominator is 0.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

/// The confusion matrix of predicting positive iff `prob >= threshold`.
pub fn confusion(labels: &[u8], probs: &[f64], threshold: f64) -> Result<Confusion> {
    check_scores(labels, probs)?;
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

/// Threshold metrics and ROC AUC of one split (the `val`/`test` objects of a run's
/// `metrics.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BinaryReport {
    /// Accuracy at `threshold`.
    pub accuracy: f64,
    /// Precision at `threshold`.
    pub precision: f64,
    /// Recall (sensitivity) at `threshold`.
    pub recall: f64,
    /// Specificity at `threshold`.
    pub specificity: f64,
    /// F1 at `threshold`.
    pub f1: f64,
    /// ROC AUC (threshold-free).
    pub auc: f64,
    /// The decision threshold on P(positive).
    pub threshold: f64,
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

/// Every [`BinaryReport`] figure for probabilities `probs` at `threshold`.
/// Needs both classes (for the AUC).
pub fn binary_report(labels: &[u8], probs: &[f64], threshold: f64) -> Result<BinaryReport> {
    check_probs(labels, probs)?;
    let auc = roc_auc(labels, probs)?;
    let c = confusion_unchecked(labels, probs, threshold);
    Ok(BinaryReport {
        accuracy: c.accuracy(),
        precision: c.precision(),
        recall: c.recall(),
        specificity: c.specificity(),
        f1: c.f1(),
        auc,
        threshold,
        tp: c.tp,
        fp: c.fp,
        tn: c.tn,
        fn_: c.fn_,
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
        assert!((c.f1() - 4.0 / 6.0).abs() < 1e-15);
        let none = confusion(&[0, 1], &[0.1, 0.2], 0.5).unwrap();
        assert_eq!(none.precision(), 0.0);
        assert_eq!(none.f1(), 0.0);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"fn\":1"), "{json}");
    }
}
