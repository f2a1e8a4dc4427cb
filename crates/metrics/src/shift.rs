//! Is it label shift? A goodness-of-fit test of the new set's scores against a
//! label-shifted mixture of the reference (validation) scores.
//!
//! The EM prevalence of [`em_prevalence`](crate::em_prevalence) is only right
//! under label shift: each class's score distribution at the new site is the
//! reference one, only the mix differs. That has a testable consequence on the
//! model's outputs — black-box shift detection (Lipton, Wang & Smola 2018,
//! "Detecting and correcting for label shift with black box predictors", ICML;
//! Rabanser, Günnemann & Lipton 2019, "Failing loudly", NeurIPS, who test the
//! univariate model outputs with Kolmogorov–Smirnov): the new scores must follow
//! `F = π·F₁ + (1 − π)·F₀` for some `π`, with `F₀`, `F₁` the reference classes'
//! score distributions. [`label_shift_test`] measures the distance to the
//! best-fitting such mixture and calibrates it by a bootstrap.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, invalid};
use crate::prior::{check_em, em};
use crate::{BiasCorrectedScaling, PrevalenceConfig, Result, em_prevalence};

/// Result of [`label_shift_test`].
///
/// Serialised as `statistic`, `p_value`, `prevalence`, `resamples`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelShiftTest {
    /// Kolmogorov–Smirnov distance `D` between the new scores' empirical CDF and
    /// the fitted mixture of the reference classes' empirical CDFs, in [0, 1].
    pub statistic: f64,
    /// Bootstrap p-value `(1 + #{D* ≥ D}) / (B + 1)`, in (0, 1]: small means the
    /// new scores are not a label-shifted mixture of the reference scores.
    pub p_value: f64,
    /// The mixture weight `π̂`: the EM prevalence of the new set.
    pub prevalence: f64,
    /// Bootstrap replicates `B`.
    pub resamples: usize,
}

/// Kolmogorov–Smirnov distance `sup_t |Fₙ(t) − (π·F₁(t) + (1 − π)·F₀(t))|`
/// between the empirical CDF `Fₙ` of `scores` and the mixture, with weight
/// `prevalence` on class 1, of the empirical CDFs `F₀` of `reference_normal` and
/// `F₁` of `reference_pneumonia` — the statistic of [`label_shift_test`].
///
/// Exact: all three are right-continuous step functions, so the difference is
/// constant between consecutive jump points and the supremum is its largest
/// value at a jump point of any of them (ties, and −0.0 against 0.0, count as
/// one point).
///
/// Errors: any of the three empty ([`MetricsError::Empty`] for `scores`,
/// [`MetricsError::Invalid`] naming a reference) or holding NaN/±∞
/// ([`MetricsError::NonFinite`], or `Invalid`), `prevalence` outside [0, 1].
pub fn mixture_ks_statistic(
    scores: &[f64],
    reference_normal: &[f64],
    reference_pneumonia: &[f64],
    prevalence: f64,
) -> Result<f64> {
    check_samples(scores, reference_normal, reference_pneumonia)?;
    if !(0.0..=1.0).contains(&prevalence) {
        return Err(invalid(
            "prevalence",
            format!("must lie in [0, 1], got {prevalence}"),
        ));
    }
    Ok(ks(
        &sorted(scores),
        &sorted(reference_normal),
        &sorted(reference_pneumonia),
        prevalence,
    ))
}

