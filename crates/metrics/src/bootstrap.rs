use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::calibration::width_bin;
use crate::error::{check_both_classes, check_probs};
use crate::{MetricsError, Result};

/// Settings of [`bootstrap_ci`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    /// Number of resamples.
    pub resamples: usize,
    /// Seed: resample `b` draws from a ChaCha8 stream keyed by `(seed, b)`, so the
    /// result does not depend on the number of threads.
    pub seed: u64,
    /// Two-sided interval level, e.g. 0.95.
    pub confidence: f64,
    /// Bins for the ECE (equal width, top-label).
    pub ece_bins: usize,
}

impl Default for BootstrapConfig {
    /// 2000 resamples, seed 0, 95%, 15 bins.
    fn default() -> Self {
        Self {
            resamples: 2000,
            seed: 0,
            confidence: 0.95,
            ece_bins: 15,
        }
    }
}

/// A percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The figure on the original data.
    pub estimate: f64,
    /// Lower percentile.
    pub low: f64,
    /// Upper percentile.
    pub high: f64,
}

/// Bootstrap intervals of threshold metrics and ECE.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapCi {
    /// Resamples drawn.
    pub resamples: usize,
    /// Interval level.
    pub confidence: f64,
    /// Decision threshold used.
    pub threshold: f64,
    /// Accuracy.
    pub accuracy: Interval,
    /// Sensitivity (recall).
    pub sensitivity: Interval,
    /// Specificity.
    pub specificity: Interval,
    /// F1.
    pub f1: Interval,
    /// Top-label ECE.
    pub ece: Interval,
}

/// Per-item data precomputed once: predicted class, top-label bin, confidence, hit.
#[derive(Clone, Copy)]
struct Item {
    pred: bool,
    bin: usize,
    conf: f64,
    hit: f64,
}

#[derive(Clone, Copy, Default)]
struct Stats {
    accuracy: f64,
    sensitivity: f64,
    specificity: f64,
    f1: f64,
    ece: f64,
}

fn stats(
    items: &[Item],
    pos_idx: &[usize],
    neg_idx: &[usize],
    bins: usize,
    scratch: &mut [(f64, f64, f64)],
) -> Stats {
    scratch.iter_mut().for_each(|s| *s = (0.0, 0.0, 0.0));
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    for &i in pos_idx {
        let it = items[i];
        tp += f64::from(u8::from(it.pred));
        let s = &mut scratch[it.bin];
        *s = (s.0 + 1.0, s.1 + it.conf, s.2 + it.hit);
    }
    for &i in neg_idx {
        let it = items[i];
        fp += f64::from(u8::from(it.pred));
        let s = &mut scratch[it.bin];
        *s = (s.0 + 1.0, s.1 + it.conf, s.2 + it.hit);
    }
    let (p, n) = (pos_idx.len() as f64, neg_idx.len() as f64);
    let (fn_, tn) = (p - tp, n - fp);
    let total = p + n;
    let ece = scratch
        .iter()
        .take(bins + 1)
        .filter(|s| s.0 > 0.0)
        .map(|s| (s.2 / s.0 - s.1 / s.0).abs() * s.0 / total)
        .sum();
    let f1d = 2.0 * tp + fp + fn_;
    Stats {
        accuracy: (tp + tn) / total,
        sensitivity: tp / p,
        specificity: tn / n,
        f1: if f1d > 0.0 { 2.0 * tp / f1d } else { 0.0 },
        ece,
    }
}

