//! Batch-level regularisation of a training step: mixup and label smoothing.
//!
//! Both change only what one step trains on, drawn from `(seed, epoch, step)` alone, so
//! a resumed run repeats them exactly and the checkpoint carries no state for them.

use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Beta;

use crate::{Result, TrainConfig, TrainError};

/// Salt of mixup's random stream, so that it shares no draws with shuffling and
/// augmentation (which seed their own ChaCha8 generators from the run's seed).
const MIXUP_SALT: u64 = 0x6d69_7875_705f_6c61;

/// The images and targets a training step learns from: the batch `(x, y)` mixed
/// ([`TrainConfig::mixup`]) and its targets smoothed ([`TrainConfig::label_smoothing`]).
/// Unchanged when both are off.
pub(crate) fn training_pair(
    x: &Tensor,
    y: &Tensor,
    cfg: &TrainConfig,
    epoch: usize,
    step: usize,
) -> Result<(Tensor, Tensor)> {
    let (mut x, mut y) = (x.clone(), y.clone());
    if let Some(alpha) = cfg.mixup {
        let lambda = mixup_lambda(alpha, cfg.seed, epoch, step)?;
        // The batch is already in shuffled order: pairing it with its reverse pairs
        // random images (timm's "batch" mixup does the same with a flip).
        let n = x.dim(0)?;
        let reversed: Vec<u32> = (0..n as u32).rev().collect();
        let idx = Tensor::new(reversed.as_slice(), x.device())?;
        let mix = |t: &Tensor| -> candle_core::Result<Tensor> {
            (t * lambda)? + (t.index_select(&idx, 0)? * (1.0 - lambda))?
        };
        x = mix(&x)?;
        y = mix(&y)?;
    }
    let eps = cfg.label_smoothing;
    if eps > 0.0 {
        y = y.affine(1.0 - eps, eps / 2.0)?;
    }
    Ok((x, y))
}

/// Mixup's λ for one step: Beta(α, α), seeded by the run's seed, the epoch and the step.
fn mixup_lambda(alpha: f64, seed: u64, epoch: usize, step: usize) -> Result<f64> {
    let beta = Beta::new(alpha, alpha).map_err(|e| TrainError::Config {
        field: "mixup".into(),
        reason: format!("Beta({alpha}, {alpha}): {e}"),
    })?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ MIXUP_SALT);
    rng.set_stream(((epoch as u64) << 32) | step as u64);
    Ok(rng.sample(beta))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn pair() -> (Tensor, Tensor) {
        let x = Tensor::arange(0f32, 8.0, &Device::Cpu)
            .unwrap()
            .reshape((4, 1, 1, 2))
            .unwrap();
        let y = Tensor::new(&[1f32, 0.0, 0.0, 1.0], &Device::Cpu).unwrap();
        (x, y)
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn off_leaves_the_batch_as_it_is() {
        let (x, y) = pair();
        let (mx, my) = training_pair(&x, &y, &TrainConfig::default(), 3, 7).unwrap();
        assert_eq!(values(&mx), values(&x));
        assert_eq!(values(&my), values(&y));
    }

    #[test]
    fn mixup_blends_each_item_with_its_mirror_by_one_lambda() {
        let (x, y) = pair();
        let cfg = TrainConfig {
            mixup: Some(0.4),
            ..TrainConfig::default()
        };
        let (mx, my) = training_pair(&x, &y, &cfg, 2, 5).unwrap();
        let l = mixup_lambda(0.4, cfg.seed, 2, 5).unwrap();
        assert!((0.0..=1.0).contains(&l));
        let (xv, yv) = (values(&x), values(&y));
        let tol = 1e-6; // relative to values of order 1–7
        for (i, got) in values(&mx).iter().enumerate() {
            let (item, k) = (i / 2, i % 2);
            let other = (3 - item) * 2 + k;
            let want = l * xv[i] as f64 + (1.0 - l) * xv[other] as f64;
            assert!(
                (*got as f64 - want).abs() <= tol * want.abs().max(1.0),
                "{i}"
            );
        }
        for (i, got) in values(&my).iter().enumerate() {
            let want = l * yv[i] as f64 + (1.0 - l) * yv[3 - i] as f64;
            assert!((*got as f64 - want).abs() <= tol, "{i}");
        }
        // Same step, same λ (a resumed run repeats it); other steps draw anew.
        assert_eq!(l, mixup_lambda(0.4, cfg.seed, 2, 5).unwrap());
        let others: Vec<f64> = (0..8)
            .map(|s| mixup_lambda(0.4, cfg.seed, 2, s).unwrap())
            .collect();
        assert!(others.windows(2).any(|w| w[0] != w[1]), "{others:?}");
    }

    #[test]
    fn smoothing_pulls_targets_towards_one_half() {
        let (x, y) = pair();
        let cfg = TrainConfig {
            label_smoothing: 0.1,
            ..TrainConfig::default()
        };
        let (mx, my) = training_pair(&x, &y, &cfg, 0, 0).unwrap();
        assert_eq!(values(&mx), values(&x));
        let want = [0.95f32, 0.05, 0.05, 0.95];
        for (g, w) in values(&my).iter().zip(want) {
            assert!((g - w).abs() <= 1e-6, "{g} vs {w}");
        }
    }
}
