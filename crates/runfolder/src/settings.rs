//! The settings of a training run, as `config.json` records them under `train`.

use serde::{Deserialize, Serialize};

use crate::{Result, RunFolderError};

/// Which Adam variant to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `torch.optim.Adam`: weight decay (if any) is added to the gradient (L2).
    Adam,
    /// `torch.optim.AdamW`: decoupled weight decay, `θ ← θ(1 − lr·wd)` before the step.
    AdamW,
}

/// Hyper-parameters of the Adam optimizer (`cxr-train`'s `Adam`); absent values read
/// as PyTorch's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamConfig {
    /// Variant: L2 (`adam`) or decoupled (`adamw`) weight decay.
    pub kind: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// β₁, the first-moment decay.
    pub beta1: f64,
    /// β₂, the second-moment decay.
    pub beta2: f64,
    /// ε added to the denominator.
    pub eps: f64,
    /// Weight decay (0 disables it).
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    /// PyTorch's `Adam` defaults with lr 1e-3: β = (0.9, 0.999), ε = 1e-8, no decay.
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Numeric type of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 weights and activations (the default). On CUDA GPUs of compute capability 8.0
    /// and newer the matrix multiplications (and the convolutions candle runs as them)
    /// round their inputs to TF32 (10-bit mantissa), as PyTorch's cuDNN convolutions do
    /// by default; on the CPU and Metal this is plain f32.
    #[default]
    F32,
    /// f32 with TF32 off on CUDA: every product in full f32 (`--precision f32-strict`);
    /// the same as [`Precision::F32`] on the CPU and Metal.
    #[serde(rename = "f32-strict")]
    F32Strict,
    /// bf16 autocast of the forward pass, f32 master weights and loss (CUDA sm80+, Metal).
    Bf16,
    /// f16 autocast with dynamic loss scaling, f32 master weights and loss.
    F16,
}

impl Precision {
    /// The name used on the command line and in `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F32Strict => "f32-strict",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    /// Whether the forward pass runs in a half type (bf16 or f16 autocast).
    pub fn is_half(self) -> bool {
        matches!(self, Self::Bf16 | Self::F16)
    }

    /// Parses `f32`, `f32-strict`, `bf16` or `f16` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Self::F32),
            "f32-strict" | "fp32-strict" => Ok(Self::F32Strict),
            "bf16" => Ok(Self::Bf16),
            "f16" | "fp16" => Ok(Self::F16),
            other => Err(RunFolderError::Setting {
                field: "precision".into(),
                reason: format!("expected f32, f32-strict, bf16 or f16, got `{other}`"),
            }),
        }
    }
}

/// Which network to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// The seed study's 3-block CNN (`cxr_models::SeedCnn`).
    Cnn,
    /// torchvision's ResNet18 with a one-logit head (`cxr_models::ResNet18`).
    Resnet18,
}

impl ModelKind {
    /// The name used on the command line and in run folders.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cnn => "cnn",
            Self::Resnet18 => "resnet18",
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
    /// Random resized crop 0.6–1, rotation ±15°, brightness ±0.2, contrast ±0.4.
    Strong,
}

/// Which epoch's weights a run keeps as its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepEpoch {
    /// The epoch with the highest validation AUC (the seed recipe).
    #[default]
    Best,
    /// The last epoch: where a one-cycle schedule has annealed to (fastai's
    /// `fine_tune` keeps it). A validation AUC near 1 ranks epochs by noise; the
    /// ablation in `docs/headline.md` measures what picking by it costs.
    Last,
}

impl KeepEpoch {
    /// The name used on the command line and in `config.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Best => "best",
            Self::Last => "last",
        }
    }
}

/// Learning-rate schedule over a training phase (see [`TrainConfig::freeze_epochs`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Schedule {
    /// The configured learning rate throughout (the seed recipe).
    #[default]
    Constant,
    /// fastai's / PyTorch's one-cycle policy (`cxr-train`'s `OneCycle`): cosine warm-up from
    /// `lr / div` to `lr` over the first `pct_start` of the phase, cosine annealing to
    /// `lr / div_final`, and Adam's β₁ cycled 0.95 → 0.85 → 0.95 against it.
    OneCycle {
        /// Fraction of the phase spent warming up.
        pct_start: f64,
        /// Initial learning rate = `lr / div`.
        div: f64,
        /// Final learning rate = `lr / div_final`.
        div_final: f64,
    },
}

fn default_weights() -> String {
    "none".into()
}

fn default_lr_mult() -> f64 {
    1.0
}

