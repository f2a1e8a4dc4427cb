//! Tests of association for failure analysis: Fisher's exact test, the
//! Cochran–Armitage trend test, one-predictor logistic regression, and quartile
//! bucketing.

use crate::error::invalid;
use crate::{MetricsError, Result, normal_cdf};

/// z such that Φ(z) = 0.975 (two-sided 95% intervals).
pub const Z_975: f64 = 1.959_963_984_540_054;

/// Two-sided p-value of a standard-normal statistic: `2·(1 − Φ(|z|))`.
fn two_sided_p(z: f64) -> f64 {
    (2.0 * normal_cdf(-z.abs())).min(1.0)
}

/// Result of [`fisher_exact`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FisherExact {
    /// Sample odds ratio `(a·d) / (b·c)`; `None` when `b·c = 0` (infinite or
    /// undefined).
    pub odds_ratio: Option<f64>,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Fisher's exact test (two-sided) on the 2×2 table `[[a, b], [c, d]]`, as
/// `scipy.stats.fisher_exact(table, alternative="two-sided")`: with the margins
/// fixed, `a` is hypergeometric, and the p-value sums the probabilities of every
/// table no more likely than the observed one (with scipy's relative slack of
/// 1e-7 for ties in floating point). Probabilities come from log-factorials
/// (`lgamma`), so p-values agree with scipy to about 1e-12 relative.
///
/// A table with an empty row or column has p = 1. Errors: a total above 2⁵³.
pub fn fisher_exact(table: [[u64; 2]; 2]) -> Result<FisherExact> {
    let [[a, b], [c, d]] = table;
    let n = a
        .checked_add(b)
        .and_then(|v| v.checked_add(c))
        .and_then(|v| v.checked_add(d))
        .filter(|&n| n <= 1u64 << 53)
        .ok_or_else(|| invalid("table", "total exceeds 2^53"))?;
    let odds_ratio = (b * c != 0).then(|| (a as f64 * d as f64) / (b as f64 * c as f64));
    let (r1, c1) = (a + b, a + c);
    if r1 == 0 || c1 == 0 || r1 == n || c1 == n {
        return Ok(FisherExact {
            odds_ratio,
            p_value: 1.0,
        });
    }
    let lo = c1.saturating_sub(n - r1);
    let hi = r1.min(c1);
    let ln_pmf = |k: u64| ln_choose(r1, k) + ln_choose(n - r1, c1 - k) - ln_choose(n, c1);
    let p_obs = ln_pmf(a).exp();
    let limit = p_obs * (1.0 + 1e-7);
    let p: f64 = (lo..=hi)
        .map(|k| ln_pmf(k).exp())
        .filter(|&p| p <= limit)
        .sum();
    Ok(FisherExact {
        odds_ratio,
        p_value: p.min(1.0),
    })
}

pub(crate) fn ln_choose(n: u64, k: u64) -> f64 {
    let (n, k) = (n as f64, k as f64);
    libm::lgamma(n + 1.0) - libm::lgamma(k + 1.0) - libm::lgamma(n - k + 1.0)
}

/// Result of [`cochran_armitage`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendTest {
    /// The standardised trend statistic; positive when the event rate rises with the
    /// group score.
    pub z: f64,
    /// `z²`, chi-square with 1 degree of freedom.
    pub chi_square: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// The Cochran–Armitage test for a linear trend in proportions: group `i` has
