use crate::Result;
use crate::error::{check_both_classes, check_scores, invalid};

/// Smallest temperature [`fit_temperature`] returns.
pub const MIN_TEMPERATURE: f64 = 0.05;
/// Largest temperature [`fit_temperature`] returns.
pub const MAX_TEMPERATURE: f64 = 20.0;

/// Width (in ln T) at which the golden-section search hands over to the
/// bracketed refinement.
const GOLDEN_WIDTH: f64 = 1e-3;

/// Numerically stable logistic function (0 and 1 at ∓∞, NaN for NaN).
pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Mean NLL of `sigmoid(β·z)`: softplus(βz) − y·βz, in the overflow-free form.
fn nll(logits: &[f64], labels: &[u8], beta: f64) -> f64 {
    logits
        .iter()
        .zip(labels)
        .map(|(&z, &y)| {
            let x = z * beta;
            x.max(0.0) - x * f64::from(y) + (-x.abs()).exp().ln_1p()
        })
        .sum::<f64>()
        / logits.len() as f64
}

/// d NLL / dβ and d² NLL / dβ² (the second is ≥ 0: the NLL is convex in β).
fn nll_derivatives(logits: &[f64], labels: &[u8], beta: f64) -> (f64, f64) {
    let (mut g, mut h) = (0.0, 0.0);
    for (&z, &y) in logits.iter().zip(labels) {
        let s = sigmoid(beta * z);
        g += (s - f64::from(y)) * z;
        h += s * (1.0 - s) * z * z;
    }
    let n = logits.len() as f64;
    (g / n, h / n)
}

/// Mean negative log-likelihood of `sigmoid(logit / temperature)` against the
/// labels (binary cross-entropy on logits, computed without overflow).
///
/// Errors on bad input (see [`MetricsError`](crate::MetricsError)) and on a
/// temperature that is not finite and positive.
pub fn temperature_nll(logits: &[f64], labels: &[u8], temperature: f64) -> Result<f64> {
    check_scores(labels, logits)?;
    check_temperature(temperature)?;
    Ok(nll(logits, labels, 1.0 / temperature))
}

fn check_temperature(t: f64) -> Result<()> {
    if !(t.is_finite() && t > 0.0) {
        return Err(invalid(
            "temperature",
            format!("must be finite and positive, got {t}"),
        ));
    }
    Ok(())
}

/// Fits the temperature `T` that minimises the NLL of `sigmoid(logit / T)` on
/// (validation) logits — temperature scaling, Guo et al. 2017.
///
/// Solver, which cannot diverge: the NLL is convex in `β = 1/T` (a logistic loss
/// in one weight), hence unimodal in `u = ln T`. A golden-section search over
/// `u ∈ [ln 0.05, ln 20]` narrows the minimum to a bracket 1e-3 wide in `u`; then
/// the root of dNLL/dβ (increasing in β) is bracketed by sign and polished by
/// Newton steps, each safeguarded by bisection and never leaving the bracket, to
/// rounding precision. The result lies in
/// [[`MIN_TEMPERATURE`], [`MAX_TEMPERATURE`]]: when the optimum is outside (e.g.
/// perfectly separable logits want `T → 0`, uninformative ones `T → ∞`) the bound
/// is returned. If the fitted `T` does not give a strictly smaller NLL than
/// `T = 1` (flat or degenerate data, or a tie within rounding), 1 is returned, so
/// fitting never increases the NLL of the data it was fitted on.
///
/// Logits may be any finite numbers. Needs both classes.
pub fn fit_temperature(logits: &[f64], labels: &[u8]) -> Result<f64> {
    check_scores(labels, logits)?;
    check_both_classes(labels)?;
    let f = |u: f64| nll(logits, labels, (-u).exp());

    // 1. Golden-section search on u = ln T, down to a bracket 1e-3 wide. (Finer
    //    than ~1e-8 the NLL's differences drown in rounding; step 2 takes over.)
    let inv_phi = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (MIN_TEMPERATURE.ln(), MAX_TEMPERATURE.ln());
    let mut c = b - inv_phi * (b - a);
    let mut d = a + inv_phi * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    while b - a > GOLDEN_WIDTH {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - inv_phi * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + inv_phi * (b - a);
            fd = f(d);
        }
    }

    // 2. Bracketed refinement on β = 1/T, where g = dNLL/dβ is increasing (the
    //    NLL is convex in β): start from the golden bracket widened by its width,
    //    move it by the sign of g should rounding have misled step 1, then
    //    Newton steps kept inside the sign-change bracket by bisection.
    let (beta_min, beta_max) = (1.0 / MAX_TEMPERATURE, 1.0 / MIN_TEMPERATURE);
    let g = |beta: f64| nll_derivatives(logits, labels, beta);
    let mut lo = (-(b + GOLDEN_WIDTH)).exp().max(beta_min);
    let mut hi = (-(a - GOLDEN_WIDTH)).exp().min(beta_max);
    if g(lo).0 > 0.0 {
        (lo, hi) = (beta_min, lo);
    } else if g(hi).0 < 0.0 {
        (lo, hi) = (hi, beta_max);
    }
    let beta = if g(lo).0 >= 0.0 {
        lo
    } else if g(hi).0 <= 0.0 {
        hi
    } else {
        let mut x = (lo + hi) / 2.0;
        for _ in 0..200 {
            let (gx, hx) = g(x);
            if gx == 0.0 {
                break;
            }
            if gx < 0.0 {
                lo = x;
            } else {
                hi = x;
            }
            let newton = x - gx / hx;
            x = if hx > 0.0 && newton > lo && newton < hi {
                newton
            } else {
                lo + (hi - lo) / 2.0
            };
            if hi - lo <= 2.0 * f64::EPSILON * hi || x <= lo || x >= hi {
                break;
            }
        }
        x.clamp(lo, hi)
    };
    let t = (1.0 / beta).clamp(MIN_TEMPERATURE, MAX_TEMPERATURE);
    Ok(if nll(logits, labels, 1.0 / t) < nll(logits, labels, 1.0) {
        t
    } else {
        1.0
    })
}

