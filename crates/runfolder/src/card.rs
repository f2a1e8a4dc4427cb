//! `model.json`: the model card — everything needed to apply a run's model to new
//! images, so that `model.json` + `model.safetensors` alone predict the same on any
//! machine.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{
    EnsembleMember, Metrics, ModelKind, Result, RunConfig, RunFolderError, RunStatus, names,
};

/// The version of the card's layout this crate writes.
pub const MODEL_CARD_FORMAT: u32 = 1;

/// How an input image becomes the network's input tensor.
///
/// 1. Decode to 8-bit gray (PNG/JPEG through the `image` crate's `to_luma8`, DICOM
///    through its VOI/window mapping).
/// 2. Centre-crop to a square of the shorter side and, when that side is not
///    [`Preprocess::source_size`], resize to it with a triangle (bilinear,
///    antialiased) filter — as the image-folder loader does.
/// 3. When [`Preprocess::source_size`] is not [`Preprocess::input_size`], resize
///    bilinearly as PyTorch's `F.interpolate(mode="bilinear", align_corners=False,
///    antialias=False)` does and round to u8 — as training resized its data.
/// 4. `x = (p / 255 − mean) / std`, one channel (`[N, 1, H, W]`); networks that want
///    three channels (ResNet18) map it themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Side of the square images the training data held (28 for PneumoniaMNIST; the
    /// folder loader's size for image folders).
    pub source_size: usize,
    /// Side of the square network input.
    pub input_size: usize,
    /// Input channels of the tensor given to the network.
    pub channels: usize,
    /// `(x − mean) / std` after scaling pixels to [0, 1].
    pub normalize_mean: f32,
    /// See [`Preprocess::normalize_mean`].
    pub normalize_std: f32,
    /// Step 2's filter, in words.
    pub crop_resize: String,
    /// Step 3's filter, in words.
    pub resize: String,
}

/// Wording of [`Preprocess::crop_resize`].
pub const CROP_RESIZE: &str = "centre crop to a square, triangle (bilinear, antialiased) resize";
/// Wording of [`Preprocess::resize`].
pub const RESIZE: &str = "bilinear, align_corners=False, no antialiasing, rounded to u8";

/// The training data the model saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardData {
    /// The file or folder.
    pub source: String,
    /// Its sha256 (npz file, or the folder's file list).
    pub sha256: String,
    /// Images per split.
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Test images.
    pub test: usize,
    /// Fraction of pneumonia images in the training split, when recorded.
    pub prevalence_train: Option<f64>,
    /// Fraction of pneumonia images in the validation split, when recorded.
    pub prevalence_val: Option<f64>,
}

/// A decision threshold chosen on validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardOperatingPoint {
    /// `youden`, `sensitivity_0.95`, `default_0.5`.
    pub name: String,
    /// Pneumonia iff P(pneumonia) ≥ threshold (uncalibrated probability).
    pub threshold: f64,
    /// Sensitivity on validation at this threshold, when recorded.
    pub val_sensitivity: Option<f64>,
    /// Specificity on validation at this threshold, when recorded.
    pub val_specificity: Option<f64>,
}

/// Bias-corrected temperature scaling (Alexandari et al. 2020): `p = σ(scale · logit +
/// bias)`, fitted by maximum likelihood on a labelled split. Calibrated this way the
/// probabilities average to that split's prevalence, which the site check's EM
/// prevalence estimate relies on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CardScaling {
    /// Multiplies the logit.
    pub scale: f64,
    /// Added after scaling.
    pub bias: f64,
    /// The prevalence of the split it was fitted on (the prior the calibrated
    /// probabilities reflect).
    pub reference_prevalence: f64,
}

/// The model's validation logits by class: the reference distribution the site check
/// compares new images' logits with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceLogits {
    /// The split (`val`).
    pub split: String,
    /// Logits of the normal images.
    pub normal: Vec<f32>,
    /// Logits of the pneumonia images.
    pub pneumonia: Vec<f32>,
}

