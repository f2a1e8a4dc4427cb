use serde::{Deserialize, Serialize};

use crate::Result;
use crate::error::{check_probs, invalid};

/// Most bins any [`Binning`] may ask for.
pub const MAX_BINS: usize = 1 << 20;

/// Bins of [`Binning::default`].
pub(crate) const DEFAULT_BINS: usize = 15;

/// How predictions are grouped into bins for calibration errors and reliability
/// diagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Binning {
    /// `n` equal-width bins on [0, 1], torchmetrics' rule: edges `bₖ = k / n`
    /// (k = 0..=n, each the correctly rounded quotient), and a confidence `x` falls
    /// in bin `k` when `bₖ ≤ x < bₖ₊₁` — the index
    /// `bucketize(x, edges, right=True) − 1`. A confidence of exactly 1 is in an
    /// extra bin `n` of its own (torchmetrics allocates `n + 1` slots), so
    /// [`reliability_bins`] returns `n + 1` entries.
    ///
    /// torchmetrics builds its edges with `torch.linspace`, whose floating-point
    /// formula can put an edge one ulp away from `k / n` (differently on different
    /// CPUs); only a confidence lying exactly on such an edge can bin differently.
    EqualWidth(usize),
    /// `n` bins holding equal numbers of predictions: sorted by confidence (ties
    /// keep input order), split as `numpy.array_split` does (the first `len % n`
    /// bins get one more). `n` may not exceed the number of predictions.
    EqualMass(usize),
}

impl Default for Binning {
    /// 15 equal-width bins (Guo et al. 2017; torchmetrics' default).
    fn default() -> Self {
        Binning::EqualWidth(DEFAULT_BINS)
    }
}

/// Which calibration question a reliability diagram answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CalibrationKind {
    /// Top-label (Guo et al. 2017): confidence `max(p, 1 − p)` against whether the
    /// 0.5-threshold prediction (`p ≥ 0.5` is positive) is correct. Used by
    /// [`ece`] and [`mce`].
    TopLabel,
    /// Positive class: `p` = P(pneumonia) against the label, i.e. the fraction of
    /// positives (torchmetrics' `BinaryCalibrationError`). Used by [`ece_pos`].
    Positive,
}

/// One bin of a reliability diagram.
///
/// Serialised as `bin`, `lower`, `upper`, `count`, `confidence`, `accuracy`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// 0-based bin number.
    pub bin: usize,
    /// Lower edge: `k / n` for equal-width bins; the smallest confidence in the
    /// bin for equal-mass bins.
    pub lower: f64,
    /// Upper edge: `(k + 1) / n` for equal-width bins (1 for the extra bin of
    /// exact ones, whose `lower` is also 1); the largest confidence in the bin for
    /// equal-mass bins.
    pub upper: f64,
    /// Predictions in the bin.
    pub count: usize,
    /// Mean confidence in the bin (0 when empty).
    pub confidence: f64,
    /// Top-label: fraction of correct 0.5-threshold predictions; positive class:
    /// fraction of positives. 0 when empty.
    pub accuracy: f64,
}

/// (confidence, hit) of one item for `kind`.
fn pair(y: u8, p: f64, kind: CalibrationKind) -> (f64, f64) {
    match kind {
        CalibrationKind::TopLabel => {
            let pred = u8::from(p >= 0.5);
            (p.max(1.0 - p), f64::from(u8::from(pred == y)))
        }
        CalibrationKind::Positive => (p, f64::from(y)),
    }
}

/// Equal-width bin index of `x` in [0, 1] (see [`Binning::EqualWidth`]): the number
/// of edges `k / n` that are ≤ `x`, minus one.
pub(crate) fn width_bin(x: f64, n: usize) -> usize {
    let nf = n as f64;
    let mut k = ((x * nf).floor().max(0.0) as usize).min(n);
    // `x · n` can round across an edge; settle against the edges themselves.
    while k > 0 && (k as f64 / nf) > x {
        k -= 1;
    }
    while k < n && ((k + 1) as f64 / nf) <= x {
        k += 1;
    }
    k
}

