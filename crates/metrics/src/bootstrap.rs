use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::calibration::{DEFAULT_BINS, width_bin};
use crate::error::{check_both_classes, check_probs, check_threshold, invalid};

/// Settings of [`bootstrap_ci`].
///
/// Serialised as `resamples`, `seed`, `confidence`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    /// Number of resamples (at least 2).
    pub resamples: usize,
    /// Seed: resample `b` draws from the ChaCha8 generator seeded with
    /// `seed_from_u64(seed)` on stream `b`, so every resample — and the result —
    /// is the same whatever the number of threads.
    pub seed: u64,
    /// Two-sided interval level in (0, 1), e.g. 0.95.
    pub confidence: f64,
}

impl Default for BootstrapConfig {
    /// 2000 resamples, seed 0, 95 %.
    fn default() -> Self {
        Self {
            resamples: 2000,
            seed: 0,
            confidence: 0.95,
        }
    }
}

/// A percentile interval around a figure.
///
/// Serialised as `estimate`, `low`, `high`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The figure on the original data.
    pub estimate: f64,
    /// Lower percentile, (1 − confidence)/2.
    pub low: f64,
    /// Upper percentile, (1 + confidence)/2.
    pub high: f64,
}

/// Stratified-bootstrap intervals of threshold metrics and the top-label ECE.
///
/// Serialised as `resamples`, `seed`, `confidence`, `threshold`, `accuracy`,
/// `sensitivity`, `specificity`, `f1`, `ppv`, `npv`, `ece` (each figure an [`Interval`]:
/// `estimate`, `low`, `high`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapCi {
    /// Resamples drawn.
    pub resamples: usize,
    /// Seed used.
    pub seed: u64,
    /// Interval level.
    pub confidence: f64,
    /// Decision threshold: positive iff `p >= threshold`.
    pub threshold: f64,
    /// Accuracy.
    pub accuracy: Interval,
    /// Sensitivity (recall).
    pub sensitivity: Interval,
    /// Specificity.
    pub specificity: Interval,
    /// F1 (0 in a resample where it is undefined).
    pub f1: Interval,
    /// Positive predictive value (precision) at the data's own prevalence (the
    /// resamples keep the class counts); 0 in a resample with no positive call.
    pub ppv: Interval,
    /// Negative predictive value at the data's own prevalence; 0 in a resample with no
    /// negative call.
    pub npv: Interval,
    /// Top-label ECE with [`Binning::default`](crate::Binning::default) (15 equal-width bins), as
    /// [`ece`](crate::ece).
    pub ece: Interval,
}

/// Per-item data precomputed once, so a resample only adds up counts.
#[derive(Clone, Copy)]
struct Item {
    /// Called positive at the threshold.
    pred: bool,
    /// Top-label ECE bin.
    bin: usize,
    /// Top-label confidence max(p, 1 − p).
    conf: f64,
    /// 1 when the 0.5-threshold call is right.
    hit: f64,
}

#[derive(Clone, Copy, Default)]
struct Stats {
    accuracy: f64,
    sensitivity: f64,
    specificity: f64,
    f1: f64,
    ppv: f64,
    npv: f64,
    ece: f64,
}

/// Per-bin (count, Σ confidence, Σ hit).
type Bins = Vec<(f64, f64, f64)>;

/// Adds item `it` to the running sums.
fn add(bins: &mut Bins, it: &Item) {
    let s = &mut bins[it.bin];
    s.0 += 1.0;
    s.1 += it.conf;
    s.2 += it.hit;
}

/// Metrics from the sums of one (re)sample of `p` positives and `n` negatives.
fn finish(tp: f64, fp: f64, p: f64, n: f64, bins: &Bins) -> Stats {
    let (fn_, tn) = (p - tp, n - fp);
    let total = p + n;
    // same arithmetic as `calibration_error_unchecked`
    let ece = bins
        .iter()
        .filter(|s| s.0 > 0.0)
        .map(|s| (s.2 / s.0 - s.1 / s.0).abs() * (s.0 / total))
        .sum();
    let f1d = 2.0 * tp + fp + fn_;
    Stats {
        accuracy: (tp + tn) / total,
        sensitivity: tp / p,
        specificity: tn / n,
        f1: if f1d > 0.0 { 2.0 * tp / f1d } else { 0.0 },
        ppv: if tp + fp > 0.0 { tp / (tp + fp) } else { 0.0 },
        npv: if tn + fn_ > 0.0 { tn / (tn + fn_) } else { 0.0 },
        ece,
    }
}

