use serde::{Deserialize, Serialize};

use crate::error::{check_both_classes, check_scores};
use crate::{MetricsError, Result};

/// Cumulative counts at each distinct score, scores descending: scikit-learn's
/// `confusion_matrix_at_thresholds` (formerly `_binary_clf_curve`).
struct ClfCurve {
    /// False positives among items with score ≥ `thr[i]`.
    fps: Vec<f64>,
    /// True positives among items with score ≥ `thr[i]`.
    tps: Vec<f64>,
    /// The distinct scores, descending.
    thr: Vec<f64>,
}

fn binary_clf_curve(labels: &[u8], scores: &[f64]) -> ClfCurve {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Descending. scikit-learn reverses a stable ascending argsort, so its ties sit
    // in reversed index order; the order inside a tie never changes the counts at
    // distinct thresholds. Scores are finite here, so `total_cmp` only differs from
    // `==` on -0.0 vs 0.0, which it keeps adjacent (and `==` then merges them).
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut c = ClfCurve {
        fps: Vec::new(),
        tps: Vec::new(),
        thr: Vec::new(),
    };
    let (mut tp, mut fp) = (0u64, 0u64);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] == 1 {
            tp += 1;
        } else {
            fp += 1;
        }
        let last_of_tie = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if last_of_tie {
            c.fps.push(fp as f64);
            c.tps.push(tp as f64);
            c.thr.push(scores[i]);
        }
    }
    c
}

/// One point of a ROC curve.
///
/// Serialised as `fpr`, `tpr`, `threshold` (the first point's `+∞` threshold
/// becomes `null` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// False-positive rate, fp / negatives.
    pub fpr: f64,
    /// True-positive rate (sensitivity), tp / positives.
    pub tpr: f64,
    /// Predict positive iff score ≥ threshold; the first point's threshold is +∞.
    pub threshold: f64,
}

fn roc_points(labels: &[u8], scores: &[f64], drop_intermediate: bool) -> Vec<RocPoint> {
    let ClfCurve {
        mut fps,
        mut tps,
        mut thr,
    } = binary_clf_curve(labels, scores);
    let n = fps.len();
    if drop_intermediate && n > 2 {
        // scikit-learn: keep i where np.diff(fps, 2) or np.diff(tps, 2) is non-zero,
        // plus the first and last point.
        let keep: Vec<usize> = (0..n)
            .filter(|&i| {
                i == 0
                    || i == n - 1
                    || (fps[i + 1] - 2.0 * fps[i] + fps[i - 1]) != 0.0
                    || (tps[i + 1] - 2.0 * tps[i] + tps[i - 1]) != 0.0
            })
            .collect();
        fps = keep.iter().map(|&i| fps[i]).collect();
        tps = keep.iter().map(|&i| tps[i]).collect();
        thr = keep.iter().map(|&i| thr[i]).collect();
    }
    // Both classes are present, so the totals (last entries) are positive.
    let fmax = fps.last().copied().unwrap_or(1.0);
    let tmax = tps.last().copied().unwrap_or(1.0);
    let mut out = Vec::with_capacity(fps.len() + 1);
    out.push(RocPoint {
        fpr: 0.0,
        tpr: 0.0,
        threshold: f64::INFINITY,
    });
    out.extend(
        fps.iter()
            .zip(&tps)
            .zip(&thr)
            .map(|((&fp, &tp), &t)| RocPoint {
                fpr: fp / fmax,
                tpr: tp / tmax,
                threshold: t,
            }),
    );
    out
}

