use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Result;
use crate::audit::Audit;
use crate::files::{Csv, format_err, json, read, read_optional};

/// Threshold metrics of one split as stored in `metrics.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
}

/// `metrics.json` → `calibration`: temperature scaling fitted on validation and
/// scored on test.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
}

/// `metrics.json` → `operating_points[]`: a threshold chosen on validation and scored
/// on test.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Interval {
    /// Figure on the original data.
    pub estimate: f64,
    /// Lower percentile.
    pub low: f64,
    /// Upper percentile.
    pub high: f64,
}

/// `metrics.json` → `bootstrap.ci`: stratified-bootstrap intervals on test.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BootstrapCi {
    /// Resamples drawn.
    pub resamples: usize,
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

/// One row of `history.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRow {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Mean validation loss.
    pub val_loss: f64,
    /// Validation ROC AUC.
    pub val_auc: f64,
}

/// One row of `predictions.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRow {
    /// `val` or `test`.
    pub split: String,
    /// Position in its split.
    pub index: usize,
    /// 0 = normal, 1 = pneumonia.
    pub label: u8,
    /// P(pneumonia).
    pub prob: f64,
    /// The model's logit, when recorded.
    pub logit: Option<f64>,
    /// P(pneumonia) after temperature scaling, when recorded.
    pub prob_calibrated: Option<f64>,
}

impl PredictionRow {
    /// Binary cross-entropy of this prediction (probabilities clipped to
    /// [1e-12, 1 − 1e-12]).
    pub fn loss(&self) -> f64 {
        let p = self.prob.clamp(1e-12, 1.0 - 1e-12);
        if self.label == 1 {
            -p.ln()
        } else {
            -(1.0 - p).ln()
        }
    }
}

/// One point of a curve file (`roc.csv`: x = FPR, y = TPR; `pr.csv`: x = recall,
/// y = precision).
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    /// Split the curve belongs to.
    pub split: String,
    /// Horizontal coordinate.
    pub x: f64,
    /// Vertical coordinate.
    pub y: f64,
    /// Threshold (`None` for the PR curve's end point; +∞ for the ROC's start).
    pub threshold: Option<f64>,
}

/// One row of `reliability.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReliabilityRow {
    /// `val`, `test` or `test_calibrated`.
    pub split: String,
    /// Bin number.
    pub bin: usize,
    /// Lower edge.
    pub lower: f64,
    /// Upper edge.
    pub upper: f64,
    /// Predictions in the bin.
    pub count: usize,
    /// Mean predicted P(pneumonia) in the bin.
    pub confidence: f64,
    /// Observed fraction of pneumonia in the bin.
    pub accuracy: f64,
}

/// One row of `lr_find.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct LrFindRow {
    /// Step.
    pub step: usize,
    /// Learning rate.
    pub lr: f64,
    /// Raw loss.
    pub loss: f64,
    /// Smoothed loss.
    pub smoothed_loss: f64,
}

/// A run folder read back from disk.
#[derive(Debug, Clone)]
pub struct RunFolder {
    /// The folder.
    pub dir: PathBuf,
    /// Validation metrics.
    pub val: SplitMetrics,
    /// Test metrics.
    pub test: SplitMetrics,
    /// Best epoch, if recorded.
    pub best_epoch: Option<usize>,
    /// Model name, if recorded.
    pub model: String,
    /// Training seconds, if recorded.
    pub train_seconds: Option<f64>,
    /// Temperature scaling, if recorded.
    pub calibration: Option<Calibration>,
    /// Operating points (thresholds from validation, scored on test); may be empty.
    pub operating_points: Vec<OperatingPoint>,
    /// Bootstrap intervals on test, if recorded.
    pub bootstrap: Option<BootstrapCi>,
    /// Per-epoch history.
    pub history: Vec<EpochRow>,
    /// Every val and test prediction.
    pub predictions: Vec<PredictionRow>,
    /// `config.json` as a JSON value.
    pub config: serde_json::Value,
    /// `roc.csv`, when present.
    pub roc: Option<Vec<CurvePoint>>,
    /// `pr.csv`, when present.
    pub pr: Option<Vec<CurvePoint>>,
    /// `reliability.csv`, when present.
    pub reliability: Option<Vec<ReliabilityRow>>,
    /// `lr_find.csv`, when present.
    pub lr_find: Option<Vec<LrFindRow>>,
    /// The `audit/` files that are present.
    pub audit: Audit,
}

