use serde::{Deserialize, Serialize};

use crate::error::check_probs;
use crate::{MetricsError, Result};

/// How predictions are grouped into bins for calibration errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Binning {
    /// `n` equal-width bins on [0, 1]: boundaries `linspace(0, 1, n + 1)`; a value
    /// `x` falls in bin `k` when `bₖ ≤ x < bₖ₊₁`, and `x = 1` in an extra last bin
    /// of its own — torchmetrics' `bucketize(..., right=True) - 1` rule.
    EqualWidth(usize),
    /// `n` bins holding equal numbers of predictions (sorted by confidence; the first
    /// `len % n` bins get one more, as `numpy.array_split`).
    EqualMass(usize),
}

impl Default for Binning {
    /// 15 equal-width bins (Guo et al. 2017; torchmetrics' default).
    fn default() -> Self {
        Binning::EqualWidth(15)
    }
}

/// Which calibration question is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CalibrationKind {
    /// Top-label: confidence `max(p, 1 − p)` against whether the 0.5-threshold
    /// prediction is correct (Guo et al. 2017).
    TopLabel,
    /// Positive class: `p` = P(pneumonia) against the label (torchmetrics'
    /// `BinaryCalibrationError`, norm l1).
    Positive,
}

/// One bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// 0-based bin number.
    pub bin: usize,
    /// Lower edge (smallest confidence for equal-mass bins).
    pub lower: f64,
    /// Upper edge (largest confidence for equal-mass bins).
    pub upper: f64,
    /// Predictions in the bin.
    pub count: usize,
    /// Mean confidence of the bin (0 when empty).
    pub confidence: f64,
    /// Accuracy (top-label) or fraction of positives (positive class) of the bin
    /// (0 when empty).
    pub accuracy: f64,
}

/// (confidence, hit) per item for `kind`.
fn pairs(labels: &[u8], probs: &[f64], kind: CalibrationKind) -> Vec<(f64, f64)> {
    labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| match kind {
            CalibrationKind::TopLabel => {
                let pred = u8::from(p >= 0.5);
                (p.max(1.0 - p), f64::from(u8::from(pred == y)))
            }
            CalibrationKind::Positive => (p, f64::from(y)),
        })
        .collect()
}

/// Equal-width bin index of `x` (see [`Binning::EqualWidth`]).
pub(crate) fn width_bin(x: f64, n: usize) -> usize {
    // number of boundaries ≤ x, minus one; boundaries k/n for k = 0..=n
    let mut k = (x * n as f64).floor() as usize;
    // guard against rounding at exact boundaries
    while k > 0 && (k as f64 / n as f64) > x {
        k -= 1;
    }
    while k < n && ((k + 1) as f64 / n as f64) <= x {
        k += 1;
    }
    k.min(n)
}

/// The reliability diagram: one entry per bin (for equal-width binning `n + 1`
/// entries, the last holding predictions of exactly 1.0), empty bins included.
pub fn reliability_bins(
    labels: &[u8],
    probs: &[f64],
    binning: Binning,
    kind: CalibrationKind,
) -> Result<Vec<ReliabilityBin>> {
    check_probs(labels, probs)?;
    let items = pairs(labels, probs, kind);
    match binning {
        Binning::EqualWidth(n) => {
            if n == 0 {
                return Err(MetricsError::Invalid {
                    name: "bins".into(),
                    reason: "must be at least 1".into(),
                });
            }
            let mut sums = vec![(0usize, 0.0f64, 0.0f64); n + 1];
            for &(c, a) in &items {
                let k = width_bin(c, n);
                sums[k].0 += 1;
                sums[k].1 += c;
                sums[k].2 += a;
            }
            Ok(sums
                .into_iter()
                .enumerate()
                .map(|(k, (count, cs, acs))| ReliabilityBin {
                    bin: k,
                    lower: k as f64 / n as f64,
                    upper: ((k + 1) as f64 / n as f64).min(1.0),
                    count,
                    confidence: if count > 0 { cs / count as f64 } else { 0.0 },
                    accuracy: if count > 0 { acs / count as f64 } else { 0.0 },
                })
                .collect())
        }
        Binning::EqualMass(n) => {
            if n == 0 || n > items.len() {
                return Err(MetricsError::Invalid {
                    name: "bins".into(),
                    reason: format!(
                        "must be between 1 and the number of predictions ({})",
                        items.len()
                    ),
                });
            }
            let mut sorted = items;
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (q, r) = (sorted.len() / n, sorted.len() % n);
            let mut out = Vec::with_capacity(n);
            let mut start = 0;
            for k in 0..n {
                let len = q + usize::from(k < r);
                let chunk = &sorted[start..start + len];
                start += len;
                let count = chunk.len();
                out.push(ReliabilityBin {
                    bin: k,
                    lower: chunk.first().map_or(0.0, |c| c.0),
                    upper: chunk.last().map_or(0.0, |c| c.0),
                    count,
                    confidence: chunk.iter().map(|c| c.0).sum::<f64>() / count as f64,
                    accuracy: chunk.iter().map(|c| c.1).sum::<f64>() / count as f64,
                });
            }
            Ok(out)
        }
    }
}