/// numpy's default (`method="linear"`) percentile of sorted values, `q` in [0, 1],
/// including numpy's two-sided interpolation formula.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let Some(last) = sorted.len().checked_sub(1) else {
        return 0.0;
    };
    let pos = last as f64 * q;
    let lo = (pos.floor().max(0.0) as usize).min(last);
    let hi = (lo + 1).min(last);
    let t = pos - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    let d = b - a;
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// Stratified bootstrap percentile intervals for accuracy, sensitivity,
/// specificity, F1, PPV and NPV at `threshold` (positive iff `p >= threshold`) and for the
/// top-label ECE (15 equal-width bins).
///
/// Each resample draws, with replacement, as many positives from the positives
/// and as many negatives from the negatives as the data has, so class balance —
/// and hence sensitivity and specificity — are always defined. Intervals are the
/// `(1 − confidence)/2` and `(1 + confidence)/2` percentiles of the resampled
/// figures, with numpy's default linear interpolation; `estimate` is the figure on
/// the data itself.
///
/// Determinism: resample `b` uses its own ChaCha8 generator (seed `cfg.seed`,
/// stream `b`), so results are bit-identical for any rayon thread count.
///
/// Cost (for benchmarking, e.g. from `cargo xtask bench`): everything
/// threshold-dependent is computed once per item (call, ECE bin, confidence,
/// correctness); a resample is then `n` random draws and additions, with no sort
/// and no allocation — O(resamples · n) in all, spread over rayon's pool, plus one
/// sort of `resamples` values per figure. Time it by calling this function on
/// fixed inputs, e.g. 624 items (the Kermany test split) and
/// `BootstrapConfig::default()` (2000 resamples); an optimised build takes about
/// 15 ms on one core.
///
/// Needs both classes and probabilities in [0, 1]; `threshold` not NaN;
/// `resamples ≥ 2`; `confidence` in (0, 1).
pub fn bootstrap_ci(
    labels: &[u8],
    probs: &[f64],
    threshold: f64,
    cfg: BootstrapConfig,
) -> Result<BootstrapCi> {
    check_probs(labels, probs)?;
    check_threshold(threshold)?;
    check_both_classes(labels)?;
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
    let nbins = DEFAULT_BINS;
    let item = |i: usize| {
        let (y, p) = (labels[i], probs[i]);
        let conf = p.max(1.0 - p);
        Item {
            pred: p >= threshold,
            bin: width_bin(conf, nbins),
            conf,
            hit: f64::from(u8::from((p >= 0.5) == (y == 1))),
        }
    };
    let pos: Vec<Item> = (0..labels.len())
        .filter(|&i| labels[i] == 1)
        .map(item)
        .collect();
    let neg: Vec<Item> = (0..labels.len())
        .filter(|&i| labels[i] == 0)
        .map(item)
        .collect();
    let (p, n) = (pos.len() as f64, neg.len() as f64);
    let full = {
        let mut bins: Bins = vec![(0.0, 0.0, 0.0); nbins + 1];
        pos.iter().chain(&neg).for_each(|it| add(&mut bins, it));
        let tp = pos.iter().filter(|it| it.pred).count() as f64;
        let fp = neg.iter().filter(|it| it.pred).count() as f64;
        finish(tp, fp, p, n, &bins)
    };
    let draws: Vec<Stats> = (0..cfg.resamples)
        .into_par_iter()
        .map_init(
            || vec![(0.0, 0.0, 0.0); nbins + 1],
            |bins, b| {
                bins.iter_mut().for_each(|s| *s = (0.0, 0.0, 0.0));
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
                rng.set_stream(b as u64);
                let (mut tp, mut fp) = (0.0, 0.0);
                for _ in 0..pos.len() {
                    let it = &pos[rng.random_range(0..pos.len())];
                    tp += f64::from(u8::from(it.pred));
                    add(bins, it);
                }
                for _ in 0..neg.len() {
                    let it = &neg[rng.random_range(0..neg.len())];
                    fp += f64::from(u8::from(it.pred));
                    add(bins, it);
                }
                finish(tp, fp, p, n, bins)
            },
        )
        .collect();
    let (q_low, q_high) = ((1.0 - cfg.confidence) / 2.0, (1.0 + cfg.confidence) / 2.0);
    let interval = |estimate: f64, get: fn(&Stats) -> f64| {
        let mut v: Vec<f64> = draws.iter().map(get).collect();
        v.sort_by(f64::total_cmp);
        Interval {
            estimate,
            low: percentile(&v, q_low),
            high: percentile(&v, q_high),
        }
    };
    Ok(BootstrapCi {
        resamples: cfg.resamples,
        seed: cfg.seed,
        confidence: cfg.confidence,
        threshold,
        accuracy: interval(full.accuracy, |s| s.accuracy),
        sensitivity: interval(full.sensitivity, |s| s.sensitivity),
        specificity: interval(full.specificity, |s| s.specificity),
        f1: interval(full.f1, |s| s.f1),
        ppv: interval(full.ppv, |s| s.ppv),
        npv: interval(full.npv, |s| s.npv),
        ece: interval(full.ece, |s| s.ece),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> (Vec<u8>, Vec<f64>) {
        let labels: Vec<u8> = (0..n).map(|i| u8::from(i % 3 != 0)).collect();
        let probs: Vec<f64> = (0..n)
            .map(|i| {
                let base = if i % 3 != 0 { 0.65 } else { 0.35 };
                (base + ((i * 37) % 50) as f64 / 100.0 - 0.25).clamp(0.0, 1.0)
            })
            .collect();
        (labels, probs)
    }

    #[test]
    fn numpy_percentiles() {
        let v = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 1.0), 8.0);
        assert_eq!(percentile(&v, 0.5), 3.0);
        // np.percentile([1, 2, 4, 8], 2.5) = 1.075; 97.5 → 7.7
        assert!((percentile(&v, 0.025) - 1.075).abs() < 1e-15);
        assert!((percentile(&v, 0.975) - 7.7).abs() < 1e-15);
        assert_eq!(percentile(&[3.0], 0.3), 3.0);
    }

    #[test]
    fn estimates_match_direct_metrics_and_intervals_bracket_them() {
        let (labels, probs) = data(300);
        let cfg = BootstrapConfig {
            resamples: 500,
            ..Default::default()
        };
        let ci = bootstrap_ci(&labels, &probs, 0.5, cfg).unwrap();
        let c = crate::confusion(&labels, &probs, 0.5).unwrap();
        assert_eq!(ci.accuracy.estimate, c.accuracy());
        assert_eq!(ci.sensitivity.estimate, c.recall());
        assert_eq!(ci.specificity.estimate, c.specificity());
        assert_eq!(ci.f1.estimate, c.f1());
        assert_eq!(ci.ppv.estimate, c.precision());
        assert_eq!(ci.npv.estimate, c.tn as f64 / (c.tn + c.fn_) as f64);
        let e = crate::ece(&labels, &probs, crate::Binning::default()).unwrap();
        assert!((ci.ece.estimate - e).abs() < 1e-15);
        for i in [
            ci.accuracy,
            ci.sensitivity,
            ci.specificity,
            ci.f1,
            ci.ppv,
            ci.npv,
            ci.ece,
        ] {
            assert!(i.low <= i.estimate && i.estimate <= i.high, "{i:?}");
            assert!(i.high - i.low > 0.0, "{i:?}");
        }
        assert_eq!(ci, bootstrap_ci(&labels, &probs, 0.5, cfg).unwrap());
        let other = bootstrap_ci(&labels, &probs, 0.5, BootstrapConfig { seed: 1, ..cfg }).unwrap();
        assert_ne!(ci.accuracy, other.accuracy, "another seed, other resamples");
    }

    #[test]
    fn same_result_on_any_thread_count() {
        let (labels, probs) = data(200);
        let cfg = BootstrapConfig {
            resamples: 300,
            seed: 7,
            confidence: 0.9,
        };
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| bootstrap_ci(&labels, &probs, 0.4, cfg).unwrap())
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_eq!(one, run(8));
    }

    #[test]
    fn rejects_bad_settings() {
        let (labels, probs) = data(30);
        let bad = |cfg| bootstrap_ci(&labels, &probs, 0.5, cfg).is_err();
        let d = BootstrapConfig::default();
        assert!(bad(BootstrapConfig { resamples: 1, ..d }));
        assert!(bad(BootstrapConfig {
            confidence: 1.0,
            ..d
        }));
        assert!(bad(BootstrapConfig {
            confidence: f64::NAN,
            ..d
        }));
        assert!(bootstrap_ci(&labels, &probs, f64::NAN, d).is_err());
        assert!(bootstrap_ci(&[1, 1], &[0.2, 0.9], 0.5, d).is_err());
    }
}
