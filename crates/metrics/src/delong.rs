use serde::{Deserialize, Serialize};

use crate::Result;
use crate::error::{check_both_classes, check_scores, invalid};

/// z for a two-sided 95% interval: Φ⁻¹(0.975) (scipy's `norm.ppf(0.975)`).
const Z975: f64 = 1.959_963_984_540_054;

/// Standard normal CDF, Φ(x) = ½·erfc(−x/√2).
///
/// Through the complementary error function rather than `1 − Φ(−x)`, so small
/// tail probabilities (p-values down to ~1e-300) keep full relative precision.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Midranks (1-based, ties averaged) of `x`.
fn midrank(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// AUC and DeLong's structural components by Sun & Xu's midrank formulas: with
/// `tz` the midranks in the pooled sample and `tx`/`ty` within positives/negatives,
/// V10ᵢ = (tzᵢ − txᵢ)/n for each positive and V01ⱼ = 1 − (tzⱼ − tyⱼ)/m for each
/// negative; AUC = (Σ tz over positives / m − (m + 1)/2) / n.
fn components(pos: &[f64], neg: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
    let (m, n) = (pos.len() as f64, neg.len() as f64);
    let tx = midrank(pos);
    let ty = midrank(neg);
    let z: Vec<f64> = pos.iter().chain(neg).copied().collect();
    let tz = midrank(&z);
    let auc = (tz[..pos.len()].iter().sum::<f64>() / m - (m + 1.0) / 2.0) / n;
    let v10: Vec<f64> = (0..pos.len()).map(|i| (tz[i] - tx[i]) / n).collect();
    let v01: Vec<f64> = (0..neg.len())
        .map(|j| 1.0 - (tz[pos.len() + j] - ty[j]) / m)
        .collect();
    (auc, v10, v01)
}

/// Sample covariance (ddof = 1). A single observation has none: 0 (numpy would
/// give NaN with a warning).
fn cov(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    if a.len() < 2 {
        return 0.0;
    }
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - ma) * (y - mb))
        .sum::<f64>()
        / (n - 1.0)
}

fn split(labels: &[u8], scores: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let pos = labels
        .iter()
        .zip(scores)
        .filter(|(y, _)| **y == 1)
        .map(|(_, s)| *s)
        .collect();
    let neg = labels
        .iter()
        .zip(scores)
        .filter(|(y, _)| **y == 0)
        .map(|(_, s)| *s)
        .collect();
    (pos, neg)
}

/// ROC AUC with DeLong's variance and a 95% confidence interval.
///
/// Serialised as `auc`, `variance`, `low`, `high`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AucCi {
    /// ROC AUC.
    pub auc: f64,
    /// DeLong variance of the AUC.
    pub variance: f64,
    /// Lower end of the 95% interval, clipped to [0, 1].
    pub low: f64,
    /// Upper end of the 95% interval, clipped to [0, 1].
    pub high: f64,
}

/// DeLong et al. (1988) variance of the ROC AUC, computed with Sun & Xu's (2014)
/// O(n log n) midrank algorithm (as in the `roc_comparison` reference
/// implementation), and the normal 95% interval `auc ± Φ⁻¹(0.975)·√var` clipped to
/// [0, 1].
///
/// var = S10/m + S01/n with S10, S01 the sample variances (ddof = 1) of the
/// components over the m positives and n negatives; a class with a single member
/// contributes 0. Ties between a positive and a negative count one half, so `auc`
/// equals [`roc_auc`](crate::roc_auc). Scores may be any finite numbers. Needs
/// both classes.
pub fn auc_ci_delong(labels: &[u8], scores: &[f64]) -> Result<AucCi> {
    check_scores(labels, scores)?;
    check_both_classes(labels)?;
    let (pos, neg) = split(labels, scores);
    let (auc, v10, v01) = components(&pos, &neg);
    let var = cov(&v10, &v10) / pos.len() as f64 + cov(&v01, &v01) / neg.len() as f64;
    let half = Z975 * var.max(0.0).sqrt();
    Ok(AucCi {
        auc,
        variance: var,
        low: (auc - half).max(0.0),
        high: (auc + half).min(1.0),
    })
}

/// DeLong's test of two correlated AUCs (two models scored on the same items).
///
/// Serialised as `auc_a`, `auc_b`, `variance`, `z`, `p_value`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DelongTest {
    /// AUC of model A.
    pub auc_a: f64,
    /// AUC of model B.
    pub auc_b: f64,
    /// DeLong variance of AUC_A − AUC_B.
    pub variance: f64,
    /// z = (AUC_A − AUC_B) / √Var(AUC_A − AUC_B).
    pub z: f64,
    /// Two-sided p-value 2·Φ(−|z|) (1, with z = 0, when the two models give
    /// identical structural components).
    pub p_value: f64,
}