fn opt_field<T: serde::de::DeserializeOwned>(
    path: &Path,
    metrics: &serde_json::Value,
    key: &str,
) -> Result<Option<T>> {
    match metrics.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| format_err(path, format!("field `{key}`: {e}"))),
    }
}

fn curve(path: &Path, header: &str, x: &str, y: &str) -> Result<Option<Vec<CurvePoint>>> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let csv = Csv::parse(path, &text, &[header])?;
    let mut out = Vec::with_capacity(csv.rows.len());
    for (line, f) in &csv.rows {
        let t = csv.text(f, "threshold")?;
        let threshold = match t {
            "" => None,
            "inf" => Some(f64::INFINITY),
            _ => Some(crate::files::parse(path, *line, "threshold", t)?),
        };
        out.push(CurvePoint {
            split: csv.text(f, "split")?.to_string(),
            x: csv.unit(*line, f, x)?,
            y: csv.unit(*line, f, y)?,
            threshold,
        });
    }
    Ok(Some(out))
}

impl RunFolder {
    /// Reads and checks a run folder. `metrics.json`, `history.csv`,
    /// `predictions.csv` and `config.json` are required; the curve files,
    /// `lr_find.csv` and the `audit/` files are optional (absent → `None`) but must be
    /// well-formed when present.
    pub fn open(dir: &Path) -> Result<Self> {
        let mpath = dir.join("metrics.json");
        let metrics: serde_json::Value = json(&mpath, &read(&mpath)?)?;
        let split = |name: &str| -> Result<SplitMetrics> {
            let v = metrics
                .get(name)
                .ok_or_else(|| format_err(&mpath, format!("missing object `{name}`")))?;
            serde_json::from_value(v.clone())
                .map_err(|e| format_err(&mpath, format!("`{name}`: {e}")))
        };
        let (val, test) = (split("val")?, split("test")?);
        let calibration = opt_field(&mpath, &metrics, "calibration")?;
        let operating_points =
            opt_field::<Vec<OperatingPoint>>(&mpath, &metrics, "operating_points")?
                .unwrap_or_default();
        let bootstrap = match metrics.get("bootstrap").and_then(|b| b.get("ci")) {
            None => None,
            Some(v) => Some(
                serde_json::from_value(v.clone())
                    .map_err(|e| format_err(&mpath, format!("field `bootstrap.ci`: {e}")))?,
            ),
        };

        let hpath = dir.join("history.csv");
        let htext = read(&hpath)?;
        let h = Csv::parse(&hpath, &htext, &["epoch,train_loss,val_loss,val_auc"])?;
        let mut history = Vec::new();
        for (line, f) in &h.rows {
            history.push(EpochRow {
                epoch: h.get(*line, f, "epoch")?,
                train_loss: h.get(*line, f, "train_loss")?,
                val_loss: h.get(*line, f, "val_loss")?,
                val_auc: h.get(*line, f, "val_auc")?,
            });
        }

        let ppath = dir.join("predictions.csv");
        let ptext = read(&ppath)?;
        let p = Csv::parse(
            &ppath,
            &ptext,
            &[
                "split,index,label,prob,logit,prob_calibrated",
                "split,index,label,prob",
            ],
        )?;
        let full = p.header.len() == 6;
        let mut predictions = Vec::with_capacity(p.rows.len());
        for (line, f) in &p.rows {
            let split = p.text(f, "split")?;
            if split != "val" && split != "test" {
                return Err(format_err(
                    &ppath,
                    format!("line {line}: unknown split `{split}`"),
                ));
            }
            let (logit, prob_calibrated) = if full {
                (
                    Some(p.float(*line, f, "logit")?),
                    Some(p.unit(*line, f, "prob_calibrated")?),
                )
            } else {
                (None, None)
            };
            predictions.push(PredictionRow {
                split: split.to_string(),
                index: p.get(*line, f, "index")?,
                label: p.label(*line, f, "label")?,
                prob: p.unit(*line, f, "prob")?,
                logit,
                prob_calibrated,
            });
        }

        let cpath = dir.join("config.json");
        let config: serde_json::Value = json(&cpath, &read(&cpath)?)?;

        let roc = curve(
            &dir.join("roc.csv"),
            "split,fpr,tpr,threshold",
            "fpr",
            "tpr",
        )?;
        let pr = curve(
            &dir.join("pr.csv"),
            "split,recall,precision,threshold",
            "recall",
            "precision",
        )?;
        let reliability = read_reliability(&dir.join("reliability.csv"))?;
        let lr_find = read_lr_find(&dir.join("lr_find.csv"))?;
        let audit = Audit::open(dir)?;

        Ok(Self {
            dir: dir.to_path_buf(),
            val,
            test,
            best_epoch: metrics["best_epoch"].as_u64().map(|v| v as usize),
            model: metrics["model"].as_str().unwrap_or("unknown").to_string(),
            train_seconds: metrics["timing"]["train_seconds"].as_f64(),
            calibration,
            operating_points,
            bootstrap,
            history,
            predictions,
            config,
            roc,
            pr,
            reliability,
            lr_find,
            audit,
        })
    }