/// Every setting of a training run; written to `config.json`. A setting absent from
/// a file (written by an older version) reads as the seed recipe's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
    /// Initial weights (ResNet18 only): `none` (from scratch), `hub:owner/name[@rev]`
    /// or a `.safetensors` path — see `cxr_models::WeightsSource`.
    #[serde(default = "default_weights")]
    pub weights: String,
    /// Epochs trained first with the body frozen (head and BatchNorm layers only,
    /// fastai's `fine_tune`); [`TrainConfig::epochs`] more follow with everything
    /// unfrozen. ResNet18 only.
    #[serde(default)]
    pub freeze_epochs: usize,
    /// Discriminative learning rates once unfrozen (ResNet18): the head gets `lr`, the
    /// earliest layer group `lr / lr_mult`, the middle group their geometric mean
    /// (fastai's `slice(lr / lr_mult, lr)`); 1 = one rate for all.
    #[serde(default = "default_lr_mult")]
    pub lr_mult: f64,
    /// Learning-rate schedule of each phase.
    #[serde(default)]
    pub schedule: Schedule,
    /// Which epoch's weights become the model (absent in configs written before it
    /// existed, which kept the best).
    #[serde(default)]
    pub keep: KeepEpoch,
    /// Mixup (Zhang et al., 2018) with this Beta(α, α) parameter: each training batch
    /// is blended with itself in reverse order, images and labels alike, by one λ drawn
    /// per batch; `None` = off (absent in configs written before it existed).
    #[serde(default)]
    pub mixup: Option<f64>,
    /// Label smoothing ε (Szegedy et al., 2016): training targets 0 and 1 become ε/2
    /// and 1 − ε/2; 0 = off (absent in configs written before it existed).
    #[serde(default)]
    pub label_smoothing: f64,
    /// An exponential moving average of the weights (Polyak averaging as TensorFlow's
    /// `ExponentialMovingAverage` does it) with this decay: after each optimizer step
    /// the average moves towards the weights by `1 − min(decay, (1 + n) / (10 + n))`
    /// at update `n`, BatchNorm's running statistics included. Validation, the kept
    /// epoch and the model use the average; training continues from the raw weights.
    /// `None` = off (absent in configs written before it existed).
    #[serde(default)]
    pub ema: Option<f64>,
    /// Progressive self-knowledge distillation (PS-KD, Kim et al., 2021) with this
    /// final weight α_T: at epoch `t` of `T` (0-based) each training image's target is
    /// `(1 − α_t)·y + α_t·p`, `p` the network's own probability for it in the previous
    /// epoch and `α_t = α_T·(t + 1)/T`. `None` = off (absent in configs written before
    /// it existed).
    #[serde(default)]
    pub self_distillation: Option<f64>,
    /// Run a learning-rate range test before training and write `lr_find.csv` and
    /// `lr_find.json` (the weights are restored afterwards).
    #[serde(default)]
    pub lr_find: bool,
    /// Drop training images that duplicate (exactly or nearly) a validation or test
    /// image, and all but the first copy of duplicates within the training split.
    #[serde(default)]
    pub exclude_duplicates: bool,
    /// Folder data: draw the validation split from the training split by patient, this
    /// fraction of each class's training images (stratified, seeded by
    /// [`TrainConfig::seed`]); the given validation split is then not used.
    #[serde(default)]
    pub val_from_train: Option<f64>,
    /// Folder data: patient ids from this regular expression's one capture group,
    /// matched against each file name; `None` (and no [`TrainConfig::patients`]) = the
    /// Kaggle names (`cxr_data::KAGGLE_PATIENT_PATTERN`).
    #[serde(default)]
    pub group_pattern: Option<String>,
    /// Folder data: patient ids from this CSV table (columns `path` or `file`, and
    /// `patient`) instead of a pattern.
    #[serde(default)]
    pub patients: Option<String>,
    /// Train even though a patient has images in more than one split.
    #[serde(default)]
    pub allow_patient_overlap: bool,
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
            weights: default_weights(),
            freeze_epochs: 0,
            lr_mult: 1.0,
            schedule: Schedule::Constant,
            keep: KeepEpoch::Best,
            mixup: None,
            label_smoothing: 0.0,
            ema: None,
            self_distillation: None,
            lr_find: false,
            exclude_duplicates: false,
            val_from_train: None,
            group_pattern: None,
            patients: None,
            allow_patient_overlap: false,
        }
    }
}

impl TrainConfig {
    /// The ResNet18 recipe. Pretrained (`weights` not `none`): fastai's `fine_tune` —
    /// 1 frozen epoch then `epochs` unfrozen, lr 2e-3 halved after unfreezing,
    /// discriminative rates (`lr_mult` 100), one-cycle (`pct_start` 0.3, `div` 5),
    /// AdamW with weight decay 0.01. From scratch: 10 epochs, all layers from the start,
    /// AdamW 1e-3 with weight decay 0.01 and PyTorch's `OneCycleLR` defaults
    /// (`pct_start` 0.3, `div` 25, `div_final` 1e4), label smoothing 0.1 (see
    /// cxr's docs/headline.md for the ablation). Both: 64×64 input, light
    /// augmentation, batch 64, pixels in [0, 1] (ImageNet normalisation is part of the
    /// model input, see `cxr_models::imagenet_input`). Both keep the last epoch's
    /// weights, where the one-cycle schedule ends.
    pub fn resnet18(weights: &str) -> Self {
        let pretrained = !weights.trim().eq_ignore_ascii_case("none");
        Self {
            model: ModelKind::Resnet18,
            epochs: if pretrained { 5 } else { 10 },
            optimizer: AdamConfig {
                kind: OptimizerKind::AdamW,
                lr: if pretrained { 2e-3 } else { 1e-3 },
                weight_decay: 0.01,
                ..AdamConfig::default()
            },
            image_size: 64,
            augment: AugmentPreset::Light,
            normalize_mean: 0.0,
            normalize_std: 1.0,
            weights: weights.to_string(),
            freeze_epochs: usize::from(pretrained),
            lr_mult: if pretrained { 100.0 } else { 1.0 },
            keep: KeepEpoch::Last,
            label_smoothing: if pretrained { 0.0 } else { 0.1 },
            schedule: Schedule::OneCycle {
                pct_start: 0.3,
                div: if pretrained { 5.0 } else { 25.0 },
                div_final: if pretrained { 1e5 } else { 1e4 },
            },
            ..Self::default()
        }
    }

