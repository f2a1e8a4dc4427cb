//! Label shift: estimating the prevalence of an unlabelled set from calibrated
//! probabilities, and moving probabilities and thresholds to a new prevalence.
//!
//! The estimator is the EM procedure of Saerens, Latinne & Decaestecker (2002),
//! "Adjusting the outputs of a classifier to new a priori probabilities: a simple
//! procedure", *Neural Computation* 14(1), 21–41, in the binary case. Under label
//! shift (the class-conditional image distributions are those of training; only
//! the prevalence differs) Bayes' rule moves a posterior calibrated for prior
//! `π_train` to prior `π` ([`adapt_probability`]), and the EM fixed point
//! `π = mean(adapt(pᵢ, π_train, π))` is the maximum-likelihood prevalence of the
//! unlabelled set. Alexandari, Kundaje & Shrikumar (2020), "Maximum likelihood with
//! bias-corrected calibration is hard-to-beat at label shift adaptation" (ICML),
//! show it is competitive with the alternatives provided the probabilities are
//! calibrated — so feed it temperature-scaled probabilities, with `π_train` the
//! prevalence of the data they were calibrated on. Their `abstention` package is
//! the reference implementation of the tests.
//!
//! The bootstrap interval of [`estimate_prevalence`] covers the sampling
//! variability of the unlabelled set only, not miscalibration or a shift that is
//! not a pure label shift.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, invalid};
use crate::{Result, quantiles};

/// Default [`EmSettings::tolerance`]: stop once the estimate moves by less.
pub const EM_TOLERANCE: f64 = 1e-8;
/// Default [`EmSettings::max_iterations`].
pub const EM_MAX_ITERATIONS: usize = 1000;

/// Stopping rule of the EM in [`em_prevalence`].
///
/// Serialised as `tolerance`, `max_iterations`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmSettings {
    /// Stop when `|π_new − π| < tolerance`; finite and positive.
    pub tolerance: f64,
    /// Give up (with `converged: false`) after this many updates; at least 1.
    pub max_iterations: usize,
}

impl Default for EmSettings {
    /// [`EM_TOLERANCE`] (1e-8) and [`EM_MAX_ITERATIONS`] (1000).
    fn default() -> Self {
        Self {
            tolerance: EM_TOLERANCE,
            max_iterations: EM_MAX_ITERATIONS,
        }
    }
}

/// Result of [`em_prevalence`].
///
/// Serialised as `estimate`, `iterations`, `converged`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmPrevalence {
    /// Estimated prevalence of class 1 in the unlabelled set, in [0, 1].
    pub estimate: f64,
    /// EM updates performed.
    pub iterations: usize,
    /// Whether the last update moved the estimate by less than the tolerance
    /// (false: `max_iterations` was reached, and `estimate` is the last iterate).
    pub converged: bool,
}

/// Settings of [`estimate_prevalence`].
///
/// Serialised as `resamples`, `seed`, `confidence`, `em` (an [`EmSettings`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrevalenceConfig {
    /// Bootstrap resamples (at least 2).
    pub resamples: usize,
    /// Seed: resample `b` draws from the ChaCha8 generator seeded with
    /// `seed_from_u64(seed)` on stream `b` (as
    /// [`BootstrapConfig`](crate::BootstrapConfig)), so the interval is the same
    /// whatever the number of threads.
    pub seed: u64,
    /// Two-sided interval level in (0, 1), e.g. 0.95.
    pub confidence: f64,
    /// EM stopping rule, for the estimate and for every resample.
    pub em: EmSettings,
}

impl Default for PrevalenceConfig {
    /// 1000 resamples, seed 0, 95 %, [`EmSettings::default`].
    fn default() -> Self {
        Self {
            resamples: 1000,
            seed: 0,
            confidence: 0.95,
            em: EmSettings::default(),
        }
    }
}

