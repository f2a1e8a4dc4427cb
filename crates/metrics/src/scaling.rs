//! Bias-corrected temperature scaling (BCTS): `p = σ(a·z + b)`, the binary case of
//! Alexandari, Kundaje & Shrikumar (2020), "Maximum likelihood with bias-corrected
//! calibration is hard-to-beat at label shift adaptation" (ICML) — in two classes
//! it is Platt scaling (Platt 1999) on the logit.
//!
//! Why the bias term matters for label shift: plain temperature scaling
//! ([`fit_temperature`](crate::fit_temperature)) can leave the mean probability
//! away from the prevalence of the data it was fitted on, so the EM of
//! [`em_prevalence`](crate::em_prevalence) is off even there. With a free
//! intercept, the maximum-likelihood score equation for `b` is
//! `Σ (pᵢ − yᵢ) = 0`: the fitted probabilities average exactly the fitted set's
//! prevalence, which is then the EM's fixed point on that set.

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::error::{check_both_classes, check_scores, invalid};
use crate::temperature::sigmoid;

/// Ridge on the slope of the standardised logits in [`fit_bias_corrected_scaling`]:
/// what keeps the fit finite on separated data. On overlapping data it moves the
/// slope by about 1e-12 / 0.1 relative — far below any tolerance that matters.
const RIDGE: f64 = 1e-12;

/// Newton iterations at most (typical data converge in 5–8; separated data, which
/// climb to the ridge-limited slope about one `1/margin` step at a time, in about
/// 30).
const MAX_ITERATIONS: usize = 200;

/// Step halvings at most per Newton iteration.
const MAX_HALVINGS: usize = 60;

/// A fitted bias-corrected temperature scaling, `p = σ(scale·logit + bias)`
/// (see [`fit_bias_corrected_scaling`]).
///
/// `scale = 1/T` of temperature scaling, plus an intercept. Serialised as
/// `scale`, `bias`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BiasCorrectedScaling {
    /// Multiplies the logit (`1/T`); positive for a model better than chance.
    pub scale: f64,
    /// Added after scaling: shifts the log-odds of every prediction.
    pub bias: f64,
}

impl BiasCorrectedScaling {
    /// The identity map on logits: `σ(logit)`.
    pub const IDENTITY: Self = Self {
        scale: 1.0,
        bias: 0.0,
    };

    /// `σ(scale·logit + bias)`, computed without overflow (a product that
    /// overflows gives exactly 0 or 1).
    ///
    /// No checking, like [`apply_temperature`](crate::apply_temperature): with
    /// finite `scale` and `bias` — what [`fit_bias_corrected_scaling`] returns —
    /// and a finite or infinite logit the result is in [0, 1]; a NaN anywhere
    /// gives NaN (as does `scale = 0` with an infinite logit), which the
    /// probability-taking functions then reject.
    pub fn apply(&self, logit: f64) -> f64 {
        sigmoid(self.scale * logit + self.bias)
    }
}

/// `ln(1 + eˣ)` without overflow.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// The penalised mean NLL in the standardised coordinates, its gradient and
/// Hessian. `(p − y)` and `p(1 − p)` are formed from `σ(η)` and `σ(−η)`, so they
/// keep their relative precision when `p` is within 1e-16 of 0 or 1 (separated
/// data live there).
struct Objective<'a> {
    u: &'a [f64],
    labels: &'a [u8],
}

impl Objective<'_> {
    fn value(&self, alpha: f64, beta: f64) -> f64 {
        let nll = self
            .u
            .iter()
            .zip(self.labels)
            .map(|(&u, &y)| {
                let eta = alpha * u + beta;
                // −log σ(η) = softplus(−η); −log(1 − σ(η)) = softplus(η)
                if y == 1 {
                    softplus(-eta)
                } else {
                    softplus(eta)
                }
            })
            .sum::<f64>();
        nll / self.u.len() as f64 + 0.5 * RIDGE * alpha * alpha
    }

    /// `([g_α, g_β], [h_αα, h_αβ, h_ββ])`.
    fn derivatives(&self, alpha: f64, beta: f64) -> ([f64; 2], [f64; 3]) {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&u, &y) in self.u.iter().zip(self.labels) {
            let eta = alpha * u + beta;
            let (p, q) = (sigmoid(eta), sigmoid(-eta));
            let r = if y == 1 { -q } else { p };
            let w = p * q;
            ga += r * u;
            gb += r;
            haa += w * u * u;
            hab += w * u;
            hbb += w;
        }
        let n = self.u.len() as f64;
        (
            [ga / n + RIDGE * alpha, gb / n],
            [haa / n + RIDGE, hab / n, hbb / n],
        )
    }
}