    /// Frozen plus unfrozen epochs: the epochs the run trains in all.
    pub fn total_epochs(&self) -> usize {
        self.freeze_epochs + self.epochs
    }

    /// Checks every value, naming the offending setting. The syntax of
    /// [`TrainConfig::weights`] is `cxr-models`' to check (`WeightsSource`'s parser).
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| {
            Err(RunFolderError::Setting {
                field: field.into(),
                reason,
            })
        };
        if self.total_epochs() == 0 {
            return bad(
                "epochs",
                "must be at least 1 (or 0 after at least one --freeze-epochs epoch)".into(),
            );
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
        if let Some(f) = self.val_from_train
            && !(f > 0.0 && f < 1.0)
        {
            return bad(
                "val-from-train",
                format!("the fraction must lie in (0, 1), got {f}"),
            );
        }
        if let Some(a) = self.mixup
            && !(a.is_finite() && a > 0.0)
        {
            return bad(
                "mixup",
                format!("the Beta parameter α must be a positive number, got {a}"),
            );
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return bad(
                "label-smoothing",
                format!("ε must lie in [0, 0.5), got {}", self.label_smoothing),
            );
        }
        if let Some(d) = self.ema
            && !(d > 0.0 && d < 1.0)
        {
            return bad("ema", format!("the decay must lie in (0, 1), got {d}"));
        }
        if let Some(a) = self.self_distillation {
            if !(a > 0.0 && a <= 1.0) {
                return bad(
                    "self-distill",
                    format!("the final weight α_T must lie in (0, 1], got {a}"),
                );
            }
            if self.mixup.is_some() {
                return bad(
                    "self-distill",
                    "mixup blends two images into one, which has no past prediction of \
                     its own: use one or the other"
                        .into(),
                );
            }
        }
        if self.group_pattern.is_some() && self.patients.is_some() {
            return bad(
                "patients",
                "patient ids come from a table or a pattern: give --patients or --group-pattern, not both".into(),
            );
        }
        let no_weights = self.weights.trim().eq_ignore_ascii_case("none");
        if !(self.lr_mult.is_finite() && self.lr_mult >= 1.0) {
            return bad(
                "lr-mult",
                format!("must be a number ≥ 1, got {}", self.lr_mult),
            );
        }
        if let Schedule::OneCycle {
            pct_start,
            div,
            div_final,
        } = self.schedule
            && !(pct_start > 0.0
                && pct_start < 1.0
                && div.is_finite()
                && div >= 1.0
                && div_final.is_finite()
                && div_final >= 1.0)
        {
            return bad(
                "schedule",
                format!(
                    "one-cycle needs 0 < pct_start < 1 and div, div_final ≥ 1, got {pct_start}, {div}, {div_final}"
                ),
            );
        }
        if self.model == ModelKind::Cnn {
            if !no_weights {
                return bad(
                    "weights",
                    format!(
                        "only resnet18 loads pretrained weights; the cnn trains from scratch (got `{}`)",
                        self.weights
                    ),
                );
            }
            if self.freeze_epochs > 0 {
                return bad(
                    "freeze-epochs",
                    "the cnn has no pretrained body to freeze".into(),
                );
            }
        }
        if self.model == ModelKind::Resnet18 {
            if self.batch_size < 2 {
                return bad(
                    "batch-size",
                    "resnet18 needs at least 2 images per batch (BatchNorm batch statistics)"
                        .into(),
                );
            }
            if self.image_size < 28 {
                return bad(
                    "image-size",
                    format!("resnet18 needs at least 28 px, got {}", self.image_size),
                );
            }
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
            (
                TrainConfig {
                    val_from_train: Some(1.0),
                    ..Default::default()
                },
                "val-from-train",
            ),
            (
                TrainConfig {
                    val_from_train: Some(0.0),
                    ..Default::default()
                },
                "val-from-train",
            ),
            (
                TrainConfig {
                    group_pattern: Some("(x)".into()),
                    patients: Some("p.csv".into()),
                    ..Default::default()
                },
                "patients",
            ),
        ];
        for (cfg, field) in cases {
            match cfg.validate() {
                Err(RunFolderError::Setting { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
