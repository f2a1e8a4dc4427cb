use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{Augment, DataError, ImageSet, Normalize, Result};

/// Settings of a [`Batcher`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatcherConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Visit images in a random order (training) or in index order (evaluation).
    pub shuffle: bool,
    /// Run seed.
    pub seed: u64,
    /// Epoch number: with the seed, it alone decides the order and augmentations.
    pub epoch: u64,
    /// Augmentation (training only); `None` = none.
    pub augment: Option<Augment>,
    /// Pixel normalisation.
    pub normalize: Normalize,
    /// Use only the first `limit` images of the (shuffled) order.
    pub limit: Option<usize>,
    /// Drop a last, smaller batch.
    pub drop_last: bool,
}

/// One batch: images `x` `[B, 1, H, W]` f32, labels `y` `[B]` f32 (0.0/1.0), and the
/// split indices of its images.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Images, normalised.
    pub x: Tensor,
    /// Labels as floats.
    pub y: Tensor,
    /// Positions of the images in their split.
    pub indices: Vec<usize>,
}

/// An iterator of [`Batch`]es over an [`ImageSet`].
///
/// Deterministic: the order comes from a ChaCha8 stream keyed by `(seed, epoch)` and
/// each image's augmentation from one keyed by `(seed, epoch, image index)`, so the
/// batches do not depend on thread count, and a resumed run sees the same batches
/// as an uninterrupted one without saving any RNG state.
#[derive(Debug)]
pub struct Batcher<'a> {
    set: &'a ImageSet,
    cfg: BatcherConfig,
    order: Vec<usize>,
    pos: usize,
    device: Device,
}

impl<'a> Batcher<'a> {
    /// A batcher over `set`, producing tensors on `device`.
    pub fn new(set: &'a ImageSet, cfg: BatcherConfig, device: &Device) -> Result<Self> {
        if cfg.batch_size == 0 {
            return Err(DataError::Invalid {
                name: "batch size".into(),
                reason: "must be at least 1".into(),
            });
        }
        if !(cfg.normalize.std.is_finite() && cfg.normalize.std > 0.0) {
            return Err(DataError::Invalid {
                name: "normalize.std".into(),
                reason: "must be positive".into(),
            });
        }
        let mut order: Vec<usize> = (0..set.len()).collect();
        if cfg.shuffle {
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            rng.set_stream(cfg.epoch);
            order.shuffle(&mut rng);
        }
        if let Some(limit) = cfg.limit {
            order.truncate(limit);
        }
        if cfg.drop_last {
            let keep = order.len() / cfg.batch_size * cfg.batch_size;
            order.truncate(keep);
        }
        Ok(Self {
            set,
            cfg,
            order,
            pos: 0,
            device: device.clone(),
        })
    }

    /// Number of batches this iterator yields in all.
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.cfg.batch_size)
    }

    /// The image order of this epoch.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    fn build(&self, indices: &[usize]) -> Result<Batch> {
        let (h, w) = (self.set.height, self.set.width);
        let n = h * w;
        let Normalize { mean, std } = self.cfg.normalize;
        let mut buf = vec![0f32; indices.len() * n];
        let fill = |(out, &idx): (&mut [f32], &usize)| {
            let src = self.set.image(idx);
            match self.cfg.augment.filter(|a| !a.is_identity()) {
                None => {
                    for (o, &p) in out.iter_mut().zip(src) {
                        *o = (p as f32 / 255.0 - mean) / std;
                    }
                }
                Some(aug) => {
                    let img: Vec<f32> = src.iter().map(|&p| p as f32 / 255.0).collect();
                    let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed);
                    rng.set_stream(self.cfg.epoch);
                    rng.set_word_pos((idx as u128 + 1) << 20);
                    let img = aug.apply(&img, h, w, &mut rng);
                    for (o, p) in out.iter_mut().zip(img) {
                        *o = (p - mean) / std;
                    }
                }
            }
        };
        if self.cfg.augment.is_some() {
            buf.par_chunks_mut(n).zip(indices.par_iter()).for_each(fill);
        } else {
            buf.chunks_mut(n).zip(indices.iter()).for_each(fill);
        }
        let labels: Vec<f32> = indices.iter().map(|&i| self.set.labels[i] as f32).collect();
        let b = indices.len();
        let x = Tensor::from_vec(buf, (b, 1, h, w), &Device::Cpu)?.to_device(&self.device)?;
        let y = Tensor::from_vec(labels, b, &Device::Cpu)?.to_device(&self.device)?;
        Ok(Batch {
            x,
            y,
            indices: indices.to_vec(),
        })
    }
}