/// `events[i]` events out of `totals[i]` and score `scores[i]` (`None`: 1, 2, …).
/// With `N = Σnᵢ` and `p̄ = Σxᵢ / N`,
/// `z = Σ tᵢ(xᵢ − nᵢp̄) / √(p̄(1 − p̄)·(Σ nᵢtᵢ² − (Σ nᵢtᵢ)²/N))`.
/// This is `N/(N − 1)` times the linear-by-linear association statistic of
/// `statsmodels`' `Table.test_ordinal_association` (in z²).
///
/// Errors: lengths differ, fewer than two groups, `events > totals`, scores not
/// finite, no events or only events (p̄ ∈ {0, 1}), or all observations at one score.
pub fn cochran_armitage(
    events: &[u64],
    totals: &[u64],
    scores: Option<&[f64]>,
) -> Result<TrendTest> {
    if events.len() != totals.len() {
        return Err(MetricsError::LengthMismatch {
            labels: events.len(),
            scores: totals.len(),
        });
    }
    if events.len() < 2 {
        return Err(invalid("totals", "need at least two groups"));
    }
    let default: Vec<f64> = (1..=events.len()).map(|i| i as f64).collect();
    let t = scores.unwrap_or(&default);
    if t.len() != events.len() {
        return Err(MetricsError::LengthMismatch {
            labels: events.len(),
            scores: t.len(),
        });
    }
    if let Some(index) = t.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::NonFinite { index });
    }
    if let Some(i) = (0..events.len()).find(|&i| events[i] > totals[i]) {
        return Err(invalid(
            "events",
            format!("group {i}: {} events of {}", events[i], totals[i]),
        ));
    }
    let n: f64 = totals.iter().map(|&v| v as f64).sum();
    let x: f64 = events.iter().map(|&v| v as f64).sum();
    if x == 0.0 || x == n {
        return Err(invalid(
            "events",
            "no variation: every observation has the same outcome",
        ));
    }
    let p = x / n;
    let mut stat = 0.0;
    let mut snt = 0.0;
    let mut snt2 = 0.0;
    for i in 0..events.len() {
        let (xi, ni) = (events[i] as f64, totals[i] as f64);
        stat += t[i] * (xi - ni * p);
        snt += ni * t[i];
        snt2 += ni * t[i] * t[i];
    }
    let var = p * (1.0 - p) * (snt2 - snt * snt / n);
    if var <= 0.0 || !var.is_finite() {
        return Err(invalid(
            "scores",
            "no variation: every observation has the same score",
        ));
    }
    let z = stat / var.sqrt();
    Ok(TrendTest {
        z,
        chi_square: z * z,
        p_value: two_sided_p(z),
    })
}

/// A fitted one-predictor logistic regression `logit P(y = 1) = β₀ + β₁x`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogisticFit {
    /// β₀.
    pub intercept: f64,
    /// β₁, the log odds ratio per unit of `x`.
    pub coef: f64,
    /// Standard error of β₀ (from the inverse Fisher information).
    pub se_intercept: f64,
    /// Standard error of β₁.
    pub se_coef: f64,
    /// Wald z of β₁: `coef / se_coef`.
    pub z: f64,
    /// Two-sided Wald p-value of β₁.
    pub p_value: f64,
    /// Lower end of the Wald 95% interval of β₁: `coef − 1.96·se`.
    pub ci_low: f64,
    /// Upper end of the Wald 95% interval of β₁.
    pub ci_high: f64,
    /// Newton iterations used.
    pub iterations: usize,
    /// Log-likelihood at the fit.
    pub log_likelihood: f64,
}

/// Fits `logit P(y = 1) = β₀ + β₁x` by maximum likelihood (Newton–Raphson =
/// IRLS, with step halving) and returns Wald standard errors, z, p-value and 95%
/// interval for β₁, as `statsmodels`' `Logit(y, add_constant(x)).fit()`.
///
/// Errors: lengths differ, empty input, labels not 0/1, non-finite `x`, one class
/// only, constant `x`, no convergence in 100 iterations, or (quasi-)complete
/// separation (a fitted probability within 1e-10 of 0 or 1, where the maximum
/// likelihood estimate does not exist).
pub fn logistic_regression(x: &[f64], y: &[u8]) -> Result<LogisticFit> {
    crate::error::check_scores(y, x)?;
    let (pos, _) = crate::error::check_both_classes(y)?;
    let n = x.len() as f64;
    if x.iter().all(|&v| v == x[0]) {
        return Err(invalid(
            "x",
            "constant predictor: the slope is not identified",
        ));
    }
    let ybar = pos as f64 / n;
    let loglik = |b0: f64, b1: f64| -> f64 {
        x.iter()
            .zip(y)
            .map(|(&xi, &yi)| {
                let eta = b0 + b1 * xi;
                // log σ(η) = −softplus(−η), log(1 − σ(η)) = −softplus(η)
                if yi == 1 {
                    -softplus(-eta)
                } else {
                    -softplus(eta)
                }
            })
            .sum()
    };
    let mut b = [(ybar / (1.0 - ybar)).ln(), 0.0];
    let mut ll = loglik(b[0], b[1]);
    for iter in 1..=100 {
        // gradient and information
        let (mut g0, mut g1, mut h00, mut h01, mut h11) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&xi, &yi) in x.iter().zip(y) {
            let p = sigmoid(b[0] + b[1] * xi);
            let r = yi as f64 - p;
            let w = p * (1.0 - p);
            g0 += r;
            g1 += r * xi;
            h00 += w;
            h01 += w * xi;
            h11 += w * xi * xi;
        }
        let det = h00 * h11 - h01 * h01;
        if !(det.is_finite() && det > 0.0) {
            return Err(invalid(
                "x",
                "singular information matrix (separation or constant predictor)",
            ));
        }
        let d0 = (h11 * g0 - h01 * g1) / det;
        let d1 = (h00 * g1 - h01 * g0) / det;
        let mut step = 1.0;
        let mut next;
        loop {
            next = [b[0] + step * d0, b[1] + step * d1];
            let ll_next = loglik(next[0], next[1]);
            if ll_next >= ll - 1e-12 * ll.abs() || step < 1e-10 {
                ll = ll_next;
                break;
            }
            step /= 2.0;
        }
        let change = (next[0] - b[0]).abs().max((next[1] - b[1]).abs());
        b = next;
        let scale = 1.0 + b[0].abs().max(b[1].abs());
        if change <= 1e-12 * scale {
            return finish(x, b, ll, iter);
        }
    }
    Err(invalid(
        "x",
        "logistic regression did not converge in 100 iterations (separation?)",
    ))
}