/// Validates `binning` for `len` predictions.
pub(crate) fn check_binning(binning: Binning, len: usize) -> Result<()> {
    match binning {
        Binning::EqualWidth(n) if n == 0 || n > MAX_BINS => Err(invalid(
            "bins",
            format!("equal-width bins must number 1 to {MAX_BINS}, got {n}"),
        )),
        Binning::EqualMass(n) if n == 0 || n > len => Err(invalid(
            "bins",
            format!("equal-mass bins must number 1 to the number of predictions ({len}), got {n}"),
        )),
        _ => Ok(()),
    }
}

fn mean(sum: f64, count: usize) -> f64 {
    if count > 0 { sum / count as f64 } else { 0.0 }
}

/// Bins for already-checked input.
fn bins_unchecked(
    labels: &[u8],
    probs: &[f64],
    binning: Binning,
    kind: CalibrationKind,
) -> Result<Vec<ReliabilityBin>> {
    check_binning(binning, labels.len())?;
    let items = labels.iter().zip(probs).map(|(&y, &p)| pair(y, p, kind));
    Ok(match binning {
        Binning::EqualWidth(n) => {
            let mut sums = vec![(0usize, 0.0f64, 0.0f64); n + 1];
            for (c, a) in items {
                let s = &mut sums[width_bin(c, n)];
                s.0 += 1;
                s.1 += c;
                s.2 += a;
            }
            let nf = n as f64;
            sums.into_iter()
                .enumerate()
                .map(|(k, (count, cs, hs))| ReliabilityBin {
                    bin: k,
                    lower: k as f64 / nf,
                    upper: if k < n { (k + 1) as f64 / nf } else { 1.0 },
                    count,
                    confidence: mean(cs, count),
                    accuracy: mean(hs, count),
                })
                .collect()
        }
        Binning::EqualMass(n) => {
            let mut sorted: Vec<(f64, f64)> = items.collect();
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (q, r) = (sorted.len() / n, sorted.len() % n);
            let mut rest = sorted.as_slice();
            (0..n)
                .map(|k| {
                    let (chunk, tail) = rest.split_at((q + usize::from(k < r)).min(rest.len()));
                    rest = tail;
                    let count = chunk.len();
                    ReliabilityBin {
                        bin: k,
                        lower: chunk.first().map_or(0.0, |c| c.0),
                        upper: chunk.last().map_or(0.0, |c| c.0),
                        count,
                        confidence: mean(chunk.iter().map(|c| c.0).sum(), count),
                        accuracy: mean(chunk.iter().map(|c| c.1).sum(), count),
                    }
                })
                .collect()
        }
    })
}

/// The reliability diagram: one entry per bin, empty bins included (for
/// equal-width binning `n + 1` entries, the last holding predictions of exactly
/// 1). `kind` picks the question: [`CalibrationKind::TopLabel`] gives the bins of
/// [`ece`]/[`mce`], [`CalibrationKind::Positive`] those of [`ece_pos`].
///
/// Errors on bad input (see [`MetricsError`](crate::MetricsError)), probabilities
/// outside [0, 1], and bin counts out of range.
pub fn reliability_bins(
    labels: &[u8],
    probs: &[f64],
    binning: Binning,
    kind: CalibrationKind,
) -> Result<Vec<ReliabilityBin>> {
    check_probs(labels, probs)?;
    bins_unchecked(labels, probs, binning, kind)
}

/// Σ_b (n_b / n)·|accuracy_b − confidence_b| over non-empty bins, or the largest
/// gap when `max`; input already checked (the binning is checked here).
pub(crate) fn calibration_error_unchecked(
    labels: &[u8],
    probs: &[f64],
    binning: Binning,
    kind: CalibrationKind,
    max: bool,
) -> Result<f64> {
    let bins = bins_unchecked(labels, probs, binning, kind)?;
    let total = labels.len() as f64;
    let gaps = bins
        .iter()
        .filter(|b| b.count > 0)
        .map(|b| ((b.accuracy - b.confidence).abs(), b.count as f64 / total));
    Ok(if max {
        gaps.map(|g| g.0).fold(0.0, f64::max)
    } else {
        gaps.map(|(g, w)| g * w).sum()
    })
}

