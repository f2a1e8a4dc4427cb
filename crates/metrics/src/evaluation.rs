//! Statistics for external validation on another site's labelled data: an
//! interval for a proportion that stays inside [0, 1] at small counts, McNemar's
//! test of two models on the same items, and chi-square tests of whether an AUC or
//! a proportion differs across subgroups.

use serde::{Deserialize, Serialize};

use crate::association::ln_choose;
use crate::error::invalid;
use crate::special::normal_quantile;
use crate::{MetricsError, Result, chi2_sf};

/// A proportion and its confidence interval.
///
/// Serialised as `estimate`, `low`, `high`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProportionCi {
    /// successes / n.
    pub estimate: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
}

/// Wilson score interval for a binomial proportion `successes / n` at
/// `confidence` (e.g. 0.95), as statsmodels'
/// `proportion_confint(successes, n, alpha=1 - confidence, method="wilson")`:
/// with z = Φ⁻¹(1 − α/2) and p̂ = successes/n,
/// `(p̂ + z²/2n ± z·√(p̂(1 − p̂)/n + z²/4n²)) / (1 + z²/n)`.
///
/// Unlike the normal (Wald) interval it does not collapse at 0 or n successes:
/// `low` is exactly 0 when `successes = 0` and `high` exactly 1 when
/// `successes = n`; bounds are clipped to [0, 1] against rounding.
///
/// Errors: `n = 0` ([`MetricsError::Empty`]), `successes > n`, `confidence` not
/// in (0, 1).
pub fn wilson_interval(successes: u64, n: u64, confidence: f64) -> Result<ProportionCi> {
    if n == 0 {
        return Err(MetricsError::Empty);
    }
    if successes > n {
        return Err(invalid(
            "successes",
            format!("{successes} successes of {n} trials"),
        ));
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(invalid(
            "confidence",
            format!("{confidence} is not in (0, 1)"),
        ));
    }
    let z = -normal_quantile((1.0 - confidence) / 2.0);
    let (nf, z2) = (n as f64, z * z);
    let p = successes as f64 / nf;
    let denom = 1.0 + z2 / nf;
    let center = (p + z2 / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / denom;
    let low = if successes == 0 { 0.0 } else { center - half };
    let high = if successes == n { 1.0 } else { center + half };
    Ok(ProportionCi {
        estimate: p,
        low: low.clamp(0.0, 1.0),
        high: high.clamp(0.0, 1.0),
    })
}

/// Below this many discordant pairs (`b + c`) McNemar's exact p-value is the one
/// to report: the chi-square approximation is poor there.
const MCNEMAR_EXACT_BELOW: u64 = 25;

/// Result of [`mcnemar`].
///
/// Serialised as `b`, `c`, `statistic`, `p_chi2`, `p_exact`, `exact`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct McNemar {
    /// Items only model A got right.
    pub b: u64,
    /// Items only model B got right.
    pub c: u64,
    /// Chi-square statistic with continuity correction, `(|b − c| − 1)² / (b + c)`
    /// (0 when `b = c = 0`).
    pub statistic: f64,
    /// P(χ²₁ > statistic).
    pub p_chi2: f64,
    /// Two-sided exact binomial p-value, `min(1, 2·P(Bin(b + c, ½) ≤ min(b, c)))`.
    pub p_exact: f64,
    /// `b + c < 25`: [`p_exact`](Self::p_exact) is the one to report.
    pub exact: bool,
}

impl McNemar {
    /// The p-value to report: [`p_exact`](Self::p_exact) when
    /// [`exact`](Self::exact), else [`p_chi2`](Self::p_chi2).
    pub fn p_value(&self) -> f64 {
        if self.exact {
            self.p_exact
        } else {
            self.p_chi2
        }
    }
}