/// Result of [`estimate_prevalence`]: the EM estimate with its bootstrap interval.
///
/// Serialised as `estimate`, `ci_low`, `ci_high`, `iterations`, `converged`,
/// `train_prevalence`, `differs`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrevalenceEstimate {
    /// EM estimate on all the probabilities ([`EmPrevalence::estimate`]).
    pub estimate: f64,
    /// Lower percentile, (1 − confidence)/2, of the resampled estimates.
    pub ci_low: f64,
    /// Upper percentile, (1 + confidence)/2, of the resampled estimates.
    pub ci_high: f64,
    /// EM updates for `estimate`.
    pub iterations: usize,
    /// Whether the EM for `estimate` converged (resamples that do not are used
    /// at their last iterate).
    pub converged: bool,
    /// The prevalence the probabilities are calibrated for, as given.
    pub train_prevalence: f64,
    /// `train_prevalence` lies outside `[ci_low, ci_high]`: the set's prevalence
    /// differs from training's at the interval's level.
    pub differs: bool,
}

/// Bayes' rule for a change of prior, with the weights computed once.
#[derive(Clone, Copy)]
struct Shift {
    from: f64,
    to: f64,
    /// `to·(1 − from)` and `(1 − to)·from`: the ratios `to/from` and
    /// `(1 − to)/(1 − from)` times `from·(1 − from)`, which cannot overflow.
    w1: f64,
    w0: f64,
}

impl Shift {
    fn new(from: f64, to: f64) -> Self {
        Self {
            from,
            to,
            w1: to * (1.0 - from),
            w0: (1.0 - to) * from,
        }
    }

    fn apply(self, p: f64) -> f64 {
        // exact identity: w·p / (w·p + w·(1 − p)) can be an ulp off p
        if self.from == self.to {
            return p;
        }
        let num = self.w1 * p;
        let den = num + self.w0 * (1.0 - p);
        if den > 0.0 {
            return num / den;
        }
        // Both terms underflowed (a subnormal prior), or 0/0 from a prior of 0
        // or 1 against a certain opposite p: add log-odds instead; leave p as it
        // is where even that is undefined.
        let z = self.to.ln() - (-self.to).ln_1p() - self.from.ln() + (-self.from).ln_1p() + p.ln()
            - (-p).ln_1p();
        if z.is_nan() {
            p
        } else {
            1.0 / (1.0 + (-z).exp())
        }
    }
}

/// Moves a probability calibrated for prevalence `from_prior` to prevalence
/// `to_prior` (Saerens et al. 2002, eq. 2.4 — Bayes' rule under label shift):
///
/// `p' = (π/π₀ · p) / (π/π₀ · p + (1 − π)/(1 − π₀) · (1 − p))`, with `π₀ =
/// from_prior`, `π = to_prior`.
///
/// This is the update [`em_prevalence`] applies. It is increasing in `p`, keeps 0
/// and 1, returns `p` itself when the priors are equal, and swapping the priors
/// inverts it (up to rounding).
///
/// Like [`apply_temperature`](crate::apply_temperature) it does no checking:
/// meant for `p` in [0, 1] and priors in (0, 1), for which it never returns NaN
/// (nor for priors of exactly 0 or 1, which make Bayes' rule 0/0 against a
/// certain opposite `p`: that `p` is returned unchanged).
pub fn adapt_probability(p: f64, from_prior: f64, to_prior: f64) -> f64 {
    Shift::new(from_prior, to_prior).apply(p)
}

/// The threshold on the original probabilities equivalent to `threshold` on
/// probabilities adapted from `from_prior` to `to_prior`:
/// `adapt_probability(p, from, to) >= threshold` exactly when
/// `p >= adapt_threshold(threshold, from, to)` (up to rounding for `p` at the
/// boundary).
///
/// Closed form: the inverse map, i.e. [`adapt_probability`] with the priors
/// swapped, `t' = ((1 − π)/(1 − π₀) · t) / ((1 − π)/(1 − π₀) · t + π/π₀ · (1 −
/// t))`. A threshold outside [0, 1] (or NaN) is returned as it is: it calls
/// everything, or nothing, positive on either scale.
pub fn adapt_threshold(threshold: f64, from_prior: f64, to_prior: f64) -> f64 {
    if (0.0..=1.0).contains(&threshold) {
        adapt_probability(threshold, to_prior, from_prior)
    } else {
        threshold
    }
}