/// `model.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// [`MODEL_CARD_FORMAT`] of the writer.
    pub format: u32,
    /// The network.
    pub network: ModelKind,
    /// The weights' file beside the card.
    pub weights: String,
    /// How images become inputs.
    pub preprocess: Preprocess,
    /// Inference batch size (batches of this size give the run's own probabilities
    /// bit for bit).
    pub batch_size: usize,
    /// Temperature fitted on validation: `prob_calibrated = σ(logit / T)`.
    pub temperature: f64,
    /// Bias-corrected temperature scaling fitted on validation, when recorded.
    #[serde(default)]
    pub scaling: Option<CardScaling>,
    /// Validation logits by class, when recorded.
    #[serde(default)]
    pub reference_logits: Option<ReferenceLogits>,
    /// Thresholds chosen on validation.
    pub operating_points: Vec<CardOperatingPoint>,
    /// The operating point used when none is asked for.
    pub default_operating_point: String,
    /// The training data.
    pub data: CardData,
    /// The epoch whose weights these are, 1-based.
    pub best_epoch: Option<usize>,
    /// Validation ROC AUC of these weights, when recorded.
    pub val_auc: Option<f64>,
    /// The cxr version that trained the model.
    pub cxr_version: String,
    /// Set for an ensemble: its members (all of network [`ModelCard::network`], with
    /// this card's preprocessing); the logit is `Σ weightᵢ · logitᵢ`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<EnsembleMember>>,
    /// Set when the card was derived from an older run's `config.json` and
    /// `metrics.json` rather than written by training: what was derived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived: Option<String>,
}

impl ModelCard {
    /// Reads `path`; errors name the file and the field.
    pub fn read(path: &Path) -> Result<Self> {
        let card: Self = crate::io::read_json(path)?;
        card.check(path)?;
        Ok(card)
    }

