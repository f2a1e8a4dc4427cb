use serde::{Deserialize, Serialize};

use crate::{AdamConfig, Precision, Result, TrainError};

/// Which network to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// The seed study's 3-block CNN ([`cxr_models::SeedCnn`]).
    Cnn,
}

impl ModelKind {
    /// The name used on the command line and in run folders.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cnn => "cnn",
        }
    }
}

/// Data augmentation preset for training batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AugmentPreset {
    /// No augmentation (the seed recipe).
    None,
    /// Random resized crop 0.85–1, rotation ±10°, brightness/contrast ±0.1.
    Light,
}

/// Every setting of a training run; written to `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The network.
    pub model: ModelKind,
    /// Number of epochs.
    pub epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Batch size for validation and test inference.
    pub eval_batch_size: usize,
    /// Optimizer and its hyper-parameters.
    pub optimizer: AdamConfig,
    /// Seed for weights, shuffling and augmentation.
    pub seed: u64,
    /// Side of the square model input; data of another size is resized (bilinear).
    pub image_size: usize,
    /// Augmentation of training images.
    pub augment: AugmentPreset,
    /// Pixel normalisation after scaling to [0, 1]: `(x − mean) / std`.
    pub normalize_mean: f32,
    /// See [`TrainConfig::normalize_mean`].
    pub normalize_std: f32,
    /// Use only this many training images per epoch (smoke runs); `None` = all.
    pub train_limit: Option<usize>,
    /// Decision threshold on P(pneumonia) for `metrics.json`.
    pub threshold: f64,
    /// Device spec (`cpu`, `cuda[:N]`, `metal`, `auto`).
    pub device: String,
    /// Forward-pass precision: f32, or bf16/f16 autocast on CUDA and Metal (absent in
    /// configs written before it existed, which were f32).
    #[serde(default)]
    pub precision: Precision,
}

impl Default for TrainConfig {
    /// The seed study's recipe: CNN, 15 epochs, batch 64, Adam 1e-3, 28×28, no
    /// augmentation, seed 0, CPU.
    fn default() -> Self {
        Self {
            model: ModelKind::Cnn,
            epochs: 15,
            batch_size: 64,
            eval_batch_size: 256,
            optimizer: AdamConfig::default(),
            seed: 0,
            image_size: 28,
            augment: AugmentPreset::None,
            normalize_mean: 0.5,
            normalize_std: 0.5,
            train_limit: None,
            threshold: 0.5,
            device: "cpu".into(),
            precision: Precision::F32,
        }
    }
}

impl TrainConfig {
    /// Checks every value, naming the offending setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| {
            Err(TrainError::Config {
                field: field.into(),
                reason,
            })
        };
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch-size", "must be at least 1".into());
        }
        if self.eval_batch_size == 0 {
            return bad("eval-batch-size", "must be at least 1".into());
        }
        if !(self.optimizer.lr.is_finite() && self.optimizer.lr > 0.0) {
            return bad(
                "lr",
                format!("must be a positive number, got {}", self.optimizer.lr),
            );
        }
        if !(8..=1024).contains(&self.image_size) {
            return bad(
                "image-size",
                format!("must be in 8..=1024, got {}", self.image_size),
            );
        }
        if !(self.normalize_std.is_finite() && self.normalize_std > 0.0) {
            return bad("normalize-std", "must be positive".into());
        }
        if self.train_limit == Some(0) {
            return bad("limit", "must be at least 1".into());
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return bad(
                "threshold",
                format!("must lie in (0, 1), got {}", self.threshold),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_name_the_field() {
        TrainConfig::default().validate().unwrap();
        let cases: Vec<(TrainConfig, &str)> = vec![
            (
                TrainConfig {
                    epochs: 0,
                    ..Default::default()
                },
                "epochs",
            ),
            (
                TrainConfig {
                    batch_size: 0,
                    ..Default::default()
                },
                "batch-size",
            ),
            (
                TrainConfig {
                    image_size: 2,
                    ..Default::default()
                },
                "image-size",
            ),
            (
                TrainConfig {
                    threshold: 1.0,
                    ..Default::default()
                },
                "threshold",
            ),
            (
                TrainConfig {
                    train_limit: Some(0),
                    ..Default::default()
                },
                "limit",
            ),
        ];
        for (cfg, field) in cases {
            match cfg.validate() {
                Err(TrainError::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
