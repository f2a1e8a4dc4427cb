//! `metrics.json`: the finished run's validation and test metrics.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::io::{format_err, read};

/// Threshold metrics of one split as stored in `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitMetrics {
    /// Accuracy.
    pub accuracy: f64,
    /// Precision (positive predictive value).
    pub precision: f64,
    /// Recall (sensitivity).
    pub recall: f64,
    /// Specificity.
    pub specificity: f64,
    /// F1 score.
    pub f1: f64,
    /// ROC AUC.
    pub auc: f64,
    /// Decision threshold on P(pneumonia).
    pub threshold: f64,
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Lower end of the 95 % DeLong interval of the AUC, when recorded.
    #[serde(default)]
    pub auc_ci_low: Option<f64>,
    /// Upper end of the 95 % DeLong interval of the AUC, when recorded.
    #[serde(default)]
    pub auc_ci_high: Option<f64>,
    /// Average precision (area under the PR curve), when recorded.
    #[serde(default)]
    pub average_precision: Option<f64>,
    /// Brier score, when recorded.
    #[serde(default)]
    pub brier: Option<f64>,
    /// Log loss, when recorded.
    #[serde(default)]
    pub log_loss: Option<f64>,
    /// Top-label expected calibration error (15 bins), when recorded.
    #[serde(default)]
    pub ece: Option<f64>,
    /// Positive-class expected calibration error (15 bins), when recorded.
    #[serde(default)]
    pub ece_pos: Option<f64>,
    /// Maximum calibration error (15 bins), when recorded.
    #[serde(default)]
    pub mce: Option<f64>,
}

/// `metrics.json` → `calibration`: temperature scaling fitted on validation and
/// scored on test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Fitted temperature (logits are divided by it).
    pub temperature: f64,
    /// Top-label ECE before scaling.
    pub ece_before: f64,
    /// Top-label ECE after scaling.
    pub ece_after: f64,
    /// Positive-class ECE before scaling.
    #[serde(default)]
    pub ece_pos_before: Option<f64>,
    /// Positive-class ECE after scaling.
    #[serde(default)]
    pub ece_pos_after: Option<f64>,
    /// Brier score before scaling.
    pub brier_before: f64,
    /// Brier score after scaling.
    pub brier_after: f64,
    /// Log loss before scaling.
    pub log_loss_before: f64,
    /// Log loss after scaling.
    pub log_loss_after: f64,
    /// The split the figures above are scored on (`test`), when recorded.
    #[serde(default)]
    pub split: Option<String>,
    /// The split the temperature was fitted on (`val`), when recorded.
    #[serde(default)]
    pub fitted_on: Option<String>,
}

/// `metrics.json` → `operating_points[]`: a threshold chosen on validation and scored
/// on test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// How the threshold was chosen (`youden`, `sensitivity_0.95`, `default_0.5`).
    pub name: String,
    /// Predict pneumonia iff P ≥ threshold.
    pub threshold: f64,
    /// Accuracy on test.
    pub accuracy: f64,
    /// Precision on test.
    pub precision: f64,
    /// Recall (sensitivity) on test.
    pub recall: f64,
    /// Specificity on test.
    pub specificity: f64,
    /// F1 on test.
    pub f1: f64,
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

/// A figure with its bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Figure on the original data.
    pub estimate: f64,
    /// Lower percentile.
    pub low: f64,
    /// Upper percentile.
    pub high: f64,
}

/// `metrics.json` → `bootstrap.ci`: stratified-bootstrap intervals on test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapCi {
    /// Resamples drawn.
    pub resamples: usize,
    /// Seed of the resampling, when recorded.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Interval level, e.g. 0.95.
    pub confidence: f64,
    /// Threshold the figures use.
    pub threshold: f64,
    /// Accuracy.
    pub accuracy: Interval,
    /// Sensitivity.
    pub sensitivity: Interval,
    /// Specificity.
    pub specificity: Interval,
    /// F1.
    pub f1: Interval,
    /// Top-label ECE.
    pub ece: Interval,
}

/// `metrics.json` → `bootstrap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// The split resampled (`test`).
    #[serde(default)]
    pub split: String,
    /// Seed of the resampling.
    #[serde(default)]
    pub seed: u64,
    /// The intervals.
    pub ci: BootstrapCi,
}