    /// Writes `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::io::write_json(path, self)
    }

    /// The card of the run folder `dir`: its `model.json`, or, for runs written before
    /// cards existed, one derived from `config.json` and `metrics.json` (with
    /// [`ModelCard::derived`] saying so). A run that did not finish (diverged, still
    /// running) has no usable model and is an error naming its status.
    pub fn of_run(dir: &Path) -> Result<Self> {
        let path = dir.join(names::MODEL_CARD);
        if path.is_file() {
            return Self::read(&path);
        }
        let config_path = dir.join(names::CONFIG);
        if !config_path.is_file() {
            return Err(RunFolderError::format(
                dir,
                format!(
                    "not a cxr run folder: neither {} nor {} is there",
                    names::MODEL_CARD,
                    names::CONFIG
                ),
            ));
        }
        let config = RunConfig::read(&config_path)?;
        if config.status != RunStatus::Finished {
            let why = config
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            return Err(RunFolderError::format(
                &config_path,
                format!(
                    "the run's status is `{}`{why}; only a finished run has a model to apply",
                    config.status.as_str()
                ),
            ));
        }
        let metrics = Metrics::read(&dir.join(names::METRICS))?;
        Ok(Self::derive(&config, &metrics))
    }

    /// A card from an older run's settings and metrics. The source size is taken as
    /// 28 for npz data (PneumoniaMNIST) and the model's input size for image folders;
    /// validation sensitivity/specificity and the training prevalence were not
    /// recorded then and stay empty.
    pub fn derive(config: &RunConfig, metrics: &Metrics) -> Self {
        let t = &config.train;
        let npz = config.data.source.to_ascii_lowercase().ends_with(".npz");
        Self {
            format: MODEL_CARD_FORMAT,
            network: t.model,
            weights: names::MODEL.into(),
            preprocess: Preprocess {
                source_size: if npz { 28 } else { t.image_size },
                input_size: t.image_size,
                channels: 1,
                normalize_mean: t.normalize_mean,
                normalize_std: t.normalize_std,
                crop_resize: CROP_RESIZE.into(),
                resize: RESIZE.into(),
            },
            batch_size: t.eval_batch_size,
            temperature: metrics.calibration.as_ref().map_or(1.0, |c| c.temperature),
            scaling: None,
            reference_logits: None,
            operating_points: metrics
                .operating_points
                .iter()
                .map(|p| CardOperatingPoint {
                    name: p.name.clone(),
                    threshold: p.threshold,
                    val_sensitivity: None,
                    val_specificity: None,
                })
                .collect(),
            default_operating_point: "youden".into(),
            data: CardData {
                source: config.data.source.clone(),
                sha256: config.data.sha256.clone(),
                train: config.data.train,
                val: config.data.val,
                test: config.data.test,
                prevalence_train: None,
                prevalence_val: metrics.prevalence.as_ref().map(|p| p.val),
            },
            best_epoch: metrics.best_epoch,
            val_auc: Some(metrics.val.auc),
            cxr_version: config.cxr_version.clone(),
            members: None,
            derived: Some(format!(
                "derived from {} and {} (the run predates model.json)",
                names::CONFIG,
                names::METRICS
            )),
        }
    }

    /// The operating point called `name`.
    pub fn operating_point(&self, name: &str) -> Option<&CardOperatingPoint> {
        self.operating_points.iter().find(|p| p.name == name)
    }

    /// Checks the values a predictor relies on.
    fn check(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| Err(RunFolderError::format(path, reason));
        if self.format > MODEL_CARD_FORMAT {
            return bad(format!(
                "format {} is newer than this cxr reads ({MODEL_CARD_FORMAT}); update cxr",
                self.format
            ));
        }
        let p = &self.preprocess;
        if !(1..=4096).contains(&p.source_size) || !(1..=4096).contains(&p.input_size) {
            return bad(format!(
                "preprocess: sizes {} → {} outside 1..=4096",
                p.source_size, p.input_size
            ));
        }
        if p.channels != 1 {
            return bad(format!("preprocess: {} channels (cxr feeds 1)", p.channels));
        }
        if !(p.normalize_std.is_finite() && p.normalize_std > 0.0 && p.normalize_mean.is_finite()) {
            return bad("preprocess: normalisation must be finite with std > 0".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!(
                "temperature {} must be finite and positive",
                self.temperature
            ));
        }
        if let Some(s) = &self.scaling
            && !(s.scale.is_finite()
                && s.bias.is_finite()
                && s.reference_prevalence > 0.0
                && s.reference_prevalence < 1.0)
        {
            return bad("scaling: scale and bias must be finite, the prevalence in (0, 1)".into());
        }
        if let Some(r) = &self.reference_logits
            && r.normal.iter().chain(&r.pneumonia).any(|v| !v.is_finite())
        {
            return bad("reference_logits: every logit must be finite".into());
        }
        if let Some(m) = &self.members {
            let total: f64 = m.iter().map(|m| m.weight).sum();
            if m.is_empty()
                || m.iter().any(|m| !(m.weight.is_finite() && m.weight >= 0.0))
                || (total - 1.0).abs() > 1e-6
            {
                return bad(format!(
                    "members: an ensemble needs at least one member and non-negative weights                      summing to 1 (got {} members, sum {total})",
                    m.len()
                ));
            }
        }
        for op in &self.operating_points {
            if !(0.0..=1.0).contains(&op.threshold) {
                return bad(format!(
                    "operating point `{}`: threshold {} outside [0, 1]",
                    op.name, op.threshold
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OperatingPoint, TrainConfig};

    fn finished_config() -> RunConfig {
        let mut c = RunConfig {
            train: TrainConfig::resnet18("none"),
            status: RunStatus::Finished,
            cxr_version: "0.1.0".into(),
            ..RunConfig::default()
        };
        c.data.source = "/data/pneumoniamnist.npz".into();
        c
    }

    fn metrics() -> Metrics {
        let split = r#"{"accuracy":0.9,"precision":0.9,"recall":0.9,"specificity":0.9,"f1":0.9,
            "auc":0.95,"threshold":0.5,"tp":1,"fp":0,"tn":1,"fn":0}"#;
        serde_json::from_str(&format!(r#"{{"val":{split},"test":{split}}}"#)).unwrap()
    }

    #[test]
    fn derived_card_reads_the_recorded_settings() {
        let mut metrics = metrics();
        metrics.operating_points.push(OperatingPoint {
            name: "youden".into(),
            threshold: 0.7,
            accuracy: 0.9,
            precision: 0.9,
            recall: 0.9,
            specificity: 0.9,
            f1: 0.9,
            tp: 1,
            fp: 0,
            tn: 1,
            fn_: 0,
        });
        let card = ModelCard::derive(&finished_config(), &metrics);
        assert_eq!(card.preprocess.source_size, 28);
        assert_eq!(card.preprocess.input_size, 64);
        assert_eq!(card.operating_point("youden").unwrap().threshold, 0.7);
        assert!(card.derived.is_some());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(names::MODEL_CARD);
        card.write(&path).unwrap();
        assert_eq!(ModelCard::read(&path).unwrap(), card);
    }

    #[test]
    fn a_diverged_run_has_no_card() {
        let dir = tempfile::tempdir().unwrap();
        let config = RunConfig {
            status: RunStatus::Diverged,
            error: Some("loss is NaN at epoch 2".into()),
            ..finished_config()
        };
        config.write(&dir.path().join(names::CONFIG)).unwrap();
        let e = ModelCard::of_run(dir.path()).unwrap_err().to_string();
        assert!(e.contains("diverged") && e.contains("NaN"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = ModelCard::of_run(empty.path()).unwrap_err().to_string();
        assert!(e.contains("not a cxr run folder"), "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        let card = ModelCard::derive(&finished_config(), &metrics());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(names::MODEL_CARD);
        let mut bad = card.clone();
        bad.temperature = -1.0;
        bad.write(&path).unwrap();
        let e = ModelCard::read(&path).unwrap_err().to_string();
        assert!(e.contains("temperature") && e.contains("model.json"), "{e}");
    }
}