fn calibration_error(
    labels: &[u8],
    probs: &[f64],
    binning: Binning,
    kind: CalibrationKind,
    max: bool,
) -> Result<f64> {
    let bins = reliability_bins(labels, probs, binning, kind)?;
    let n = labels.len() as f64;
    let gaps = bins
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| ((b.accuracy - b.confidence).abs(), b.count as f64 / n));
    Ok(if max {
        gaps.map(|g| g.0).fold(0.0, f64::max)
    } else {
        gaps.map(|(g, w)| g * w).sum()
    })
}

/// Expected calibration error, top-label (Guo et al. 2017): Σ_b (n_b / n) ·
/// |accuracy_b − confidence_b| with confidence `max(p, 1 − p)` and accuracy of the
/// 0.5-threshold prediction.
pub fn ece(labels: &[u8], probs: &[f64], binning: Binning) -> Result<f64> {
    calibration_error(labels, probs, binning, CalibrationKind::TopLabel, false)
}

/// Expected calibration error of P(positive) against the label (torchmetrics'
/// binary ECE, norm l1): the same sum with confidence `p` and "accuracy" the
/// fraction of positives in the bin.
pub fn ece_pos(labels: &[u8], probs: &[f64], binning: Binning) -> Result<f64> {
    calibration_error(labels, probs, binning, CalibrationKind::Positive, false)
}

/// Maximum calibration error, top-label: the largest |accuracy − confidence| over
/// non-empty bins.
pub fn mce(labels: &[u8], probs: &[f64], binning: Binning) -> Result<f64> {
    calibration_error(labels, probs, binning, CalibrationKind::TopLabel, true)
}

/// Brier score: mean (p − y)², as scikit-learn's `brier_score_loss`.
pub fn brier(labels: &[u8], probs: &[f64]) -> Result<f64> {
    check_probs(labels, probs)?;
    Ok(labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| (p - f64::from(y)).powi(2))
        .sum::<f64>()
        / labels.len() as f64)
}

/// Mean negative log-likelihood, as scikit-learn's `log_loss` (≥ 1.5): probabilities
/// clipped to [ε, 1 − ε] with ε = `f64::EPSILON` so a confident mistake costs
/// about 36, not infinity.
pub fn log_loss(labels: &[u8], probs: &[f64]) -> Result<f64> {
    check_probs(labels, probs)?;
    let eps = f64::EPSILON;
    Ok(labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| {
            let p = p.clamp(eps, 1.0 - eps);
            if y == 1 { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum::<f64>()
        / labels.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_bins_follow_bucketize_right() {
        assert_eq!(width_bin(0.0, 15), 0);
        assert_eq!(width_bin(1.0 / 15.0 - 1e-12, 15), 0);
        assert_eq!(width_bin(0.2, 10), 2);
        assert_eq!(width_bin(0.999, 15), 14);
        assert_eq!(width_bin(1.0, 15), 15);
    }

    #[test]
    fn hand_computed_ece() {
        // two bins of 10: p = 0.25 (2 of 8... ) — positive-class ECE
        let probs = [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75];
        let labels = [0, 0, 0, 1, 1, 1, 0, 0];
        // bin 0.25: frac pos 0.25 → gap 0; bin 0.75: frac pos 0.5 → gap 0.25, weight 0.5
        let e = ece_pos(&labels, &probs, Binning::EqualWidth(10)).unwrap();
        assert!((e - 0.125).abs() < 1e-15);
        // top-label: conf 0.75 everywhere; correct: first four 3/4, last four 2/4
        let t = ece(&labels, &probs, Binning::EqualWidth(10)).unwrap();
        assert!((t - 0.125).abs() < 1e-15);
        assert!((mce(&labels, &probs, Binning::EqualWidth(10)).unwrap() - 0.125).abs() < 1e-15);
        let m = ece_pos(&labels, &probs, Binning::EqualMass(2)).unwrap();
        assert!((m - 0.125).abs() < 1e-15);
        assert!(ece(&labels, &probs, Binning::EqualMass(9)).is_err());
    }
}