/// Expected calibration error, **top-label** (Guo et al. 2017, "On Calibration of
/// Modern Neural Networks"): Σ_b (n_b / n)·|acc_b − conf_b| where an item's
/// confidence is `max(p, 1 − p)` — the probability of the class it is called as —
/// and `acc_b` is the fraction of the bin's 0.5-threshold predictions that are
/// correct (`p ≥ 0.5` counts as a positive call). Confidences lie in [0.5, 1], so
/// with equal-width bins only the upper half of the bins is used.
///
/// This is what "ECE" means in most calibration papers; for the calibration of
/// P(pneumonia) itself see [`ece_pos`]. Needs probabilities in [0, 1].
pub fn ece(labels: &[u8], probs: &[f64], binning: Binning) -> Result<f64> {
    check_probs(labels, probs)?;
    calibration_error_unchecked(labels, probs, binning, CalibrationKind::TopLabel, false)
}

/// Expected calibration error of **P(positive)** against the label: Σ_b (n_b / n)
/// ·|pos_b − mean p_b| where `pos_b` is the fraction of positives in the bin —
/// torchmetrics' `BinaryCalibrationError(n_bins, norm="l1")` (binning as
/// [`Binning::EqualWidth`]). It asks "when the model says 30 %, are 30 % of the
/// cases pneumonia?", over the whole [0, 1] range. Needs probabilities in [0, 1].
pub fn ece_pos(labels: &[u8], probs: &[f64], binning: Binning) -> Result<f64> {
    check_probs(labels, probs)?;
    calibration_error_unchecked(labels, probs, binning, CalibrationKind::Positive, false)
}

/// Maximum calibration error, **top-label** (Guo et al. 2017): the largest
/// |acc_b − conf_b| over non-empty bins, with [`ece`]'s confidences and bins
/// (torchmetrics' `norm="max"` on those). Needs probabilities in [0, 1].
pub fn mce(labels: &[u8], probs: &[f64], binning: Binning) -> Result<f64> {
    check_probs(labels, probs)?;
    calibration_error_unchecked(labels, probs, binning, CalibrationKind::TopLabel, true)
}

pub(crate) fn brier_unchecked(labels: &[u8], probs: &[f64]) -> f64 {
    labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| (p - f64::from(y)).powi(2))
        .sum::<f64>()
        / labels.len() as f64
}

/// Brier score: mean (p − y)², as scikit-learn's `brier_score_loss` for binary
/// labels. Needs probabilities in [0, 1].
pub fn brier(labels: &[u8], probs: &[f64]) -> Result<f64> {
    check_probs(labels, probs)?;
    Ok(brier_unchecked(labels, probs))
}

/// Clipping bound of [`log_loss`].
pub const LOG_LOSS_EPS: f64 = 1e-15;

pub(crate) fn log_loss_unchecked(labels: &[u8], probs: &[f64]) -> f64 {
    labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| {
            // scikit-learn < 1.5: clip p, then the negative class gets 1 − clipped p
            let pc = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
            if y == 1 { -pc.ln() } else { -(1.0 - pc).ln() }
        })
        .sum::<f64>()
        / labels.len() as f64
}