fn finish(x: &[f64], b: [f64; 2], ll: f64, iterations: usize) -> Result<LogisticFit> {
    let (mut h00, mut h01, mut h11) = (0.0, 0.0, 0.0);
    for &xi in x {
        let p = sigmoid(b[0] + b[1] * xi);
        if !(1e-10..=1.0 - 1e-10).contains(&p) {
            return Err(invalid(
                "x",
                "perfect or quasi-complete separation: the maximum likelihood estimate does not exist",
            ));
        }
        let w = p * (1.0 - p);
        h00 += w;
        h01 += w * xi;
        h11 += w * xi * xi;
    }
    let det = h00 * h11 - h01 * h01;
    let se_intercept = (h11 / det).sqrt();
    let se_coef = (h00 / det).sqrt();
    let z = b[1] / se_coef;
    Ok(LogisticFit {
        intercept: b[0],
        coef: b[1],
        se_intercept,
        se_coef,
        z,
        p_value: two_sided_p(z),
        ci_low: b[1] - Z_975 * se_coef,
        ci_high: b[1] + Z_975 * se_coef,
        iterations,
        log_likelihood: ll,
    })
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `ln(1 + eᶻ)` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// The `q`-quantile (`0 ≤ q ≤ 1`) of `values` by linear interpolation between
/// order statistics, numpy's default (`method="linear"`, R's type 7).
///
/// Errors: empty input, non-finite values, `q` outside [0, 1].
pub fn quantile(values: &[f64], q: f64) -> Result<f64> {
    Ok(quantiles(values, &[q])?[0])
}

/// [`quantile`] for several `qs` with one sort.
pub fn quantiles(values: &[f64], qs: &[f64]) -> Result<Vec<f64>> {
    if values.is_empty() {
        return Err(MetricsError::Empty);
    }
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(MetricsError::NonFinite { index });
    }
    if let Some(q) = qs.iter().find(|q| !(0.0..=1.0).contains(*q)) {
        return Err(invalid("q", format!("{q}: expected a number in [0, 1]")));
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Ok(qs
        .iter()
        .map(|&q| {
            let h = (v.len() - 1) as f64 * q;
            let lo = h.floor() as usize;
            let hi = (lo + 1).min(v.len() - 1);
            v[lo] + (h - lo as f64) * (v[hi] - v[lo])
        })
        .collect())
}

/// The quartile edges `[q25, q50, q75]` of `values` ([`quantiles`], numpy's
/// linear method).
pub fn quartile_edges(values: &[f64]) -> Result<[f64; 3]> {
    let q = quantiles(values, &[0.25, 0.5, 0.75])?;
    Ok([q[0], q[1], q[2]])
}

/// The 0-based bucket of `value` among `edges` (sorted ascending): the number of
/// edges strictly below it, so bucket `i` holds `edges[i−1] < value ≤ edges[i]`
/// (numpy's `searchsorted(edges, value, side="left")`). With quartile edges,
/// 0 is the bottom quartile and 3 the top; values equal to an edge go to the lower
/// bucket, so tied data can leave a bucket empty.
pub fn bucket_of(value: f64, edges: &[f64]) -> usize {
    edges.iter().filter(|&&e| e < value).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fisher_small_tables_by_hand() {
        // [[1, 0], [0, 1]]: tables k = 0, 1 each with probability 1/2 → p = 1
        let r = fisher_exact([[1, 0], [0, 1]]).unwrap();
        assert!((r.p_value - 1.0).abs() < 1e-12);
        assert_eq!(r.odds_ratio, None);
        // [[3, 0], [0, 3]]: P(k=3) = 1/20, the other extreme too → p = 0.1
        let r = fisher_exact([[3, 0], [0, 3]]).unwrap();
        assert!((r.p_value - 0.1).abs() < 1e-12, "{}", r.p_value);
        // empty margins
        assert_eq!(fisher_exact([[0, 0], [2, 3]]).unwrap().p_value, 1.0);
        let r = fisher_exact([[2, 4], [6, 3]]).unwrap();
        assert!((r.odds_ratio.unwrap() - 0.25).abs() < 1e-15);
    }

    #[test]
    fn trend_errors_and_sign() {
        assert!(cochran_armitage(&[0, 0], &[5, 5], None).is_err());
        assert!(cochran_armitage(&[6, 0], &[5, 5], None).is_err());
        assert!(cochran_armitage(&[1], &[5], None).is_err());
        assert!(cochran_armitage(&[1, 2], &[5, 5], Some(&[1.0])).is_err());
        let up = cochran_armitage(&[1, 3, 5, 7], &[10, 10, 10, 10], None).unwrap();
        assert!(up.z > 0.0 && up.p_value < 0.05);
        let down = cochran_armitage(&[7, 5, 3, 1], &[10, 10, 10, 10], None).unwrap();
        assert!((down.z + up.z).abs() < 1e-12);
        assert!((up.chi_square - up.z * up.z).abs() < 1e-12);
    }

    #[test]
    fn logistic_recovers_known_coefficients_and_rejects_separation() {
        // a design where the MLE is known: with a binary x, β₁ is the log odds ratio
        // of the 2×2 table and β₀ the log odds at x = 0.
        // x = 0: 3 of 10 positive; x = 1: 7 of 10 positive.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (xv, pos, n) in [(0.0, 3, 10), (1.0, 7, 10)] {
            for i in 0..n {
                x.push(xv);
                y.push(u8::from(i < pos));
            }
        }
        let f = logistic_regression(&x, &y).unwrap();
        let b0 = (3.0f64 / 7.0).ln();
        let b1 = (7.0f64 / 3.0).ln() - b0;
        assert!((f.intercept - b0).abs() < 1e-10, "{f:?}");
        assert!((f.coef - b1).abs() < 1e-10, "{f:?}");
        // Woolf's standard error of a log odds ratio: √(1/3 + 1/7 + 1/7 + 1/3)
        let se = (2.0 / 3.0 + 2.0 / 7.0f64).sqrt();
        assert!((f.se_coef - se).abs() < 1e-9, "{f:?}");
        assert!(f.ci_low < f.coef && f.coef < f.ci_high);
        // separated data
        assert!(logistic_regression(&[0.0, 1.0, 2.0, 3.0], &[0, 0, 1, 1]).is_err());
        // constant x, one class, bad input
        assert!(logistic_regression(&[1.0, 1.0, 1.0], &[0, 1, 0]).is_err());
        assert!(logistic_regression(&[1.0, 2.0], &[1, 1]).is_err());
        assert!(logistic_regression(&[f64::NAN, 2.0], &[0, 1]).is_err());
    }

    #[test]
    fn quantiles_and_buckets() {
        let v = [4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(quartile_edges(&v).unwrap(), [2.0, 3.0, 4.0]);
        assert_eq!(quantile(&[1.0, 2.0], 0.25).unwrap(), 1.25);
        assert!(quantile(&[], 0.5).is_err());
        assert!(quantile(&[1.0], 1.5).is_err());
        let edges = [2.0, 3.0, 4.0];
        let b: Vec<usize> = [1.0, 2.0, 2.5, 3.0, 4.0, 4.1]
            .iter()
            .map(|&x| bucket_of(x, &edges))
            .collect();
        assert_eq!(b, vec![0, 0, 1, 1, 2, 3]);
    }
}