/// The ROC curve exactly as scikit-learn's `roc_curve(labels, scores,
/// drop_intermediate=...)`.
///
/// Points are in order of *decreasing* threshold (increasing fpr and tpr): first
/// (fpr 0, tpr 0) at threshold +∞ (scikit-learn ≥ 1.3 uses `np.inf` there), then
/// one point per distinct score, the threshold being that score and the rates
/// those of "positive iff score ≥ threshold"; the last point is (1, 1) at the
/// smallest score.
///
/// `drop_intermediate` is scikit-learn's rule: among the distinct-score points,
/// point `i` (not the first or last) is dropped when both second differences of
/// the cumulative counts vanish, `fp[i+1] − 2·fp[i] + fp[i−1] = 0` and
/// `tp[i+1] − 2·tp[i] + tp[i−1] = 0` — it lies on a straight segment continuing
/// at the same slope and step. That removes most points inside horizontal and
/// vertical runs but keeps some collinear ones (e.g. fp 1, 3, 7 with tp 1, 2, 4);
/// the curve and its area are unchanged. Nothing is dropped when there are at most
/// two distinct scores.
///
/// Scores may be any finite numbers. Needs both classes (scikit-learn would return
/// NaN rates with a warning).
pub fn roc_curve(labels: &[u8], scores: &[f64], drop_intermediate: bool) -> Result<Vec<RocPoint>> {
    check_scores(labels, scores)?;
    check_both_classes(labels)?;
    Ok(roc_points(labels, scores, drop_intermediate))
}

/// Trapezoid area under the (drop-intermediate) ROC curve; input already checked.
pub(crate) fn roc_auc_unchecked(labels: &[u8], scores: &[f64]) -> f64 {
    roc_points(labels, scores, true)
        .windows(2)
        .map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0)
        .sum()
}

/// Area under the ROC curve exactly as scikit-learn's `roc_auc_score` for binary
/// labels: the trapezoidal rule (`numpy.trapezoid`) over
/// `roc_curve(drop_intermediate=True)`.
///
/// Over distinct thresholds the trapezoid counts a tied positive–negative pair as
/// one half, so this equals the Mann–Whitney statistic with average ranks,
/// P(score⁺ > score⁻) + ½·P(score⁺ = score⁻). Scores may be any finite numbers.
/// Needs both classes.
pub fn roc_auc(labels: &[u8], scores: &[f64]) -> Result<f64> {
    check_scores(labels, scores)?;
    check_both_classes(labels)?;
    Ok(roc_auc_unchecked(labels, scores))
}

/// One point of a precision–recall curve.
///
/// Serialised as `recall`, `precision`, `threshold` (the final point's NaN
/// threshold becomes `null` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrPoint {
    /// Recall, tp / positives.
    pub recall: f64,
    /// Precision, tp / (tp + fp).
    pub precision: f64,
    /// Predict positive iff score ≥ threshold. The final (recall 0, precision 1)
    /// point has no threshold: NaN there (the only NaN this crate returns, a
    /// documented sentinel).
    pub threshold: f64,
}

/// The precision–recall curve exactly as scikit-learn's
/// `precision_recall_curve(labels, scores)` (`drop_intermediate=False`).
///
/// Ordering follows scikit-learn: one point per distinct score in *increasing*
/// threshold order (so recall is non-increasing along the vector, the first point
/// having recall 1 at the smallest score), then a final point (recall 0,
/// precision 1) that has no threshold — scikit-learn returns one threshold fewer
/// than points; here that point's `threshold` is NaN. Precision where nothing is
/// predicted positive would be 0, but every distinct-score point predicts at least
/// one item positive.
///
/// Scores may be any finite numbers. Needs at least one positive (scikit-learn
/// would set recall to 1 everywhere, with a warning); negatives may be absent.
pub fn precision_recall_curve(labels: &[u8], scores: &[f64]) -> Result<Vec<PrPoint>> {
    check_scores(labels, scores)?;
    if !labels.contains(&1) {
        return Err(MetricsError::SingleClass { class: 0 });
    }
    let ClfCurve { fps, tps, thr } = binary_clf_curve(labels, scores);
    let tmax = tps.last().copied().unwrap_or(1.0);
    let mut out: Vec<PrPoint> = (0..tps.len())
        .rev()
        .map(|i| {
            let ps = tps[i] + fps[i];
            PrPoint {
                recall: tps[i] / tmax,
                precision: if ps == 0.0 { 0.0 } else { tps[i] / ps },
                threshold: thr[i],
            }
        })
        .collect();
    out.push(PrPoint {
        recall: 0.0,
        precision: 1.0,
        threshold: f64::NAN,
    });
    Ok(out)
}

