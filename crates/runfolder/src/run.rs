//! The CSV files of a run folder (history, predictions, curves, the learning-rate
//! finder) and [`RunFolder`], a whole finished run read back.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::audit::Audit;
use crate::io::{Csv, format_err, read, read_optional, write_atomic};
use crate::metrics::{BootstrapCi, Calibration, Metrics, OperatingPoint, SplitMetrics};
use crate::{Result, RunConfig, names};

/// One completed epoch, as checkpoints and `divergence.json` record it; `history.csv`
/// holds its [`EpochRow`] part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's images.
    pub train_loss: f64,
    /// Mean validation loss.
    pub val_loss: f64,
    /// Validation ROC AUC.
    pub val_auc: f64,
    /// Wall-clock seconds of the epoch (training and validation).
    pub seconds: f64,
}

/// The header of `history.csv`.
pub const HISTORY_HEADER: &str = "epoch,train_loss,val_loss,val_auc";

/// Writes `history.csv` (`epoch,train_loss,val_loss,val_auc`) in `dir`, atomically.
pub fn write_history(dir: &Path, history: &[EpochRecord]) -> Result<()> {
    let mut s = format!("{HISTORY_HEADER}\n");
    for r in history {
        let _ = writeln!(
            s,
            "{},{},{},{}",
            r.epoch, r.train_loss, r.val_loss, r.val_auc
        );
    }
    write_atomic(&dir.join(names::HISTORY), s.as_bytes())
}

/// Reads `history.csv` of `dir`.
pub fn read_history(dir: &Path) -> Result<Vec<EpochRow>> {
    let hpath = dir.join(names::HISTORY);
    let htext = read(&hpath)?;
    let h = Csv::parse(&hpath, &htext, &[HISTORY_HEADER])?;
    let mut history = Vec::new();
    for (line, f) in &h.rows {
        history.push(EpochRow {
            epoch: h.get(*line, f, "epoch")?,
            train_loss: h.get(*line, f, "train_loss")?,
            val_loss: h.get(*line, f, "val_loss")?,
            val_auc: h.get(*line, f, "val_auc")?,
        });
    }
    Ok(history)
}

/// The header of `predictions.csv`.
pub const PREDICTIONS_HEADER: &str = "split,index,label,prob,logit,prob_calibrated,path";

/// Headers of `predictions.csv` written by earlier versions, still read.
const OLD_PREDICTIONS_HEADERS: [&str; 2] = [
    "split,index,label,prob,logit,prob_calibrated",
    "split,index,label,prob",
];

/// Writes `predictions.csv` in `dir`, atomically: one row per image (CSV quoting where
/// a path needs it), `logit`, `prob_calibrated` and `path` empty where a row has none.
pub fn write_predictions(dir: &Path, rows: &[PredictionRow]) -> Result<()> {
    let path = dir.join(names::PREDICTIONS);
    let io = |e: csv::Error| crate::RunFolderError::io(&path, std::io::Error::other(e));
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(PREDICTIONS_HEADER.split(','))
        .map_err(io)?;
    for p in rows {
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        out.write_record([
            p.split.clone(),
            p.index.to_string(),
            p.label.to_string(),
            p.prob.to_string(),
            opt(p.logit),
            opt(p.prob_calibrated),
            p.path.clone().unwrap_or_default(),
        ])
        .map_err(io)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| crate::RunFolderError::io(&path, std::io::Error::other(e.to_string())))?;
    write_atomic(&path, &bytes)
}