/// Fits bias-corrected temperature scaling `p = σ(scale·logit + bias)` on
/// (validation) logits and labels: logistic regression of the labels on the
/// logits with an intercept, by maximum likelihood (Platt scaling; the binary
/// BCTS of Alexandari et al. 2020).
///
/// Property: the fitted probabilities average the labels,
/// `mean(apply(zᵢ)) = mean(yᵢ)` (to rounding), because the intercept is not
/// penalised — so [`em_prevalence`](crate::em_prevalence) on the fitting set
/// returns that set's prevalence.
///
/// Solver: the logits are standardised (`u = (z/k − mean)/sd`, `k = max|z|`,
/// which cannot overflow), and Newton–Raphson on `(α, β)` of `σ(α·u + β)`, from
/// the intercept-only fit `(0, ln(positives/negatives))`, halves each step until
/// the objective does not increase, and stops once the Newton step is below 1e-13
/// relative (typically 5–8 iterations; at most 200, then the last iterate is
/// returned). The coefficients are then mapped back to the raw logits.
///
/// The objective is the mean NLL plus `½·1e-12·α²`, a ridge on the standardised
/// slope only. Why: with separated classes (every class-1 logit ≥ every class-0
/// logit, or the reverse) the MLE does not exist (the slope runs to ±∞); the ridge
/// makes the objective strictly convex with a unique, finite minimiser that is
/// the same on every machine — for separated data a very steep fit (the logits
/// nearest the boundary get probabilities within about 1e-8 of 0 and 1, depending
/// on n and the gap). On overlapping data it changes the slope by about 1e-11
/// relative (against scikit-learn's unpenalised fit the tests allow 1e-6 and
/// observe 1e-10). Constant logits carry no information: the fit is `scale = 0`,
/// `bias = ln(positives/negatives)` (what the ridge selects among the equally
/// likely fits).
///
/// Errors ([`MetricsError`](crate::MetricsError)): lengths differ, empty, a label
/// outside {0, 1}, a non-finite logit, a single class; and logits so close
/// together (a spread near the smallest subnormal) that the fitted scale
/// overflows.
pub fn fit_bias_corrected_scaling(logits: &[f64], labels: &[u8]) -> Result<BiasCorrectedScaling> {
    fit(logits, labels).map(|(s, _)| s)
}

