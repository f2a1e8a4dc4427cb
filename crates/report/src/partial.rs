//! The report of a run that did not finish because training diverged: what happened,
//! where, the last good checkpoint, the settings and the history so far. Written from
//! `divergence.json` (by `cxr-train`), `config.json` and `history.csv` when present.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Result;
use crate::doc::{Doc, to_html, to_markdown};
use crate::files::{Csv, json, read, read_optional, write_atomic};

/// The record `cxr-train` leaves in a run folder whose training diverged.
pub const DIVERGENCE_FILE: &str = "divergence.json";

/// `divergence.json` read back.
#[derive(Debug, Clone, Deserialize)]
pub struct Divergence {
    /// 1-based epoch where the run stopped.
    pub epoch: usize,
    /// 1-based step within that epoch.
    pub step: usize,
    /// What happened (the loss, a gradient or a weight not finite, the loss exploded).
    pub what: String,
    /// The error as the user saw it.
    pub error: String,
    /// The checkpoint left from the last completed epoch, if any.
    #[serde(default)]
    pub last_good_checkpoint: Option<LastGood>,
}

/// The last checkpoint a diverged run kept.
#[derive(Debug, Clone, Deserialize)]
pub struct LastGood {
    /// File name in the run folder.
    pub file: String,
    /// Epochs it holds.
    pub epoch: usize,
}

/// Whether `dir` holds a diverged run's record and no finished run
/// (`divergence.json` present, `metrics.json` absent).
pub fn is_diverged_run(dir: &Path) -> bool {
    dir.join(DIVERGENCE_FILE).is_file() && !dir.join("metrics.json").is_file()
}

/// Reads `<dir>/divergence.json`.
pub fn read_divergence(dir: &Path) -> Result<Divergence> {
    let path = dir.join(DIVERGENCE_FILE);
    json(&path, &read(&path)?)
}

/// Writes `report.md` and `report.html` for a diverged run: the error, the epoch and
/// step, the last good checkpoint, the settings from `config.json` and the completed
/// epochs from `history.csv` (each optional: absent files are stated, malformed ones
/// are errors naming the file). No figures and no `predictions.parquet`: the run made
/// no predictions.
pub fn write_divergence_report(dir: &Path) -> Result<DivergenceReport> {
    let d = read_divergence(dir)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let mut doc = Doc {
        title: format!("Run {name}: training diverged"),
        ..Doc::default()
    };
    doc.h(2, "What happened");
    doc.p(format!(
        "Training stopped at epoch {}, step {}: {}. The run did not finish, so there are \
         no metrics, predictions or figures.",
        d.epoch, d.step, d.what
    ));
    doc.p(format!("Error: {}", d.error));
    match &d.last_good_checkpoint {
        Some(c) => doc.p(format!(
            "Last good checkpoint: {} (after epoch {}). It holds finite weights; resuming \
             with the same settings would diverge again, so rerun with a lower learning rate.",
            c.file, c.epoch
        )),
        None => doc.p(
            "No checkpoint was kept: the run diverged in its first epoch. Rerun with a lower \
             learning rate.",
        ),
    }

    doc.h(2, "Settings");
    let cpath = dir.join("config.json");
    match read_optional(&cpath)? {
        None => doc.not_computed("config.json is absent"),
        Some(text) => {
            let config: serde_json::Value = json(&cpath, &text)?;
            let train = &config["train"];
            let get = |k: &str| -> String {
                match &train[k] {
                    serde_json::Value::Null => "—".into(),
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                }
            };
            let lr = match &train["optimizer"]["lr"] {
                serde_json::Value::Null => "—".into(),
                v => v.to_string(),
            };
            doc.table(
                &["setting", "value"],
                vec![
                    vec!["model".into(), get("model")],
                    vec!["learning rate".into(), lr],
                    vec!["batch size".into(), get("batch_size")],
                    vec!["epochs".into(), get("epochs")],
                    vec!["seed".into(), get("seed")],
                    vec!["device".into(), get("device")],
                    vec!["precision".into(), get("precision")],
                ],
            );
        }
    }

    doc.h(2, "Completed epochs");
    let hpath = dir.join("history.csv");
    match read_optional(&hpath)? {
        None => doc.not_computed("history.csv is absent"),
        Some(text) => {
            let h = Csv::parse(&hpath, &text, &["epoch,train_loss,val_loss,val_auc"])?;
            if h.rows.is_empty() {
                doc.p("None: no epoch was completed.");
            } else {
                let mut rows = Vec::new();
                for (line, f) in &h.rows {
                    let mut row = Vec::new();
                    for col in ["epoch", "train_loss", "val_loss", "val_auc"] {
                        let v: f64 = h.get(*line, f, col)?;
                        row.push(if col == "epoch" {
                            format!("{v}")
                        } else {
                            format!("{v:.4}")
                        });
                    }
                    rows.push(row);
                }
                doc.table(&["epoch", "train loss", "val loss", "val AUC"], rows);
            }
        }
    }

    let markdown = dir.join("report.md");
    write_atomic(&markdown, to_markdown(&doc).as_bytes())?;
    let html = dir.join("report.html");
    let text = to_html(&doc, dir, &dir.join("audit").join("gallery.csv"))?;
    write_atomic(&html, text.as_bytes())?;
    tracing::info!("report of the diverged run {} written", dir.display());
    Ok(DivergenceReport { markdown, html })
}

/// The files [`write_divergence_report`] wrote.
#[derive(Debug, Clone)]
pub struct DivergenceReport {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html` (self-contained).
    pub html: PathBuf,
}
