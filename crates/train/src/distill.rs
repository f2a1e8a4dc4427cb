//! Progressive self-knowledge distillation ([`TrainConfig::self_distillation`]; PS-KD,
//! Kim et al., ICCV 2021): the network is its own teacher. Each training image's target
//! at epoch `t` (0-based, of `T`) is `(1 − α_t)·y + α_t·p`, where `y` is its label
//! (smoothed when label smoothing is on), `p` the network's probability for that image
//! when it last trained on it, and `α_t = α_T·(t + 1)/T`. An image not trained on yet
//! keeps its label, as the authors' code does in the first epoch.
//!
//! The probabilities come from the training forward passes themselves (augmented
//! image, training mode), so the teacher costs no extra pass; they are read back once
//! per epoch and saved in the checkpoint, so a resumed run repeats them exactly.

use candle_core::{DType, Device, Tensor};

use crate::{Result, TrainConfig, TrainError};

/// The past predictions of every training image, by position in the training set.
pub(crate) struct SelfDistillation {
    alpha_final: f64,
    epochs: usize,
    /// σ(logit) of each image when last trained on; NaN before its first step.
    past: Vec<f32>,
    /// This epoch's logits (detached), read into `past` when the epoch ends so that
    /// an epoch's targets all come from earlier epochs.
    pending: Vec<(Vec<usize>, Tensor)>,
}

impl SelfDistillation {
    /// The state for `cfg` and a training set of `len` images (none when
    /// [`TrainConfig::self_distillation`] is off).
    pub(crate) fn new(cfg: &TrainConfig, len: usize) -> Option<Self> {
        cfg.self_distillation.map(|alpha_final| Self {
            alpha_final,
            epochs: cfg.total_epochs().max(1),
            past: vec![f32::NAN; len],
            pending: Vec::new(),
        })
    }

    /// `α_t` of epoch `epoch` (0-based): `α_T·(epoch + 1)/T`.
    pub(crate) fn alpha(&self, epoch: usize) -> f64 {
        self.alpha_final * (epoch + 1) as f64 / self.epochs as f64
    }

    /// The targets of a step on the images at `indices`: `y` moved towards their past
    /// predictions by `α_t` (unchanged for images without one).
    pub(crate) fn targets(&self, y: &Tensor, indices: &[usize], epoch: usize) -> Result<Tensor> {
        let alpha = self.alpha(epoch) as f32;
        let mut weight = Vec::with_capacity(indices.len());
        let mut teacher = Vec::with_capacity(indices.len());
        for &i in indices {
            let p = self.past[i];
            if p.is_nan() {
                weight.push(0.0f32);
                teacher.push(0.0f32);
            } else {
                weight.push(alpha);
                teacher.push(p);
            }
        }
        let dev = y.device();
        let w = Tensor::new(weight.as_slice(), dev)?;
        let p = Tensor::new(teacher.as_slice(), dev)?;
        // (1 − w)·y + w·p, as y + w·(p − y).
        Ok((y + (w * (p - y)?)?)?)
    }

    /// Records a step's logits for the images at `indices` (no host synchronisation).
    pub(crate) fn record(&mut self, logits: &Tensor, indices: &[usize]) -> Result<()> {
        let logits = logits.detach().to_dtype(DType::F32)?;
        self.pending.push((indices.to_vec(), logits));
        Ok(())
    }

    /// Moves the epoch's recorded logits into the past predictions (one read per step's
    /// logits, at the epoch's end).
    pub(crate) fn end_epoch(&mut self) -> Result<()> {
        for (indices, logits) in self.pending.drain(..) {
            let z = logits.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
            for (i, z) in indices.into_iter().zip(z) {
                self.past[i] = 1.0 / (1.0 + (-z).exp());
            }
        }
        Ok(())
    }

    /// The past predictions, for the checkpoint.
    pub(crate) fn past(&self) -> &[f32] {
        &self.past
    }

    /// Replaces the past predictions by a checkpoint's, which must cover the training
    /// set; `source` names the file in errors.
    pub(crate) fn restore(
        &mut self,
        saved: Option<&[f32]>,
        source: &std::path::Path,
    ) -> Result<()> {
        let bad = |reason: String| TrainError::Checkpoint {
            path: source.to_path_buf(),
            reason,
        };
        let saved = saved.ok_or_else(|| bad("no past predictions for self-distillation".into()))?;
        if saved.len() != self.past.len() {
            return Err(bad(format!(
                "{} past predictions for self-distillation, the training set has {} images",
                saved.len(),
                self.past.len()
            )));
        }
        if let Some(p) = saved
            .iter()
            .find(|p| !p.is_nan() && !(0.0..=1.0).contains(*p))
        {
            return Err(bad(format!(
                "past prediction {p} for self-distillation is not a probability"
            )));
        }
        self.past.copy_from_slice(saved);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(len: usize) -> SelfDistillation {
        let cfg = TrainConfig {
            self_distillation: Some(0.8),
            epochs: 10,
            ..TrainConfig::default()
        };
        SelfDistillation::new(&cfg, len).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.to_vec1().unwrap()
    }

    #[test]
    fn off_keeps_no_state() {
        assert!(SelfDistillation::new(&TrainConfig::default(), 5).is_none());
    }

    #[test]
    fn alpha_grows_linearly_to_its_final_value() {
        let s = state(1);
        assert!((s.alpha(0) - 0.08).abs() < 1e-12);
        assert!((s.alpha(4) - 0.4).abs() < 1e-12);
        assert!((s.alpha(9) - 0.8).abs() < 1e-12);
    }

    #[test]
    fn targets_mix_labels_with_the_last_epochs_predictions() {
        let mut s = state(4);
        let y = Tensor::new(&[1f32, 0.0, 0.95], &Device::Cpu).unwrap();
        // Nothing seen yet: the labels themselves.
        assert_eq!(values(&s.targets(&y, &[0, 1, 2], 0).unwrap()), values(&y));
        // Logits recorded in epoch 0 are not used until the epoch ends.
        let z = Tensor::new(&[2f32, -1.0], &Device::Cpu).unwrap();
        s.record(&z, &[2, 0]).unwrap();
        assert_eq!(values(&s.targets(&y, &[0, 1, 2], 0).unwrap()), values(&y));
        s.end_epoch().unwrap();
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        let a = s.alpha(4);
        let want = [
            (1.0 - a) * 1.0 + a * sig(-1.0),
            0.0,
            (1.0 - a) * 0.95 + a * sig(2.0),
        ];
        let got = values(&s.targets(&y, &[0, 1, 2], 4).unwrap());
        for (g, w) in got.iter().zip(want) {
            // f32 arithmetic on values of order 1.
            assert!((*g as f64 - w).abs() <= 1e-6, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn restore_checks_length_and_range() {
        let mut s = state(3);
        let path = std::path::Path::new("run/checkpoint.safetensors");
        let err = s.restore(None, path).unwrap_err().to_string();
        assert!(
            err.contains("checkpoint.safetensors") && err.contains("no past"),
            "{err}"
        );
        let err = s.restore(Some(&[0.5, 0.5]), path).unwrap_err().to_string();
        assert!(
            err.contains("2 past predictions") && err.contains("3 images"),
            "{err}"
        );
        let err = s
            .restore(Some(&[0.5, 1.5, 0.1]), path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1.5"), "{err}");
        s.restore(Some(&[0.25, f32::NAN, 1.0]), path).unwrap();
        assert_eq!(s.past()[0], 0.25);
        assert!(s.past()[1].is_nan());
    }
}