/// Tests whether new scores are a label-shifted mixture of the reference scores —
/// the assumption behind [`em_prevalence`](crate::em_prevalence) — by a
/// bootstrapped Kolmogorov–Smirnov test on the model's logits (black-box shift
/// detection: Lipton et al. 2018, Rabanser et al. 2019).
///
/// Inputs: `scores`, the new set's logits; `reference_normal` and
/// `reference_pneumonia`, the reference (validation) logits of each class;
/// `scaling`, the calibration fitted on that reference
/// ([`fit_bias_corrected_scaling`](crate::fit_bias_corrected_scaling));
/// `reference_prevalence`, the prevalence those probabilities are calibrated for
/// (normally the reference's share of class 1).
///
/// 1. `π̂` = [`em_prevalence`](crate::em_prevalence) of `scaling.apply(scores)`
///    from `reference_prevalence`, with `cfg.em`.
/// 2. `D` = [`mixture_ks_statistic`] of the scores against
///    `π̂·F₁ + (1 − π̂)·F₀`, with `F₀`, `F₁` the references' empirical CDFs.
///    Under label shift `D` is small, but its null distribution is not the
///    classical KS one: `π̂`, `F₀` and `F₁` are estimated (from this set and from
///    finite references), which both shrinks and widens `D`.
/// 3. p-value by a bootstrap that reproduces both noise sources. Replicate `b`
///    (ChaCha8 seeded with `cfg.seed`, stream `b`, drawing in this order):
///    resamples each reference class with replacement (`R₀*`, `R₁*`); draws
///    `n = scores.len()` scores from the fitted null — class 1 with probability
///    `π̂` (a uniform `f64 < π̂`), then a uniform pick from that class's ORIGINAL
///    reference logits; re-estimates `π̂*` by the same EM on those scores with the
///    same `scaling`; and computes `D*` against the mixture of `R₀*`, `R₁*` with
///    weight `π̂*`. Then `p = (1 + #{D* ≥ D}) / (B + 1)`, `B = cfg.resamples`
///    (the Monte Carlo p-value: never 0, and not below `1/(B + 1)`, so take
///    `B ≥ 99` to see `p < 0.01`).
///
/// Replicates run in parallel on rayon's pool with their own generators, so the
/// result is bit-identical for any thread count. Cost: `B` EM runs on `n`
/// scores plus sorting `n + n₀ + n₁` numbers — tens of milliseconds for
/// `B = 1000` and sets of a few hundred.
///
/// Reading it: a small p-value says the new set's scores are not any label shift
/// of the reference's — covariate or concept shift, a different scanner or
/// population — so the EM prevalence (and prior-adapted thresholds) should not be
/// trusted there. A large one is no proof of label shift: the test sees only the
/// distribution of one number per image, and shifts that preserve it go unseen.
/// On the reference itself (`scores` = both classes pooled) `π̂` is the
/// reference's prevalence when `scaling` is fitted there, and `D` is 0 up to
/// rounding.
///
/// `cfg.confidence` is not used (there is no interval).
///
/// Errors: empty or non-finite `scores` ([`MetricsError::Empty`],
/// [`MetricsError::NonFinite`]); an empty or non-finite reference
/// ([`MetricsError::Invalid`] naming it); `scaling` with a non-finite field;
/// those of [`em_prevalence`](crate::em_prevalence) (`reference_prevalence`
/// outside (0, 1), bad EM settings); `cfg.resamples` 0.
pub fn label_shift_test(
    scores: &[f64],
    reference_normal: &[f64],
    reference_pneumonia: &[f64],
    scaling: BiasCorrectedScaling,
    reference_prevalence: f64,
    cfg: PrevalenceConfig,
) -> Result<LabelShiftTest> {
    check_samples(scores, reference_normal, reference_pneumonia)?;
    if !(scaling.scale.is_finite() && scaling.bias.is_finite()) {
        return Err(invalid(
            "scaling",
            format!("scale and bias must be finite, got {scaling:?}"),
        ));
    }
    check_em(reference_prevalence, cfg.em)?;
    if cfg.resamples == 0 {
        return Err(invalid("resamples", "needs at least 1"));
    }

    let probs: Vec<f64> = scores.iter().map(|&z| scaling.apply(z)).collect();
    let pi = em_prevalence(&probs, reference_prevalence, cfg.em)?.estimate;
    let (r0, r1) = (sorted(reference_normal), sorted(reference_pneumonia));
    let statistic = ks(&sorted(scores), &r0, &r1, pi);

    let (n, n0, n1) = (scores.len(), r0.len(), r1.len());
    let exceed = (0..cfg.resamples)
        .into_par_iter()
        .map_init(
            || Scratch {
                r0: vec![0.0; n0],
                r1: vec![0.0; n1],
                scores: vec![0.0; n],
                probs: vec![0.0; n],
            },
            |s, b| {
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
                rng.set_stream(b as u64);
                for x in s.r0.iter_mut() {
                    *x = r0[rng.random_range(0..n0)];
                }
                for x in s.r1.iter_mut() {
                    *x = r1[rng.random_range(0..n1)];
                }
                for x in s.scores.iter_mut() {
                    *x = if rng.random::<f64>() < pi {
                        r1[rng.random_range(0..n1)]
                    } else {
                        r0[rng.random_range(0..n0)]
                    };
                }
                // equal doubles are bit-identical (no NaN; −0.0 sorts before 0.0),
                // so unstable sorting gives the same order on every run
                s.r0.sort_unstable_by(f64::total_cmp);
                s.r1.sort_unstable_by(f64::total_cmp);
                s.scores.sort_unstable_by(f64::total_cmp);
                for (p, &z) in s.probs.iter_mut().zip(&s.scores) {
                    *p = scaling.apply(z);
                }
                let pi_star = em(&s.probs, reference_prevalence, cfg.em).estimate;
                ks(&s.scores, &s.r0, &s.r1, pi_star) >= statistic
            },
        )
        .filter(|&exceeds| exceeds)
        .count();
    Ok(LabelShiftTest {
        statistic,
        p_value: (1 + exceed) as f64 / (cfg.resamples + 1) as f64,
        prevalence: pi,
        resamples: cfg.resamples,
    })
}