/// McNemar's test of two models' accuracy on the same items, from the discordant
/// pairs: `b` items only model A classified correctly, `c` only model B.
///
/// The chi-square form equals statsmodels'
/// `contingency_tables.mcnemar([[a, b], [c, d]], exact=False, correction=True)`,
/// including its unclamped correction (`b = c > 0` gives `1 / (b + c)`, not 0);
/// the exact form equals `exact=True`. Exact probabilities come from
/// log-factorials (`lgamma`), about 1e-12 relative for `b + c` in the thousands.
///
/// `b = c = 0` (the models never disagree) gives statistic 0 and both p-values 1:
/// no evidence of a difference. (statsmodels' chi-square form divides by zero
/// there, giving an infinite statistic and p = 0.)
///
/// Errors: `b + c` above 2⁵³.
pub fn mcnemar(b: u64, c: u64) -> Result<McNemar> {
    let n = b
        .checked_add(c)
        .filter(|&n| n <= 1u64 << 53)
        .ok_or_else(|| invalid("b + c", "exceeds 2^53"))?;
    let exact = n < MCNEMAR_EXACT_BELOW;
    if n == 0 {
        return Ok(McNemar {
            b,
            c,
            statistic: 0.0,
            p_chi2: 1.0,
            p_exact: 1.0,
            exact,
        });
    }
    let diff = b.abs_diff(c) as f64 - 1.0;
    let statistic = diff * diff / n as f64;
    Ok(McNemar {
        b,
        c,
        statistic,
        p_chi2: chi2_sf(statistic, 1),
        // b = c: the lower half holds at least half the mass
        p_exact: if b == c {
            1.0
        } else {
            (2.0 * binomial_half_cdf(b.min(c), n)).min(1.0)
        },
        exact,
    })
}

/// P(Bin(n, ½) ≤ m) for m ≤ n/2: the largest term C(n, m)/2ⁿ from
/// log-factorials, then the ratios C(n, k − 1)/C(n, k) = k/(n − k + 1) downwards
/// until the terms no longer change the sum.
fn binomial_half_cdf(m: u64, n: u64) -> f64 {
    let top = (ln_choose(n, m) - n as f64 * std::f64::consts::LN_2).exp();
    let (mut term, mut sum) = (1.0, 1.0);
    for k in (1..=m).rev() {
        term *= k as f64 / (n - k + 1) as f64;
        sum += term;
        if term < sum * f64::EPSILON * 0.5 {
            break;
        }
    }
    top * sum
}

/// A chi-square test of homogeneity across groups.
///
/// Serialised as `statistic`, `df`, `p_value`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Heterogeneity {
    /// The chi-square statistic.
    pub statistic: f64,
    /// Degrees of freedom: the number of groups − 1.
    pub df: usize,
    /// P(χ²_df > statistic).
    pub p_value: f64,
}

/// Errors unless there are at least two groups.
fn check_groups(k: usize) -> Result<()> {
    match k {
        0 => Err(MetricsError::Empty),
        1 => Err(invalid(
            "groups",
            "one group: heterogeneity needs at least two",
        )),
        _ => Ok(()),
    }
}

/// Cochran's Q test of whether an AUC differs across `k` independent subgroups,
/// from each group's `(auc, variance)` (e.g. [`AucCi`](crate::AucCi)'s `auc` and
/// `variance` from [`auc_ci_delong`](crate::auc_ci_delong)): with inverse-variance
/// weights wᵢ = 1/varᵢ and the fixed-effect mean θ̄ = Σwᵢθᵢ / Σwᵢ,
/// Q = Σwᵢ(θᵢ − θ̄)², chi-square with k − 1 degrees of freedom. Equals statsmodels'
/// `combine_effects(auc, variance)`'s `q` and `test_homogeneity().pvalue`.
///
/// Errors: fewer than two groups, an AUC outside [0, 1] or NaN, or a variance that
/// is not positive and finite — named by group index. A group whose AUC has zero
/// variance (DeLong gives 0 at perfect separation, AUC 0 or 1, or with a single
/// positive and a single negative) has no inverse-variance weight; leave it out or
/// use a bootstrap variance.
pub fn auc_heterogeneity(estimates: &[(f64, f64)]) -> Result<Heterogeneity> {
    check_groups(estimates.len())?;
    for (i, &(auc, var)) in estimates.iter().enumerate() {
        if !(0.0..=1.0).contains(&auc) {
            return Err(invalid(
                "estimates",
                format!("group {i}: AUC {auc} is not in [0, 1]"),
            ));
        }
        if !(var > 0.0 && var.is_finite() && (1.0 / var).is_finite()) {
            return Err(invalid(
                "estimates",
                format!(
                    "group {i}: AUC variance {var} is not positive and finite, so the \
                     group has no inverse-variance weight (zero variance: perfect \
                     separation or one case per class)"
                ),
            ));
        }
    }
    let weights: Vec<f64> = estimates.iter().map(|&(_, v)| 1.0 / v).collect();
    let total: f64 = weights.iter().sum();
    let mean = estimates
        .iter()
        .zip(&weights)
        .map(|(&(auc, _), w)| w * auc)
        .sum::<f64>()
        / total;
    let statistic: f64 = estimates
        .iter()
        .zip(&weights)
        .map(|(&(auc, _), w)| w * (auc - mean) * (auc - mean))
        .sum();
    if !statistic.is_finite() {
        return Err(invalid(
            "estimates",
            "variances too small: the weighted statistic overflows",
        ));
    }
    let df = estimates.len() - 1;
    Ok(Heterogeneity {
        statistic,
        df,
        p_value: chi2_sf(statistic, df),
    })
}

