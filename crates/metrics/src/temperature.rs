use crate::Result;
use crate::error::{check_both_classes, check_scores};

fn nll(logits: &[f64], labels: &[u8], beta: f64) -> f64 {
    logits
        .iter()
        .zip(labels)
        .map(|(&z, &y)| {
            let z = z * beta;
            z.max(0.0) - z * f64::from(y) + (-z.abs()).exp().ln_1p()
        })
        .sum::<f64>()
        / logits.len() as f64
}

/// Mean negative log-likelihood of `sigmoid(logit / temperature)`.
pub fn temperature_nll(logits: &[f64], labels: &[u8], temperature: f64) -> Result<f64> {
    check_scores(labels, logits)?;
    Ok(nll(logits, labels, 1.0 / temperature))
}

/// Fits the temperature `T` minimising the NLL of `sigmoid(logit / T)` on
/// (validation) logits (Guo et al. 2017).
///
/// The NLL is convex in `β = 1/T` (a logistic loss in a single weight), so a
/// golden-section search over β ∈ [0.05, 20] (T ∈ [0.05, 20]) finds the minimum
/// without any step that could diverge. If the search's result were not better than
/// `T = 1` (possible only within rounding), `T = 1` is returned, so fitting never
/// increases the NLL of the data it was fitted on. Needs both classes.
pub fn fit_temperature(logits: &[f64], labels: &[u8]) -> Result<f64> {
    check_scores(labels, logits)?;
    check_both_classes(labels)?;
    let f = |b: f64| nll(logits, labels, b);
    let (mut a, mut b) = (0.05f64, 20.0f64);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - g * (b - a);
    let mut d = a + g * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..200 {
        if (b - a).abs() < 1e-12 {
            break;
        }
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    let beta = (a + b) / 2.0;
    Ok(if f(beta) <= f(1.0) { 1.0 / beta } else { 1.0 })
}

/// `sigmoid(logit / temperature)` for each logit.
pub fn apply_temperature(logits: &[f64], temperature: f64) -> Vec<f64> {
    logits
        .iter()
        .map(|&z| 1.0 / (1.0 + (-z / temperature).exp()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_temperature() {
        // Labels drawn (deterministically, by quantiles) from sigmoid(z); then logits
        // scaled by 3: the fitted temperature should be close to 3.
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..4000 {
            let z = -4.0 + 8.0 * (i as f64 + 0.5) / 4000.0;
            let p = 1.0 / (1.0 + (-z).exp());
            // low-discrepancy Bernoulli draw
            let u = ((i as f64) * 0.618_033_988_749_895).fract();
            labels.push(u8::from(u < p));
            logits.push(3.0 * z);
        }
        let t = fit_temperature(&logits, &labels).unwrap();
        assert!((t - 3.0).abs() < 0.15, "{t}");
        let before = temperature_nll(&logits, &labels, 1.0).unwrap();
        let after = temperature_nll(&logits, &labels, t).unwrap();
        assert!(after < before);
    }
}