/// Mean negative log-likelihood (binary cross-entropy) of probabilities `probs`,
/// as scikit-learn's `log_loss` with its former default `eps=1e-15` (before 1.5):
/// each `p` is first clipped to [1e-15, 1 − 1e-15], then a positive costs −ln p and
/// a negative −ln(1 − p). So one confident mistake costs about 34.5 instead of
/// infinity. scikit-learn ≥ 1.5 clips at the dtype's machine epsilon (2.2e-16)
/// instead; the two differ only for probabilities within 1e-15 of 0 or 1. Needs
/// probabilities in [0, 1].
pub fn log_loss(labels: &[u8], probs: &[f64]) -> Result<f64> {
    check_probs(labels, probs)?;
    Ok(log_loss_unchecked(labels, probs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricsError;

    #[test]
    fn width_bins_follow_bucketize_right() {
        assert_eq!(width_bin(0.0, 15), 0);
        assert_eq!(width_bin(1.0 / 15.0 - 1e-12, 15), 0);
        assert_eq!(width_bin(1.0 / 15.0, 15), 1);
        assert_eq!(width_bin(0.2, 10), 2);
        assert_eq!(width_bin(0.3, 10), 3, "0.3 = 3/10 exactly as doubles");
        assert_eq!(width_bin(0.999, 15), 14);
        assert_eq!(width_bin(1.0, 15), 15);
        assert_eq!(width_bin(1.0, 1), 1);
        assert_eq!(width_bin(0.7, 1), 0);
        // every edge k/n lands in bin k, the value just below it in bin k − 1
        for n in [1usize, 3, 7, 10, 15, 20, 100] {
            for k in 1..=n {
                let e = k as f64 / n as f64;
                assert_eq!(width_bin(e, n), k);
                assert_eq!(width_bin(e.next_down(), n), k - 1);
            }
        }
    }

    #[test]
    fn hand_computed_ece() {
        let probs = [0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75];
        let labels = [0, 0, 0, 1, 1, 1, 0, 0];
        // P(positive): bin 0.25 holds 1/4 positives → gap 0; bin 0.75 holds 2/4 →
        // gap 0.25, weight 0.5
        let e = ece_pos(&labels, &probs, Binning::EqualWidth(10)).unwrap();
        assert_eq!(e, 0.125);
        // top-label: confidence 0.75 everywhere (one bin); 5 of 8 calls correct
        let t = ece(&labels, &probs, Binning::EqualWidth(10)).unwrap();
        assert_eq!(t, 0.125);
        assert_eq!(
            mce(&labels, &probs, Binning::EqualWidth(10)).unwrap(),
            0.125
        );
        assert_eq!(
            ece_pos(&labels, &probs, Binning::EqualMass(2)).unwrap(),
            0.125
        );
        assert!(matches!(
            ece(&labels, &probs, Binning::EqualMass(9)),
            Err(MetricsError::Invalid { .. })
        ));
        assert!(ece(&labels, &probs, Binning::EqualWidth(0)).is_err());
        assert!(ece(&labels, &probs, Binning::EqualWidth(MAX_BINS + 1)).is_err());
    }

    #[test]
    fn reliability_bins_layout() {
        let labels = [0, 1, 1, 0, 1];
        let probs = [0.0, 1.0, 0.55, 0.45, 0.95];
        let b = reliability_bins(
            &labels,
            &probs,
            Binning::EqualWidth(2),
            CalibrationKind::Positive,
        )
        .unwrap();
        assert_eq!(b.len(), 3);
        assert_eq!(b.iter().map(|x| x.count).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert_eq!((b[2].lower, b[2].upper), (1.0, 1.0));
        assert_eq!(b[0].confidence, 0.225);
        assert_eq!(b[1].accuracy, 1.0);
        // top-label: confidences 1, 1, 0.55, 0.55, 0.95; all calls correct
        let t = reliability_bins(
            &labels,
            &probs,
            Binning::EqualWidth(2),
            CalibrationKind::TopLabel,
        )
        .unwrap();
        assert_eq!(t.iter().map(|x| x.count).collect::<Vec<_>>(), vec![0, 3, 2]);
        assert_eq!((t[0].confidence, t[0].accuracy), (0.0, 0.0));
        // equal mass: 5 items in 2 bins → 3 + 2, sorted by confidence
        let m = reliability_bins(
            &labels,
            &probs,
            Binning::EqualMass(2),
            CalibrationKind::Positive,
        )
        .unwrap();
        assert_eq!(
            m.iter()
                .map(|x| (x.count, x.lower, x.upper))
                .collect::<Vec<_>>(),
            vec![(3, 0.0, 0.55), (2, 0.95, 1.0)]
        );
        let ser = serde_json::to_string(&m[0]).unwrap();
        assert!(
            ser.starts_with(r#"{"bin":0,"lower":0.0,"upper":0.55,"count":3,"#),
            "{ser}"
        );
    }

    #[test]
    fn brier_and_clipped_log_loss() {
        assert_eq!(brier(&[0, 1], &[0.5, 1.0]).unwrap(), 0.125);
        // a confident mistake costs −ln(1e−15), not infinity
        let l = log_loss(&[1], &[0.0]).unwrap();
        assert_eq!(l, -(1e-15f64).ln());
        // a negative at p = 1: −ln(1 − (1 − 1e−15)), 1 − 1e−15 being rounded
        let l = log_loss(&[0], &[1.0]).unwrap();
        assert_eq!(l, -(1.0 - (1.0 - 1e-15f64)).ln());
        assert!((l - 34.54).abs() < 0.01);
        let l = log_loss(&[1, 0], &[0.8, 0.4]).unwrap();
        assert!((l - (-(0.8f64.ln()) - 0.6f64.ln()) / 2.0).abs() < 1e-15);
    }
}
