use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{ReportError, Result};

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
    /// Per-epoch history.
    pub history: Vec<EpochRow>,
    /// Every val and test prediction.
    pub predictions: Vec<PredictionRow>,
    /// `config.json` as a JSON value.
    pub config: serde_json::Value,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn format_err(path: &Path, reason: impl Into<String>) -> ReportError {
    ReportError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Splits a CSV text into rows after checking the header; values hold no commas or
/// quotes in this contract. Each row must have as many fields as the header.
fn csv<'a>(path: &Path, text: &'a str, header: &str) -> Result<Vec<(usize, Vec<&'a str>)>> {
    let mut lines = text.lines();
    let first = lines.next().ok_or_else(|| format_err(path, "empty file"))?;
    if first.trim_end() != header {
        return Err(format_err(
            path,
            format!("header is `{first}`, expected `{header}`"),
        ));
    }
    let width = header.split(',').count();
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.trim_end().split(',').collect();
        if fields.len() != width {
            return Err(format_err(
                path,
                format!("line {}: {} fields, expected {width}", i + 2, fields.len()),
            ));
        }
        rows.push((i + 2, fields));
    }
    Ok(rows)
}

fn parse<T: std::str::FromStr>(path: &Path, line: usize, field: &str, value: &str) -> Result<T> {
    value.parse().map_err(|_| {
        format_err(
            path,
            format!("line {line}: `{field}` is not a valid number: `{value}`"),
        )
    })
}

impl RunFolder {
    /// Reads and checks a run folder.
    pub fn open(dir: &Path) -> Result<Self> {
        let mpath = dir.join("metrics.json");
        let metrics: serde_json::Value =
            serde_json::from_str(&read(&mpath)?).map_err(|e| format_err(&mpath, e.to_string()))?;
        let split = |name: &str| -> Result<SplitMetrics> {
            let v = metrics
                .get(name)
                .ok_or_else(|| format_err(&mpath, format!("missing object `{name}`")))?;
            serde_json::from_value(v.clone())
                .map_err(|e| format_err(&mpath, format!("`{name}`: {e}")))
        };
        let (val, test) = (split("val")?, split("test")?);

        let hpath = dir.join("history.csv");
        let htext = read(&hpath)?;
        let mut history = Vec::new();
        for (line, f) in csv(&hpath, &htext, "epoch,train_loss,val_loss,val_auc")? {
            history.push(EpochRow {
                epoch: parse(&hpath, line, "epoch", f[0])?,
                train_loss: parse(&hpath, line, "train_loss", f[1])?,
                val_loss: parse(&hpath, line, "val_loss", f[2])?,
                val_auc: parse(&hpath, line, "val_auc", f[3])?,
            });
        }

        let ppath = dir.join("predictions.csv");
        let ptext = read(&ppath)?;
        let mut predictions = Vec::new();
        for (line, f) in csv(&ppath, &ptext, "split,index,label,prob")? {
            let label: u8 = parse(&ppath, line, "label", f[2])?;
            let prob: f64 = parse(&ppath, line, "prob", f[3])?;
            if label > 1 {
                return Err(format_err(
                    &ppath,
                    format!("line {line}: label {label} is not 0 or 1"),
                ));
            }
            if !(0.0..=1.0).contains(&prob) {
                return Err(format_err(
                    &ppath,
                    format!("line {line}: prob {prob} is outside [0, 1]"),
                ));
            }
            if f[0] != "val" && f[0] != "test" {
                return Err(format_err(
                    &ppath,
                    format!("line {line}: unknown split `{}`", f[0]),
                ));
            }
            predictions.push(PredictionRow {
                split: f[0].to_string(),
                index: parse(&ppath, line, "index", f[1])?,
                label,
                prob,
            });
        }

        let cpath = dir.join("config.json");
        let config: serde_json::Value =
            serde_json::from_str(&read(&cpath)?).map_err(|e| format_err(&cpath, e.to_string()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            val,
            test,
            best_epoch: metrics["best_epoch"].as_u64().map(|v| v as usize),
            model: metrics["model"].as_str().unwrap_or("unknown").to_string(),
            train_seconds: metrics["timing"]["train_seconds"].as_f64(),
            history,
            predictions,
            config,
        })
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