/// Average precision exactly as scikit-learn's `average_precision_score`:
/// `−Σ (Rₖ₊₁ − Rₖ) · Pₖ` over the points of [`precision_recall_curve`] (a step
/// function, no interpolation), clipped below at 0 as scikit-learn does. Needs at
/// least one positive; with no negative it is 1.
pub fn average_precision(labels: &[u8], scores: &[f64]) -> Result<f64> {
    let pts = precision_recall_curve(labels, scores)?;
    let s: f64 = pts
        .windows(2)
        .map(|w| (w[1].recall - w[0].recall) * w[0].precision)
        .sum();
    Ok((-s).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_auc_cases() {
        // perfect, inverted, all tied
        assert_eq!(roc_auc(&[0, 0, 1, 1], &[0.1, 0.2, 0.8, 0.9]).unwrap(), 1.0);
        assert_eq!(roc_auc(&[0, 0, 1, 1], &[0.9, 0.8, 0.2, 0.1]).unwrap(), 0.0);
        assert_eq!(roc_auc(&[0, 1, 0, 1], &[0.5; 4]).unwrap(), 0.5);
        // sklearn: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) = 0.75
        assert_eq!(
            roc_auc(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]).unwrap(),
            0.75
        );
        // one tied pair of four counts one half: (3 + 0.5) / 4
        assert_eq!(
            roc_auc(&[0, 0, 1, 1], &[0.1, 0.4, 0.4, 0.8]).unwrap(),
            0.875
        );
        assert_eq!(
            roc_auc(&[1, 1], &[0.1, 0.2]),
            Err(MetricsError::SingleClass { class: 1 })
        );
    }

    #[test]
    fn roc_points_and_dropping() {
        // scikit-learn docs example: y = [1, 1, 2, 2], scores [0.1, 0.4, 0.35, 0.8]
        let pts = roc_curve(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8], false).unwrap();
        let got: Vec<(f64, f64, f64)> = pts.iter().map(|p| (p.fpr, p.tpr, p.threshold)).collect();
        assert_eq!(
            got,
            vec![
                (0.0, 0.0, f64::INFINITY),
                (0.0, 0.5, 0.8),
                (0.5, 0.5, 0.4),
                (0.5, 1.0, 0.35),
                (1.0, 1.0, 0.1),
            ]
        );
        // a vertical run: the middle point of tp 1, 2, 3 at fp 0 is dropped
        let labels = [1, 1, 1, 0];
        let scores = [0.9, 0.8, 0.7, 0.1];
        assert_eq!(roc_curve(&labels, &scores, false).unwrap().len(), 5);
        let kept: Vec<f64> = roc_curve(&labels, &scores, true)
            .unwrap()
            .iter()
            .map(|p| p.threshold)
            .collect();
        assert_eq!(kept, vec![f64::INFINITY, 0.9, 0.7, 0.1]);
    }

    #[test]
    fn pr_curve_order_and_average_precision() {
        let pr = precision_recall_curve(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]).unwrap();
        let recall: Vec<f64> = pr.iter().map(|p| p.recall).collect();
        let precision: Vec<f64> = pr.iter().map(|p| p.precision).collect();
        assert_eq!(recall, vec![1.0, 1.0, 0.5, 0.5, 0.0]);
        assert_eq!(precision, vec![0.5, 2.0 / 3.0, 0.5, 1.0, 1.0]);
        assert!(pr[4].threshold.is_nan());
        // sklearn docs: 0.8333...
        let ap = average_precision(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]).unwrap();
        assert!((ap - 0.833_333_333_333_333_4).abs() < 1e-15, "{ap}");
        assert_eq!(average_precision(&[1, 1], &[0.3, 0.2]).unwrap(), 1.0);
        assert_eq!(
            precision_recall_curve(&[0, 0], &[0.3, 0.2]),
            Err(MetricsError::SingleClass { class: 0 })
        );
    }
}