    /// The folder's name (e.g. `cnn-seed0`).
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.dir.display().to_string())
    }

    /// The `k` highest-loss wrong predictions of `split` with the given true label
    /// (label 0: false positives, label 1: false negatives), worst first.
    pub fn top_failures(
        &self,
        split: &str,
        label: u8,
        threshold: f64,
        k: usize,
    ) -> Vec<&PredictionRow> {
        let mut wrong: Vec<&PredictionRow> = self
            .predictions
            .iter()
            .filter(|p| {
                p.split == split && p.label == label && ((p.prob >= threshold) != (label == 1))
            })
            .collect();
        wrong.sort_by(|a, b| b.loss().total_cmp(&a.loss()).then(a.index.cmp(&b.index)));
        wrong.truncate(k);
        wrong
    }
}

fn read_reliability(path: &Path) -> Result<Option<Vec<ReliabilityRow>>> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let csv = Csv::parse(
        path,
        &text,
        &["split,bin,lower,upper,count,confidence,accuracy"],
    )?;
    let mut out = Vec::with_capacity(csv.rows.len());
    for (line, f) in &csv.rows {
        out.push(ReliabilityRow {
            split: csv.text(f, "split")?.to_string(),
            bin: csv.get(*line, f, "bin")?,
            lower: csv.unit(*line, f, "lower")?,
            upper: csv.unit(*line, f, "upper")?,
            count: csv.get(*line, f, "count")?,
            confidence: csv.unit(*line, f, "confidence")?,
            accuracy: csv.unit(*line, f, "accuracy")?,
        });
    }
    Ok(Some(out))
}

fn read_lr_find(path: &Path) -> Result<Option<Vec<LrFindRow>>> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let csv = Csv::parse(path, &text, &["step,lr,loss,smoothed_loss"])?;
    let mut out = Vec::with_capacity(csv.rows.len());
    for (line, f) in &csv.rows {
        let lr = csv.float(*line, f, "lr")?;
        if lr <= 0.0 {
            return Err(format_err(
                path,
                format!("line {line}: `lr` = {lr} is not positive"),
            ));
        }
        out.push(LrFindRow {
            step: csv.get(*line, f, "step")?,
            lr,
            loss: csv.get(*line, f, "loss")?,
            smoothed_loss: csv.get(*line, f, "smoothed_loss")?,
        });
    }
    Ok(Some(out))
}