/// Pearson's chi-square test of whether a proportion differs across `k` groups,
/// from each group's `(successes, n)`: the k×2 table of successes and failures,
/// Σ(observed − expected)²/expected with no continuity correction, k − 1 degrees
/// of freedom. Equals scipy's `chi2_contingency(table, correction=False)`.
///
/// When every group has all successes or none of them (a column of the table is
/// zero) the proportions are identical: statistic 0, p-value 1. (scipy raises an
/// error there, for a zero expected frequency.)
///
/// Errors: fewer than two groups, a group with `n = 0` or `successes > n` (named by
/// index).
pub fn proportion_heterogeneity(counts: &[(u64, u64)]) -> Result<Heterogeneity> {
    check_groups(counts.len())?;
    for (i, &(s, n)) in counts.iter().enumerate() {
        if n == 0 {
            return Err(invalid("counts", format!("group {i}: no trials (n = 0)")));
        }
        if s > n {
            return Err(invalid(
                "counts",
                format!("group {i}: {s} successes of {n} trials"),
            ));
        }
    }
    let df = counts.len() - 1;
    let total: f64 = counts.iter().map(|&(_, n)| n as f64).sum();
    let successes: f64 = counts.iter().map(|&(s, _)| s as f64).sum();
    let failures = total - successes;
    if successes == 0.0 || failures == 0.0 {
        return Ok(Heterogeneity {
            statistic: 0.0,
            df,
            p_value: 1.0,
        });
    }
    let statistic: f64 = counts
        .iter()
        .map(|&(s, n)| {
            let (s, n) = (s as f64, n as f64);
            let (es, ef) = (n * successes / total, n * failures / total);
            (s - es).powi(2) / es + (n - s - ef).powi(2) / ef
        })
        .sum();
    Ok(Heterogeneity {
        statistic,
        df,
        p_value: chi2_sf(statistic, df),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_half_cdf_sums_to_one_and_matches_counting() {
        // n = 10: C(10, k) = 1, 10, 45, 120, 210, 252
        let want = [1.0, 11.0, 56.0, 176.0, 386.0, 638.0];
        for (m, w) in want.iter().enumerate() {
            let got = binomial_half_cdf(m as u64, 10);
            assert!(
                (got - w / 1024.0).abs() <= 1e-14 * w / 1024.0,
                "m {m}: {got}"
            );
        }
        assert_eq!(binomial_half_cdf(0, 0), 1.0);
    }

    #[test]
    fn p_value_follows_exact() {
        let small = mcnemar(3, 12).unwrap();
        assert!(small.exact && small.p_value() == small.p_exact);
        let large = mcnemar(10, 15).unwrap();
        assert!(!large.exact && large.p_value() == large.p_chi2);
        assert!(mcnemar(u64::MAX, 1).is_err());
        let tie = mcnemar(1 << 52, 1 << 52).unwrap();
        assert_eq!((tie.p_exact, tie.exact), (1.0, false));
    }
}