/// `metrics.json` → `prevalence`: the fraction of pneumonia images per split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prevalence {
    /// Validation.
    pub val: f64,
    /// Test.
    pub test: f64,
}

/// `metrics.json` → `timing`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Wall-clock seconds of the training loop (all epochs with their validation).
    pub train_seconds: f64,
    /// Training images per second of the optimizer steps alone, when recorded.
    #[serde(default)]
    pub train_images_per_second: Option<f64>,
}

/// `metrics.json` → `members[]`: an ensemble's member scored alone beside the
/// ensemble, on the same images (what the ensemble adds; nothing here is used to
/// build it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberScore {
    /// The member's run folder, as `model.json` lists it.
    pub run: String,
    /// The member's seed.
    pub seed: u64,
    /// The member's validation ROC AUC.
    pub val_auc: f64,
    /// The member's test ROC AUC.
    pub test_auc: f64,
    /// Test AUC of the ensemble minus the member's.
    pub test_auc_gain: f64,
    /// The paired DeLong test of that difference: z.
    pub delong_z: f64,
    /// Its two-sided p-value.
    pub delong_p: f64,
}

/// `metrics.json`: the best epoch's weights scored on validation and test. Written by
/// `cxr-train`; every field but `val` and `test` may be absent in older folders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Validation metrics at the run's threshold.
    pub val: SplitMetrics,
    /// Test metrics at the run's threshold.
    pub test: SplitMetrics,
    /// Temperature scaling fitted on validation, scored on test.
    #[serde(default)]
    pub calibration: Option<Calibration>,
    /// Thresholds chosen on validation, scored on test.
    #[serde(default)]
    pub operating_points: Vec<OperatingPoint>,
    /// Bootstrap intervals on test.
    #[serde(default)]
    pub bootstrap: Option<Bootstrap>,
    /// Class balance of validation and test.
    #[serde(default)]
    pub prevalence: Option<Prevalence>,
    /// The epoch whose weights were kept (best validation AUC), 1-based.
    #[serde(default)]
    pub best_epoch: Option<usize>,
    /// The network (`cnn`, `resnet18`).
    #[serde(default)]
    pub model: Option<String>,
    /// Training time.
    #[serde(default)]
    pub timing: Option<Timing>,
    /// An ensemble's members, each scored alone against the ensemble (empty for a
    /// trained network).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberScore>,
}

impl Metrics {
    /// Reads `path`; errors name the file and the object or field that is missing or
    /// malformed.
    pub fn read(path: &Path) -> Result<Self> {
        let value: serde_json::Value =
            serde_json::from_str(&read(path)?).map_err(|e| format_err(path, e.to_string()))?;
        let field = |key: &str| -> Result<Option<serde_json::Value>> {
            match value.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => Ok(Some(v.clone())),
            }
        };
        fn parse<T: DeserializeOwned>(path: &Path, key: &str, v: serde_json::Value) -> Result<T> {
            serde_json::from_value(v).map_err(|e| format_err(path, format!("field `{key}`: {e}")))
        }
        let split = |key: &str| -> Result<SplitMetrics> {
            let v =
                field(key)?.ok_or_else(|| format_err(path, format!("missing object `{key}`")))?;
            parse(path, key, v)
        };
        let opt = |key: &str| -> Result<Option<serde_json::Value>> { field(key) };
        Ok(Self {
            val: split("val")?,
            test: split("test")?,
            calibration: opt("calibration")?
                .map(|v| parse(path, "calibration", v))
                .transpose()?,
            operating_points: opt("operating_points")?
                .map(|v| parse(path, "operating_points", v))
                .transpose()?
                .unwrap_or_default(),
            bootstrap: opt("bootstrap")?
                .map(|v| parse(path, "bootstrap", v))
                .transpose()?,
            prevalence: opt("prevalence")?
                .map(|v| parse(path, "prevalence", v))
                .transpose()?,
            best_epoch: opt("best_epoch")?
                .map(|v| parse(path, "best_epoch", v))
                .transpose()?,
            model: opt("model")?.map(|v| parse(path, "model", v)).transpose()?,
            timing: opt("timing")?
                .map(|v| parse(path, "timing", v))
                .transpose()?,
            members: opt("members")?
                .map(|v| parse(path, "members", v))
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// Writes `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::io::write_json(path, self)
    }
}