/// Non-empty, finite, in [0, 1].
fn check_unlabelled(probs: &[f64]) -> Result<()> {
    if probs.is_empty() {
        return Err(MetricsError::Empty);
    }
    if let Some(index) = probs.iter().position(|p| !p.is_finite()) {
        return Err(MetricsError::NonFinite { index });
    }
    if let Some((index, &value)) = probs
        .iter()
        .enumerate()
        .find(|(_, p)| !(0.0..=1.0).contains(*p))
    {
        return Err(MetricsError::NotAProbability { index, value });
    }
    Ok(())
}

pub(crate) fn check_em(train_prevalence: f64, s: EmSettings) -> Result<()> {
    if !(train_prevalence > 0.0 && train_prevalence < 1.0) {
        return Err(invalid(
            "train_prevalence",
            format!("must lie in (0, 1), got {train_prevalence}"),
        ));
    }
    if !(s.tolerance.is_finite() && s.tolerance > 0.0) {
        return Err(invalid(
            "tolerance",
            format!("must be finite and positive, got {}", s.tolerance),
        ));
    }
    if s.max_iterations == 0 {
        return Err(invalid("max_iterations", "needs at least 1"));
    }
    Ok(())
}

/// The EM on checked input.
pub(crate) fn em(probs: &[f64], train: f64, s: EmSettings) -> EmPrevalence {
    let n = probs.len() as f64;
    let mut pi = train;
    for iterations in 1..=s.max_iterations {
        let shift = Shift::new(train, pi);
        // a mean of numbers in [0, 1]; the clamp only guards rounding
        let next = (probs.iter().map(|&p| shift.apply(p)).sum::<f64>() / n).clamp(0.0, 1.0);
        if (next - pi).abs() < s.tolerance {
            return EmPrevalence {
                estimate: next,
                iterations,
                converged: true,
            };
        }
        pi = next;
    }
    EmPrevalence {
        estimate: pi,
        iterations: s.max_iterations,
        converged: false,
    }
}

/// EM estimate of the prevalence of class 1 in an unlabelled set (Saerens et al.
/// 2002), from probabilities `probs` calibrated for prevalence `train_prevalence`.
///
/// Starting from `π = train_prevalence`, each update adapts every probability to
/// `π` ([`adapt_probability`]) and sets `π` to their mean, until `π` moves by less
/// than `settings.tolerance` or after `settings.max_iterations` updates. The
/// estimate is the last mean. The log-likelihood is concave in `π`, so the EM
/// converges to the maximum-likelihood prevalence (0 or 1 when the maximum is on
/// the boundary, approached slowly); convergence is linear, slower the less the
/// probabilities separate the classes. If the mean of `probs` equals
/// `train_prevalence`, that is the estimate after one update.
///
/// Errors: empty `probs`, NaN/±∞ or values outside [0, 1], `train_prevalence`
/// outside (0, 1), a tolerance that is not finite and positive,
/// `max_iterations` 0.
pub fn em_prevalence(
    probs: &[f64],
    train_prevalence: f64,
    settings: EmSettings,
) -> Result<EmPrevalence> {
    check_unlabelled(probs)?;
    check_em(train_prevalence, settings)?;
    Ok(em(probs, train_prevalence, settings))
}

