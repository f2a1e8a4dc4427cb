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

impl Default for BatcherConfig {
    /// Batch size 64, in index order (no shuffle), seed 0, epoch 0, no augmentation,
    /// mean/std 0.5, no limit, last partial batch kept.
    fn default() -> Self {
        Self {
            batch_size: 64,
            shuffle: false,
            seed: 0,
            epoch: 0,
            augment: None,
            normalize: Normalize::default(),
            limit: None,
            drop_last: false,
        }
    }
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
/// Deterministic from `(seed, epoch)` alone:
///
/// - Order: with `shuffle`, `0..N` shuffled (rand's `SliceRandom::shuffle`) by
///   `ChaCha8Rng::seed_from_u64(seed)` on stream `epoch`; without, index order. Then
///   `limit` keeps the first `n` of that order and `drop_last` drops a final partial
///   batch.
/// - Augmentation of image `i`: the same generator (seed, stream `epoch`) moved to
///   word position `(i + 1) · 2²⁰`, so each image has its own block of the stream,
///   apart from the shuffle's words (for sets under ~500 000 images).
///
/// So the batches do not depend on the thread count or the batch size, and a resumed
/// run sees the same batches as an uninterrupted one without saving RNG state.
/// Pixels become `(u8 / 255 − mean) / std` (after augmentation, if any); each batch
/// is built in one host buffer (in parallel with rayon when augmenting) and moved
/// to the device with one `Tensor::from_vec(..).to_device(..)`.
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
                reason: format!("{}: must be finite and positive", cfg.normalize.std),
            });
        }
        if !cfg.normalize.mean.is_finite() {
            return Err(DataError::Invalid {
                name: "normalize.mean".into(),
                reason: format!("{}: must be finite", cfg.normalize.mean),
            });
        }
        if let Some(aug) = &cfg.augment {
            aug.validate()?;
        }
        set.validate()?;
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

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.order.len().saturating_sub(self.pos);
        let n = left.div_ceil(self.cfg.batch_size);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Batcher<'_> {}

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

    fn run(s: &ImageSet, c: BatcherConfig) -> Vec<Batch> {
        Batcher::new(s, c, &Device::Cpu)
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    }

    fn pixels(batches: &[Batch]) -> Vec<f32> {
        batches
            .iter()
            .flat_map(|b| b.x.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect()
    }

    #[test]
    fn augmented_batches_do_not_depend_on_thread_count() {
        let s = ImageSet {
            images: (0..20 * 64).map(|i| (i * 7 % 256) as u8).collect(),
            labels: vec![0; 20],
            height: 8,
            width: 8,
        };
        let mut c = cfg(true, 9);
        c.augment = Some(Augment::light());
        let with = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| pixels(&run(&s, c)))
        };
        let one = with(1);
        assert_eq!(one, with(3));
        // and a resumed epoch equals an uninterrupted one: nothing but (seed, epoch)
        assert_eq!(one, pixels(&run(&s, c)));
        // augmentation changed something, and differs by epoch
        c.augment = None;
        assert_ne!(one, pixels(&run(&s, c)));
        c.augment = Some(Augment::light());
        c.epoch = 10;
        assert_ne!(one, pixels(&run(&s, c)));
    }

    #[test]
    fn drop_last_and_defaults() {
        let s = set(10);
        let d = BatcherConfig::default();
        assert_eq!((d.batch_size, d.shuffle, d.drop_last), (64, false, false));
        assert_eq!(d.augment, None);
        let mut c = cfg(false, 0);
        c.drop_last = true;
        let b = Batcher::new(&s, c, &Device::Cpu).unwrap();
        assert_eq!(b.num_batches(), 2);
        assert_eq!(run(&s, c).iter().map(|b| b.indices.len()).sum::<usize>(), 8);
        // no shuffle: index order
        c.drop_last = false;
        let idx: Vec<usize> = run(&s, c).into_iter().flat_map(|b| b.indices).collect();
        assert_eq!(idx, (0..10).collect::<Vec<_>>());
        // a limit beyond the set is the whole set; an empty set yields nothing
        c.limit = Some(1000);
        assert_eq!(Batcher::new(&s, c, &Device::Cpu).unwrap().num_batches(), 3);
        let empty = set(0);
        assert_eq!(run(&empty, c).len(), 0);
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let s = set(3);
        let mut c = cfg(false, 0);
        c.normalize.std = 0.0;
        assert!(Batcher::new(&s, c, &Device::Cpu).is_err());
        c.normalize = Normalize::default();
        c.augment = Some(Augment {
            rotation_deg: f32::NAN,
            ..Augment::none()
        });
        assert!(Batcher::new(&s, c, &Device::Cpu).is_err());
        c.augment = None;
        let broken = ImageSet {
            images: vec![0; 5],
            ..s
        };
        let e = Batcher::new(&broken, c, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("5 pixel bytes"), "{e}");
    }
}