/// Per-thread buffers of one bootstrap replicate.
struct Scratch {
    r0: Vec<f64>,
    r1: Vec<f64>,
    scores: Vec<f64>,
    probs: Vec<f64>,
}

/// Non-empty and finite: `scores` as [`em_prevalence`](crate::em_prevalence)
/// reports it; the references by name, since an index alone would be ambiguous.
fn check_samples(
    scores: &[f64],
    reference_normal: &[f64],
    reference_pneumonia: &[f64],
) -> Result<()> {
    if scores.is_empty() {
        return Err(MetricsError::Empty);
    }
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::NonFinite { index });
    }
    for (name, r) in [
        ("reference_normal", reference_normal),
        ("reference_pneumonia", reference_pneumonia),
    ] {
        if r.is_empty() {
            return Err(invalid(name, "is empty"));
        }
        if let Some(index) = r.iter().position(|s| !s.is_finite()) {
            return Err(invalid(
                name,
                format!("value at index {index} is not finite"),
            ));
        }
    }
    Ok(())
}

fn sorted(x: &[f64]) -> Vec<f64> {
    let mut v = x.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    v
}

/// The KS distance on sorted, finite, non-empty samples: a merge over the union of
/// their values, comparing the CDFs just after each (IEEE `<=`, so −0.0 and 0.0
/// are one point).
fn ks(s: &[f64], r0: &[f64], r1: &[f64], pi: f64) -> f64 {
    let (n, n0, n1) = (s.len() as f64, r0.len() as f64, r1.len() as f64);
    let (mut i, mut j, mut k) = (0, 0, 0);
    let mut d: f64 = 0.0;
    loop {
        let t = [s.get(i), r0.get(j), r1.get(k)]
            .into_iter()
            .flatten()
            .fold(f64::INFINITY, |m, &x| m.min(x));
        if t == f64::INFINITY {
            // all exhausted (the samples are finite)
            return d;
        }
        while i < s.len() && s[i] <= t {
            i += 1;
        }
        while j < r0.len() && r0[j] <= t {
            j += 1;
        }
        while k < r1.len() && r1[k] <= t {
            k += 1;
        }
        let mixture = pi * (k as f64 / n1) + (1.0 - pi) * (j as f64 / n0);
        d = d.max((i as f64 / n - mixture).abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_by_hand() {
        // Fₙ: 1/2 at 0, 1 at 2; F₀: 1 at 1; F₁: 1 at 3; π = 1/4
        // t = 0: |1/2 − 0| ; t = 1: |1/2 − 3/4| ; t = 2: |1 − 3/4| ; t = 3: 0
        assert_eq!(ks(&[0.0, 2.0], &[1.0], &[3.0], 0.25), 0.5);
        // identical samples, π matching the pooled share: D = 0
        assert!(ks(&[1.0, 2.0, 3.0], &[1.0, 3.0], &[2.0], 1.0 / 3.0) < 1e-15);
        // −0.0 and 0.0 are one jump point
        assert_eq!(ks(&[-0.0], &[0.0], &[0.0], 0.5), 0.0);
    }
}