/// [`em_prevalence`] with a bootstrap percentile interval, and whether the
/// training prevalence lies outside it — the "site check": does this set's
/// pneumonia prevalence differ from what the model was calibrated for?
///
/// Each of `cfg.resamples` resamples draws `probs.len()` probabilities with
/// replacement and runs the same EM (from `train_prevalence`, with `cfg.em`);
/// the interval is the `(1 − confidence)/2` and `(1 + confidence)/2` quantiles
/// of the resampled estimates (linear interpolation, numpy's default, as
/// [`quantile`](crate::quantile)). Resamples run in parallel on rayon's pool;
/// resample `b` uses its own ChaCha8 generator (seed `cfg.seed`, stream `b`), so
/// the result is bit-identical for any thread count.
///
/// Cost: `resamples` EM runs of `O(n)` per update — with the defaults on a few
/// hundred probabilities, typically tens of milliseconds.
///
/// Errors: those of [`em_prevalence`], `resamples < 2`, `confidence` outside
/// (0, 1).
pub fn estimate_prevalence(
    probs: &[f64],
    train_prevalence: f64,
    cfg: PrevalenceConfig,
) -> Result<PrevalenceEstimate> {
    check_unlabelled(probs)?;
    check_em(train_prevalence, cfg.em)?;
    if cfg.resamples < 2 {
        return Err(invalid(
            "resamples",
            format!("needs at least 2, got {}", cfg.resamples),
        ));
    }
    if !(cfg.confidence > 0.0 && cfg.confidence < 1.0) {
        return Err(invalid(
            "confidence",
            format!("must lie in (0, 1), got {}", cfg.confidence),
        ));
    }
    let full = em(probs, train_prevalence, cfg.em);
    let n = probs.len();
    let draws: Vec<f64> = (0..cfg.resamples)
        .into_par_iter()
        .map_init(
            || vec![0.0; n],
            |sample, b| {
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
                rng.set_stream(b as u64);
                for x in sample.iter_mut() {
                    *x = probs[rng.random_range(0..n)];
                }
                em(sample, train_prevalence, cfg.em).estimate
            },
        )
        .collect();
    let q = quantiles(
        &draws,
        &[(1.0 - cfg.confidence) / 2.0, (1.0 + cfg.confidence) / 2.0],
    )?;
    let (ci_low, ci_high) = (q[0], q[1]);
    Ok(PrevalenceEstimate {
        estimate: full.estimate,
        ci_low,
        ci_high,
        iterations: full.iterations,
        converged: full.converged,
        train_prevalence,
        differs: train_prevalence < ci_low || train_prevalence > ci_high,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIORS: [f64; 6] = [0.01, 0.2, 0.3, 0.5, 0.74, 0.99];

    fn grid() -> Vec<f64> {
        let mut g: Vec<f64> = (0..=100).map(|i| f64::from(i) / 100.0).collect();
        g.extend([1e-300, 1e-15, 1.0 - 1e-15, 5e-324]);
        g.sort_by(f64::total_cmp);
        g
    }

    #[test]
    fn identity_when_the_priors_are_equal() {
        for &pi in &PRIORS {
            for &p in &grid() {
                assert_eq!(adapt_probability(p, pi, pi), p);
            }
        }
    }

    #[test]
    fn monotone_keeps_the_ends_and_moves_the_right_way() {
        for &from in &PRIORS {
            for &to in &PRIORS {
                let a: Vec<f64> = grid()
                    .iter()
                    .map(|&p| adapt_probability(p, from, to))
                    .collect();
                assert!(a.windows(2).all(|w| w[0] <= w[1]), "{from} → {to}");
                assert_eq!((a[0], a[a.len() - 1]), (0.0, 1.0), "{from} → {to}");
                // a higher prior raises every interior probability
                let half = adapt_probability(0.5, from, to);
                if to > from {
                    assert!(half > 0.5);
                } else if to < from {
                    assert!(half < 0.5);
                }
                // p = from is the probability of "no evidence": it maps to `to`
                assert!((adapt_probability(from, from, to) - to).abs() < 1e-15);
            }
        }
    }

    #[test]
    fn swapping_the_priors_inverts() {
        for &from in &PRIORS {
            for &to in &PRIORS {
                for &p in &grid() {
                    let back = adapt_probability(adapt_probability(p, from, to), to, from);
                    // relative near 0, where doubles are dense; absolute near 1
                    let tol = if p < 0.5 { 1e-12 * p + 1e-300 } else { 1e-12 };
                    assert!((back - p).abs() <= tol, "{p}: {from} → {to} → {back}");
                }
            }
        }
    }

    #[test]
    fn degenerate_priors_never_give_nan() {
        for (p, from, to) in [
            (1.0, 0.5, 0.0),
            (0.0, 0.5, 1.0),
            (0.3, 5e-324, 1.0 - 1e-16),
            (1e-320, 0.5, 5e-324),
            (1.0, 5e-324, 0.5),
        ] {
            let a = adapt_probability(p, from, to);
            assert!((0.0..=1.0).contains(&a), "{p} {from} {to}: {a}");
        }
        // a subnormal prior raised to 1/2 makes a middling p certain
        assert_eq!(adapt_probability(0.3, 5e-324, 0.5), 1.0);
        // both terms underflow: the log-odds fallback (odds 5e-324 · 1/5e-324 = 1)
        assert!((adapt_probability(5e-324, 5e-324, 0.5) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn threshold_equivalence() {
        let (from, to) = (0.74, 0.3);
        for t in [0.1, 0.5, 0.62, 0.9] {
            let t2 = adapt_threshold(t, from, to);
            for &p in &grid() {
                // skip the rounding boundary itself
                if (p - t2).abs() < 1e-12 {
                    continue;
                }
                assert_eq!(adapt_probability(p, from, to) >= t, p >= t2, "t {t} p {p}");
            }
        }
        assert_eq!(adapt_threshold(1.5, from, to), 1.5);
        assert_eq!(adapt_threshold(-1.0, from, to), -1.0);
        assert_eq!(adapt_threshold(f64::INFINITY, from, to), f64::INFINITY);
        assert_eq!(adapt_threshold(0.0, from, to), 0.0);
        assert_eq!(adapt_threshold(1.0, from, to), 1.0);
    }

    #[test]
    fn em_edges() {
        let s = EmSettings::default();
        // all certain negatives: prevalence 0, no NaN
        let r = em_prevalence(&[0.0; 5], 0.5, s).unwrap();
        assert_eq!((r.estimate, r.converged), (0.0, true));
        let r = em_prevalence(&[1.0; 5], 0.3, s).unwrap();
        assert_eq!((r.estimate, r.converged), (1.0, true));
        // certain of both classes: their share
        let r = em_prevalence(&[0.0, 1.0, 1.0, 0.0, 0.0], 0.7, s).unwrap();
        assert!((r.estimate - 0.4).abs() < 1e-12 && r.converged);
        // one item
        let r = em_prevalence(&[0.6], 0.6, s).unwrap();
        assert_eq!((r.estimate, r.iterations), (0.6, 1));
        // a budget too small to converge is reported
        let slow = [0.45, 0.55, 0.5, 0.52];
        let r = em_prevalence(
            &slow,
            0.2,
            EmSettings {
                tolerance: 1e-15,
                max_iterations: 3,
            },
        )
        .unwrap();
        assert_eq!((r.iterations, r.converged), (3, false));
        assert!(r.estimate.is_finite());
    }

    #[test]
    fn same_interval_on_any_thread_count() {
        let probs: Vec<f64> = (0..150)
            .map(|i| ((i * 37) % 100) as f64 / 100.0 * 0.9 + 0.05)
            .collect();
        let cfg = PrevalenceConfig {
            resamples: 200,
            seed: 3,
            ..Default::default()
        };
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| estimate_prevalence(&probs, 0.4, cfg).unwrap())
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_eq!(one, run(8));
        assert!(
            one.ci_low < one.estimate && one.estimate < one.ci_high,
            "{one:?}"
        );
    }
}