/// `sigmoid(logit / temperature)` for each logit, computed without overflow.
///
/// `temperature` must be finite and positive — what [`fit_temperature`] returns.
/// This function does no checking (so it can feed straight into the metrics);
/// a zero, negative or NaN temperature gives meaningless (or NaN) probabilities,
/// which the probability-taking metrics then reject. Use
/// [`temperature_nll`] first if the temperature comes from elsewhere and must be
/// validated.
pub fn apply_temperature(logits: &[f64], temperature: f64) -> Vec<f64> {
    logits.iter().map(|&z| sigmoid(z / temperature)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels drawn (deterministically, by a low-discrepancy sequence) from
    /// sigmoid(z), logits reported as `scale · z`.
    fn scaled(scale: f64) -> (Vec<f64>, Vec<u8>) {
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..4000 {
            let z = -4.0 + 8.0 * (i as f64 + 0.5) / 4000.0;
            let u = ((i as f64) * 0.618_033_988_749_895).fract();
            labels.push(u8::from(u < sigmoid(z)));
            logits.push(scale * z);
        }
        (logits, labels)
    }

    #[test]
    fn recovers_a_known_temperature() {
        for scale in [0.25, 1.0, 3.0] {
            let (logits, labels) = scaled(scale);
            let t = fit_temperature(&logits, &labels).unwrap();
            assert!((t / scale - 1.0).abs() < 0.05, "scale {scale}: T {t}");
            // a stationary point: the derivative in β vanishes (to rounding)
            let (g, _) = nll_derivatives(&logits, &labels, 1.0 / t);
            assert!(g.abs() < 1e-12 || t == 1.0, "scale {scale}: g {g}");
            let before = temperature_nll(&logits, &labels, 1.0).unwrap();
            let after = temperature_nll(&logits, &labels, t).unwrap();
            assert!(after <= before);
        }
    }

    #[test]
    fn bounds_and_degenerate_data() {
        // perfectly separable: sharper is always better → the lower bound
        let t = fit_temperature(&[-1.0, -0.5, 0.5, 1.0], &[0, 0, 1, 1]).unwrap();
        assert_eq!(t, MIN_TEMPERATURE);
        // logits that carry no information: flatten as far as allowed
        let t = fit_temperature(&[-2.0, 2.0, -2.0, 2.0], &[0, 0, 1, 1]).unwrap();
        assert_eq!(t, MAX_TEMPERATURE);
        // all-zero logits: every T is as good as T = 1
        assert_eq!(fit_temperature(&[0.0; 4], &[0, 0, 1, 1]).unwrap(), 1.0);
        assert!(fit_temperature(&[0.0, f64::NAN], &[0, 1]).is_err());
    }

    #[test]
    fn apply_and_nll() {
        let p = apply_temperature(&[0.0, 2.0, -2000.0, 2000.0], 2.0);
        assert_eq!(p[0], 0.5);
        assert!((p[1] - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-16);
        assert_eq!((p[2], p[3]), (0.0, 1.0));
        // NLL of logit 0 is ln 2 whatever T
        assert!((temperature_nll(&[0.0], &[1], 3.0).unwrap() - 2f64.ln()).abs() < 1e-16);
        // huge logits stay finite
        assert!(temperature_nll(&[800.0], &[0], 1.0).unwrap() == 800.0);
        assert!(temperature_nll(&[1.0], &[1], 0.0).is_err());
        assert!(temperature_nll(&[1.0], &[1], f64::NAN).is_err());
    }
}
