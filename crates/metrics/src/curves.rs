use serde::{Deserialize, Serialize};

use crate::Result;
use crate::error::{check_both_classes, check_scores};

/// Cumulative (false positives, true positives, threshold) at each distinct score,
/// scores descending: scikit-learn's `_binary_clf_curve`.
fn binary_clf_curve(labels: &[u8], scores: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // numpy: argsort(mergesort) reversed; ties keep reversed index order, which does
    // not change the counts at distinct thresholds.
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut fps, mut tps, mut thr) = (Vec::new(), Vec::new(), Vec::new());
    let (mut tp, mut fp) = (0.0, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] == 1 {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last = k + 1 == order.len() || scores[order[k + 1]] != scores[i];
        if last {
            fps.push(fp);
            tps.push(tp);
            thr.push(scores[i]);
        }
    }
    (fps, tps, thr)
}

/// One point of a ROC curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// False-positive rate.
    pub fpr: f64,
    /// True-positive rate (sensitivity).
    pub tpr: f64,
    /// Predict positive iff score ≥ threshold; the first point's threshold is +∞.
    pub threshold: f64,
}

/// The ROC curve exactly as scikit-learn's `roc_curve`: one point per distinct
/// score (descending thresholds), preceded by (0, 0) at threshold +∞.
///
/// With `drop_intermediate`, points that lie on a straight segment between their
/// neighbours (where neither the fp nor the tp count changes slope — scikit-learn's
/// second-difference rule) are dropped; the curve and its area are unchanged.
/// Needs both classes.
pub fn roc_curve(labels: &[u8], scores: &[f64], drop_intermediate: bool) -> Result<Vec<RocPoint>> {
    check_scores(labels, scores)?;
    check_both_classes(labels)?;
    let (mut fps, mut tps, mut thr) = binary_clf_curve(labels, scores);
    if drop_intermediate && fps.len() > 2 {
        let n = fps.len();
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
    let (fmax, tmax) = (fps[fps.len() - 1], tps[tps.len() - 1]);
    let mut out = Vec::with_capacity(fps.len() + 1);
    out.push(RocPoint {
        fpr: 0.0,
        tpr: 0.0,
        threshold: f64::INFINITY,
    });
    for i in 0..fps.len() {
        out.push(RocPoint {
            fpr: fps[i] / fmax,
            tpr: tps[i] / tmax,
            threshold: thr[i],
        });
    }
    Ok(out)
}

/// Area under the ROC curve by the trapezoidal rule over distinct thresholds, as
/// scikit-learn's `roc_auc_score`: tied scores count one half. Needs both classes.
pub fn roc_auc(labels: &[u8], scores: &[f64]) -> Result<f64> {
    let pts = roc_curve(labels, scores, false)?;
    Ok(pts
        .windows(2)
        .map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0)
        .sum())
}

/// One point of a precision–recall curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrPoint {
    /// Recall.
    pub recall: f64,
    /// Precision.
    pub precision: f64,
    /// Threshold; the final (recall 0, precision 1) point has none (NaN in memory,
    /// written as an empty field).
    pub threshold: f64,
}

/// The precision–recall curve exactly as scikit-learn's `precision_recall_curve`
/// (without `drop_intermediate`): one point per distinct score in *increasing*
/// threshold order (recall decreasing), then the point (recall 0, precision 1) that
/// has no threshold. Precision where nothing is predicted positive is 0. Needs at
/// least one positive.
pub fn precision_recall_curve(labels: &[u8], scores: &[f64]) -> Result<Vec<PrPoint>> {
    check_scores(labels, scores)?;
    if !labels.contains(&1) {
        return Err(crate::MetricsError::SingleClass { class: 0 });
    }
    let (fps, tps, thr) = binary_clf_curve(labels, scores);
    let tmax = tps[tps.len() - 1];
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

/// Average precision as scikit-learn's `average_precision_score`:
/// Σ (Rₙ − Rₙ₋₁) Pₙ over the PR curve (a step function, no interpolation).
pub fn average_precision(labels: &[u8], scores: &[f64]) -> Result<f64> {
    let pts = precision_recall_curve(labels, scores)?;
    Ok(-pts
        .windows(2)
        .map(|w| (w[1].recall - w[0].recall) * w[0].precision)
        .sum::<f64>())
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
        assert!((roc_auc(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]).unwrap() - 0.75).abs() < 1e-15);
        assert!(roc_auc(&[1, 1], &[0.1, 0.2]).is_err());
    }
}