/// DeLong's test of H₀: AUC_A = AUC_B for two models scored on the same items
/// (`scores_a[i]` and `scores_b[i]` belong to `labels[i]`), with the fast
/// midrank algorithm of Sun & Xu (2014):
/// Var(AUC_A − AUC_B) = (S10_AA + S10_BB − 2·S10_AB)/m + (S01_AA + S01_BB −
/// 2·S01_AB)/n, z = (AUC_A − AUC_B)/√Var, p = 2·Φ(−|z|).
///
/// Needs both classes. Errors with [`MetricsError::Invalid`](crate::MetricsError)
/// when the variance is 0 but the AUCs differ (e.g. one model perfect, the other
/// perfectly inverted), where z would be infinite.
pub fn delong_test(labels: &[u8], scores_a: &[f64], scores_b: &[f64]) -> Result<DelongTest> {
    check_scores(labels, scores_a)?;
    check_scores(labels, scores_b)?;
    check_both_classes(labels)?;
    let (pa, na) = split(labels, scores_a);
    let (pb, nb) = split(labels, scores_b);
    let (auc_a, v10a, v01a) = components(&pa, &na);
    let (auc_b, v10b, v01b) = components(&pb, &nb);
    let (m, n) = (pa.len() as f64, na.len() as f64);
    let var = (cov(&v10a, &v10a) + cov(&v10b, &v10b) - 2.0 * cov(&v10a, &v10b)) / m
        + (cov(&v01a, &v01a) + cov(&v01b, &v01b) - 2.0 * cov(&v01a, &v01b)) / n;
    // var ≥ 0 in exact arithmetic; identical components give exactly 0
    if var <= 0.0 {
        if auc_a != auc_b {
            return Err(invalid(
                "scores",
                "the AUC difference has zero DeLong variance but the AUCs differ",
            ));
        }
        return Ok(DelongTest {
            auc_a,
            auc_b,
            variance: 0.0,
            z: 0.0,
            p_value: 1.0,
        });
    }
    let z = (auc_a - auc_b) / var.sqrt();
    Ok(DelongTest {
        auc_a,
        auc_b,
        variance: var,
        z,
        p_value: (2.0 * normal_cdf(-z.abs())).min(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midranks_and_cdf() {
        assert_eq!(midrank(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert!((normal_cdf(1.959_963_984_540_054) - 0.975).abs() < 1e-12);
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-15);
    }

    #[test]
    fn delong_auc_equals_trapezoid_auc() {
        let labels = [0, 0, 1, 1, 0, 1, 0, 1];
        let s = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.2, 0.9];
        let ci = auc_ci_delong(&labels, &s).unwrap();
        let auc = crate::roc_auc(&labels, &s).unwrap();
        assert!((ci.auc - auc).abs() < 1e-12);
        assert!(ci.low <= ci.auc && ci.auc <= ci.high);
        let t = delong_test(&labels, &s, &s).unwrap();
        assert_eq!((t.z, t.p_value, t.variance), (0.0, 1.0, 0.0));
        // perfect vs perfectly inverted: zero variance, different AUCs
        let l = [0, 0, 1, 1];
        let up = [0.1, 0.2, 0.8, 0.9];
        let down = [0.9, 0.8, 0.2, 0.1];
        assert!(delong_test(&l, &up, &down).is_err());
        // perfect separation: zero variance, a degenerate interval at 1
        let ci = auc_ci_delong(&l, &up).unwrap();
        assert_eq!((ci.auc, ci.variance, ci.low, ci.high), (1.0, 0.0, 1.0, 1.0));
        assert!(delong_test(&l, &up, &up[..3]).is_err());
    }

    #[test]
    fn variance_matches_the_pairwise_definition() {
        // DeLong's components from explicit pairs: ψ = 1, ½, 0
        let labels = [1, 0, 1, 1, 0, 0, 1, 0, 1];
        let s = [0.9, 0.3, 0.3, 0.7, 0.7, 0.1, 0.5, 0.6, 0.2];
        let pos: Vec<f64> = (0..9).filter(|&i| labels[i] == 1).map(|i| s[i]).collect();
        let neg: Vec<f64> = (0..9).filter(|&i| labels[i] == 0).map(|i| s[i]).collect();
        let psi = |x: f64, y: f64| {
            if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            }
        };
        let v10: Vec<f64> = pos
            .iter()
            .map(|&x| neg.iter().map(|&y| psi(x, y)).sum::<f64>() / neg.len() as f64)
            .collect();
        let v01: Vec<f64> = neg
            .iter()
            .map(|&y| pos.iter().map(|&x| psi(x, y)).sum::<f64>() / pos.len() as f64)
            .collect();
        let var = cov(&v10, &v10) / pos.len() as f64 + cov(&v01, &v01) / neg.len() as f64;
        let ci = auc_ci_delong(&labels, &s).unwrap();
        assert!(
            (ci.variance - var).abs() < 1e-15,
            "{} vs {var}",
            ci.variance
        );
        let auc = v10.iter().sum::<f64>() / v10.len() as f64;
        assert!((ci.auc - auc).abs() < 1e-15);
    }
}