/// Reads `predictions.csv` of `dir` (this version's header or an older one), checking
/// every value; errors name the file, the line and the column.
pub fn read_predictions(dir: &Path) -> Result<Vec<PredictionRow>> {
    let ppath = dir.join(names::PREDICTIONS);
    let ptext = read(&ppath)?;
    let mut reader = csv::ReaderBuilder::new().from_reader(ptext.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| format_err(&ppath, e.to_string()))?
        .iter()
        .collect::<Vec<_>>()
        .join(",");
    let header = header
        .strip_prefix('\u{feff}')
        .unwrap_or(&header)
        .to_string();
    if header != PREDICTIONS_HEADER && !OLD_PREDICTIONS_HEADERS.contains(&header.as_str()) {
        return Err(format_err(
            &ppath,
            format!(
                "line 1: header is `{header}`, expected `{PREDICTIONS_HEADER}` (or an older `{}`)",
                OLD_PREDICTIONS_HEADERS.join("` or `")
            ),
        ));
    }
    let names: Vec<&str> = header.split(',').collect();
    let mut predictions = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format_err(&ppath, e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let fields: Vec<&str> = record.iter().collect();
        let csv = Csv {
            path: &ppath,
            header: names.clone(),
            rows: Vec::new(),
        };
        let split = csv.text(&fields, "split")?;
        if split != "val" && split != "test" {
            return Err(format_err(
                &ppath,
                format!("line {line}: unknown split `{split}`"),
            ));
        }
        let optional = |name: &str, unit: bool| -> Result<Option<f64>> {
            if !names.contains(&name) || csv.text(&fields, name)?.is_empty() {
                return Ok(None);
            }
            Ok(Some(if unit {
                csv.unit(line, &fields, name)?
            } else {
                csv.float(line, &fields, name)?
            }))
        };
        let path = if names.contains(&"path") {
            Some(csv.text(&fields, "path")?).filter(|p| !p.is_empty())
        } else {
            None
        };
        predictions.push(PredictionRow {
            split: split.to_string(),
            index: csv.get(line, &fields, "index")?,
            label: csv.label(line, &fields, "label")?,
            prob: csv.unit(line, &fields, "prob")?,
            logit: optional("logit", false)?,
            prob_calibrated: optional("prob_calibrated", true)?,
            path: path.map(str::to_string),
        });
    }
    Ok(predictions)
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
    /// The image's file, for data read from image folders (`None` for npz data).
    pub path: Option<String>,
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
    /// `config.json`.
    pub config: RunConfig,
    /// `roc.csv`, when present.
    pub roc: Option<Vec<CurvePoint>>,
    /// `pr.csv`, when present.
    pub pr: Option<Vec<CurvePoint>>,
    /// `reliability.csv`, when present.
    pub reliability: Option<Vec<ReliabilityRow>>,
    /// `lr_find.csv`, when present.
    pub lr_find: Option<Vec<LrFindRow>>,
    /// An ensemble's members scored alone against it (`metrics.json` → `members`;
    /// empty for a trained network).
    pub members: Vec<crate::MemberScore>,
    /// The `audit/` files that are present.
    pub audit: Audit,
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
            _ => Some(crate::io::parse(path, *line, "threshold", t)?),
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
        let metrics = Metrics::read(&dir.join(names::METRICS))?;
        let history = read_history(dir)?;

        let predictions = read_predictions(dir)?;

        let config = RunConfig::read(&dir.join(names::CONFIG))?;

        let roc = curve(
            &dir.join(names::ROC),
            "split,fpr,tpr,threshold",
            "fpr",
            "tpr",
        )?;
        let pr = curve(
            &dir.join(names::PR),
            "split,recall,precision,threshold",
            "recall",
            "precision",
        )?;
        let reliability = read_reliability(&dir.join(names::RELIABILITY))?;
        let lr_find = read_lr_find(&dir.join(names::LR_FIND))?;
        let audit = Audit::open(dir)?;

        Ok(Self {
            dir: dir.to_path_buf(),
            val: metrics.val,
            test: metrics.test,
            best_epoch: metrics.best_epoch,
            model: metrics.model.unwrap_or_else(|| "unknown".into()),
            train_seconds: metrics.timing.map(|t| t.train_seconds),
            calibration: metrics.calibration,
            operating_points: metrics.operating_points,
            bootstrap: metrics.bootstrap.map(|b| b.ci),
            history,
            predictions,
            config,
            roc,
            pr,
            reliability,
            lr_find,
            members: metrics.members,
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