/// numpy's default (linear) percentile of sorted values, q in [0, 1].
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Stratified bootstrap percentile intervals for accuracy, sensitivity,
/// specificity, F1 (at `threshold`) and top-label ECE: each resample draws, with
/// replacement, as many positives from the positives and as many negatives from the
/// negatives as the data has, so class balance is fixed. Resamples run in parallel.
/// Needs both classes.
pub fn bootstrap_ci(
    labels: &[u8],
    probs: &[f64],
    threshold: f64,
    cfg: BootstrapConfig,
) -> Result<BootstrapCi> {
    check_probs(labels, probs)?;
    check_both_classes(labels)?;
    if cfg.resamples < 2 || cfg.ece_bins == 0 || !(cfg.confidence > 0.0 && cfg.confidence < 1.0) {
        return Err(MetricsError::Invalid {
            name: "bootstrap config".into(),
            reason: "needs resamples ≥ 2, ece_bins ≥ 1 and confidence in (0, 1)".into(),
        });
    }
    let items: Vec<Item> = labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| {
            let pred = p >= threshold;
            let conf = p.max(1.0 - p);
            let top_pred = p >= 0.5;
            Item {
                pred,
                bin: width_bin(conf, cfg.ece_bins),
                conf,
                hit: f64::from(u8::from(top_pred == (y == 1))),
            }
        })
        .collect();
    let pos: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 1).collect();
    let neg: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 0).collect();
    let bins = cfg.ece_bins;
    let mut scratch = vec![(0.0, 0.0, 0.0); bins + 1];
    let full = stats(&items, &pos, &neg, bins, &mut scratch);
    let draws: Vec<Stats> = (0..cfg.resamples)
        .into_par_iter()
        .map_init(
            || {
                (
                    vec![0usize; pos.len()],
                    vec![0usize; neg.len()],
                    vec![(0.0, 0.0, 0.0); bins + 1],
                )
            },
            |(pi, ni, scratch), b| {
                let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
                rng.set_stream(b as u64);
                for slot in pi.iter_mut() {
                    *slot = pos[rng.random_range(0..pos.len())];
                }
                for slot in ni.iter_mut() {
                    *slot = neg[rng.random_range(0..neg.len())];
                }
                stats(&items, pi, ni, bins, scratch)
            },
        )
        .collect();
    let alpha = (1.0 - cfg.confidence) / 2.0;
    let interval = |estimate: f64, get: fn(&Stats) -> f64| {
        let mut v: Vec<f64> = draws.iter().map(get).collect();
        v.sort_by(f64::total_cmp);
        Interval {
            estimate,
            low: percentile(&v, alpha),
            high: percentile(&v, 1.0 - alpha),
        }
    };
    Ok(BootstrapCi {
        resamples: cfg.resamples,
        confidence: cfg.confidence,
        threshold,
        accuracy: interval(full.accuracy, |s| s.accuracy),
        sensitivity: interval(full.sensitivity, |s| s.sensitivity),
        specificity: interval(full.specificity, |s| s.specificity),
        f1: interval(full.f1, |s| s.f1),
        ece: interval(full.ece, |s| s.ece),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_match_direct_metrics_and_intervals_bracket_them() {
        let n = 300;
        let labels: Vec<u8> = (0..n).map(|i| u8::from(i % 3 != 0)).collect();
        let probs: Vec<f64> = (0..n)
            .map(|i| {
                let base = if i % 3 != 0 { 0.65 } else { 0.35 };
                (base + ((i * 37) % 50) as f64 / 100.0 - 0.25).clamp(0.0, 1.0)
            })
            .collect();
        let ci = bootstrap_ci(
            &labels,
            &probs,
            0.5,
            BootstrapConfig {
                resamples: 500,
                ..Default::default()
            },
        )
        .unwrap();
        let c = crate::confusion(&labels, &probs, 0.5).unwrap();
        assert!((ci.accuracy.estimate - c.accuracy()).abs() < 1e-12);
        assert!((ci.f1.estimate - c.f1()).abs() < 1e-12);
        let e = crate::ece(&labels, &probs, crate::Binning::EqualWidth(15)).unwrap();
        assert!((ci.ece.estimate - e).abs() < 1e-12);
        for i in [ci.accuracy, ci.sensitivity, ci.specificity, ci.f1] {
            assert!(
                i.low <= i.estimate + 1e-9 && i.estimate <= i.high + 1e-9,
                "{i:?}"
            );
            assert!(i.high - i.low > 0.0);
        }
        // deterministic and thread-count independent by construction
        let again = bootstrap_ci(
            &labels,
            &probs,
            0.5,
            BootstrapConfig {
                resamples: 500,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ci, again);
    }
}