/// [`fit_bias_corrected_scaling`], with the Newton iterations it took.
fn fit(logits: &[f64], labels: &[u8]) -> Result<(BiasCorrectedScaling, usize)> {
    check_scores(labels, logits)?;
    let (pos, neg) = check_both_classes(labels)?;
    let intercept_only = (pos as f64 / neg as f64).ln();
    if logits.iter().all(|&z| z == logits[0]) {
        return Ok((
            BiasCorrectedScaling {
                scale: 0.0,
                bias: intercept_only,
            },
            0,
        ));
    }

    // Standardise: better conditioning, and a ridge that means the same whatever
    // the logits' units. Dividing by max|z| first keeps the moments finite.
    let n = logits.len() as f64;
    let k = logits.iter().fold(0.0f64, |m, z| m.max(z.abs()));
    let mean = logits.iter().map(|z| z / k).sum::<f64>() / n;
    let sd = (logits.iter().map(|z| (z / k - mean).powi(2)).sum::<f64>() / n).sqrt();
    if !(sd > 0.0 && sd.is_finite()) {
        // unreachable for distinct finite logits; kept as a guard, not a panic
        return Err(invalid("logits", "no usable spread to fit a slope on"));
    }
    let u: Vec<f64> = logits.iter().map(|z| (z / k - mean) / sd).collect();
    let obj = Objective { u: &u, labels };

    let (mut alpha, mut beta) = (0.0, intercept_only);
    let mut f = obj.value(alpha, beta);
    let mut iterations = 0;
    while iterations < MAX_ITERATIONS {
        iterations += 1;
        let ([ga, gb], [haa, hab, hbb]) = obj.derivatives(alpha, beta);
        // h_αα ≥ RIDGE > 0, so the Hessian is positive definite iff det > 0; it
        // can fail only where every weight p(1 − p) underflowed — then fall back
        // to a diagonal step, which the halving keeps a descent.
        let det = haa * hbb - hab * hab;
        let (da, db) = if det > 0.0 && det.is_finite() {
            (-(hbb * ga - hab * gb) / det, -(haa * gb - hab * ga) / det)
        } else {
            (-ga / haa, if hbb > 0.0 { -gb / hbb } else { -gb })
        };
        if !(da.is_finite() && db.is_finite()) {
            break;
        }
        let small =
            da.abs() <= 1e-13 * (1.0 + alpha.abs()) && db.abs() <= 1e-13 * (1.0 + beta.abs());
        // halve until the objective does not increase (beyond rounding)
        let mut step = 1.0;
        let mut accepted = false;
        for _ in 0..MAX_HALVINGS {
            let (a, b) = (alpha + step * da, beta + step * db);
            let fa = obj.value(a, b);
            if fa <= f + 4.0 * f64::EPSILON * f.abs() {
                (alpha, beta, f) = (a, b, fa);
                accepted = true;
                break;
            }
            step /= 2.0;
        }
        if small || !accepted {
            break;
        }
    }

    // σ(α·(z/k − mean)/sd + β) = σ(scale·z + bias)
    let scale = alpha / (k * sd);
    let bias = beta - alpha * mean / sd;
    if !(scale.is_finite() && bias.is_finite()) {
        return Err(invalid(
            "logits",
            "too close together: the fitted scale overflows",
        ));
    }
    Ok((BiasCorrectedScaling { scale, bias }, iterations))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean(v: impl Iterator<Item = f64>, n: usize) -> f64 {
        v.sum::<f64>() / n as f64
    }

    #[test]
    fn apply_is_stable() {
        let s = BiasCorrectedScaling {
            scale: 2.0,
            bias: -1.0,
        };
        assert_eq!(s.apply(0.5), 0.5);
        assert_eq!(s.apply(1e308), 1.0);
        assert_eq!(s.apply(-1e308), 0.0);
        assert_eq!(s.apply(f64::INFINITY), 1.0);
        assert!(s.apply(f64::NAN).is_nan());
        assert_eq!(BiasCorrectedScaling::IDENTITY.apply(0.0), 0.5);
    }

    #[test]
    fn separated_data_give_a_steep_finite_fit() {
        let logits = [-3.0, -1.0, -0.5, 0.5, 2.0, 4.0];
        let labels = [0, 0, 0, 1, 1, 1];
        let (s, iterations) = fit(&logits, &labels).unwrap();
        eprintln!("separated: {s:?} in {iterations} iterations");
        assert!(iterations < 60, "{iterations}");
        assert!(s.scale > 20.0 && s.scale.is_finite(), "{s:?}");
        // threshold in the gap, at its middle by symmetry of the nearest points
        assert!((-s.bias / s.scale).abs() < 1e-6, "{s:?}");
        let p: Vec<f64> = logits.iter().map(|&z| s.apply(z)).collect();
        assert!(p[2] < 1e-8 && p[3] > 1.0 - 1e-8, "{p:?}");
        assert!((mean(p.iter().copied(), 6) - 0.5).abs() < 1e-12);
        // deterministic, and the reverse orientation gives a negative slope
        assert_eq!(s, fit_bias_corrected_scaling(&logits, &labels).unwrap());
        let r = fit_bias_corrected_scaling(&logits, &[1, 1, 1, 0, 0, 0]).unwrap();
        assert!(r.scale < -20.0, "{r:?}");
        // quasi-complete: a tie at the boundary; the tied pair gets ~1/2
        let s = fit_bias_corrected_scaling(&[-2.0, 0.0, 0.0, 2.0], &[0, 0, 1, 1]).unwrap();
        assert!((s.apply(0.0) - 0.5).abs() < 1e-9 && s.apply(2.0) > 1.0 - 1e-8);
    }

    /// Labels drawn (deterministically, by a low-discrepancy sequence) from
    /// σ(1.3·z − 0.4), z on a grid: a well-specified Platt model.
    #[test]
    fn recovers_known_coefficients_in_a_few_iterations() {
        let (mut z, mut y) = (Vec::new(), Vec::new());
        for i in 0..4000 {
            let x = -4.0 + 8.0 * (f64::from(i) + 0.5) / 4000.0;
            let v = (f64::from(i) * 0.618_033_988_749_895).fract();
            y.push(u8::from(v < sigmoid(1.3 * x - 0.4)));
            z.push(x);
        }
        let (s, iterations) = fit(&z, &y).unwrap();
        eprintln!("{s:?} in {iterations} iterations");
        assert!(iterations <= 10, "{iterations}");
        assert!(
            (s.scale - 1.3).abs() < 0.1 && (s.bias + 0.4).abs() < 0.1,
            "{s:?}"
        );
        let p = mean(z.iter().map(|&v| s.apply(v)), z.len());
        let prevalence = mean(y.iter().map(|&v| f64::from(v)), y.len());
        assert!((p - prevalence).abs() < 1e-12, "{p} vs {prevalence}");
    }

    #[test]
    fn constant_and_extreme_logits() {
        let s = fit_bias_corrected_scaling(&[3.0; 4], &[0, 1, 1, 1]).unwrap();
        assert_eq!(s.scale, 0.0);
        assert!((s.apply(3.0) - 0.75).abs() < 1e-15);
        // a spread of a few subnormals: the scale would overflow, an error
        let e = fit_bias_corrected_scaling(&[0.0, 5e-324, 1e-323, 5e-324, 0.0], &[0, 1, 1, 0, 1]);
        assert!(
            matches!(e, Err(crate::MetricsError::Invalid { .. })),
            "{e:?}"
        );
        // huge and tiny units: the standardisation makes them the same problem
        let z = [-2.0, -1.0, 0.5, -0.3, 1.0, 2.5, 0.1, -0.2];
        let y = [0, 0, 0, 1, 1, 1, 1, 0];
        let base = fit_bias_corrected_scaling(&z, &y).unwrap();
        for k in [1e-300, 1e-5, 1e5, 1e300] {
            let zk: Vec<f64> = z.iter().map(|v| v * k).collect();
            let s = fit_bias_corrected_scaling(&zk, &y).unwrap();
            assert!((s.scale * k / base.scale - 1.0).abs() < 1e-9, "{k}: {s:?}");
            assert!((s.bias - base.bias).abs() < 1e-9, "{k}: {s:?}");
        }
    }
}