impl Iterator for Batcher<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.order.len() {
            return None;
        }
        let end = (self.pos + self.cfg.batch_size).min(self.order.len());
        let indices = self.order[self.pos..end].to_vec();
        self.pos = end;
        Some(self.build(&indices))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> ImageSet {
        ImageSet {
            images: (0..n * 16).map(|i| (i / 16) as u8).collect(),
            labels: (0..n).map(|i| (i % 2) as u8).collect(),
            height: 4,
            width: 4,
        }
    }

    fn cfg(shuffle: bool, epoch: u64) -> BatcherConfig {
        BatcherConfig {
            batch_size: 4,
            shuffle,
            seed: 3,
            epoch,
            augment: None,
            normalize: Normalize::default(),
            limit: None,
            drop_last: false,
        }
    }

    #[test]
    fn every_image_once_and_deterministic() {
        let s = set(10);
        let a: Vec<usize> = Batcher::new(&s, cfg(true, 1), &Device::Cpu)
            .unwrap()
            .flat_map(|b| b.unwrap().indices)
            .collect();
        let b: Vec<usize> = Batcher::new(&s, cfg(true, 1), &Device::Cpu)
            .unwrap()
            .flat_map(|b| b.unwrap().indices)
            .collect();
        let c: Vec<usize> = Batcher::new(&s, cfg(true, 2), &Device::Cpu)
            .unwrap()
            .flat_map(|b| b.unwrap().indices)
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(
            Batcher::new(&s, cfg(true, 1), &Device::Cpu)
                .unwrap()
                .num_batches(),
            3
        );
    }

    #[test]
    fn values_labels_and_shapes() {
        let s = set(5);
        let batches: Vec<Batch> = Batcher::new(&s, cfg(false, 0), &Device::Cpu)
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].x.dims(), &[4, 1, 4, 4]);
        assert_eq!(batches[1].x.dims(), &[1, 1, 4, 4]);
        let x: Vec<f32> = batches[1].x.flatten_all().unwrap().to_vec1().unwrap();
        assert!((x[0] - (4.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
        let y: Vec<f32> = batches[0].y.to_vec1().unwrap();
        assert_eq!(y, vec![0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn augmentation_is_independent_of_batching() {
        let s = set(6);
        let mut c = cfg(true, 4);
        c.augment = Some(Augment::light());
        let collect = |bs: usize| -> Vec<(usize, Vec<f32>)> {
            let mut c = c;
            c.batch_size = bs;
            let mut out = Vec::new();
            for b in Batcher::new(&s, c, &Device::Cpu).unwrap() {
                let b = b.unwrap();
                let x: Vec<Vec<f32>> = b.x.flatten_from(1).unwrap().to_vec2().unwrap();
                out.extend(b.indices.into_iter().zip(x));
            }
            out.sort_by_key(|p| p.0);
            out
        };
        assert_eq!(collect(2), collect(5));
    }

    #[test]
    fn limit_and_zero_batch() {
        let s = set(10);
        let mut c = cfg(true, 0);
        c.limit = Some(3);
        assert_eq!(Batcher::new(&s, c, &Device::Cpu).unwrap().order().len(), 3);
        c.batch_size = 0;
        assert!(Batcher::new(&s, c, &Device::Cpu).is_err());
    }
}
