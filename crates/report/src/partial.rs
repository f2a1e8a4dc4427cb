//! The report of a run that did not finish because training diverged: what happened,
//! where, the last good checkpoint, the settings and the history so far. Written from
//! `divergence.json` (by `cxr-train`), `config.json` and `history.csv` when present.

use std::path::{Path, PathBuf};

use cxr_runfolder::{Csv, Divergence, HISTORY_HEADER, RunConfig, names, read_optional};

use crate::Result;
use crate::doc::{Doc, to_html, to_markdown};
use crate::files::write_atomic;

/// Writes `report.md` and `report.html` for a diverged run: the error, the epoch and
/// step, the last good checkpoint, the settings from `config.json` and the completed
/// epochs from `history.csv` (each optional: absent files are stated, malformed ones
/// are errors naming the file). No figures and no `predictions.parquet`: the run made
/// no predictions.
pub fn write_divergence_report(dir: &Path) -> Result<DivergenceReport> {
    let d = Divergence::read(dir)?;
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
    let cpath = dir.join(names::CONFIG);
    match read_optional(&cpath)? {
        None => doc.not_computed("config.json is absent"),
        Some(_) => {
            let t = RunConfig::read(&cpath)?.train;
            doc.table(
                &["setting", "value"],
                vec![
                    vec!["model".into(), t.model.as_str().into()],
                    vec!["learning rate".into(), t.optimizer.lr.to_string()],
                    vec!["batch size".into(), t.batch_size.to_string()],
                    vec!["epochs".into(), t.epochs.to_string()],
                    vec!["seed".into(), t.seed.to_string()],
                    vec!["device".into(), t.device.clone()],
                    vec!["precision".into(), t.precision.as_str().into()],
                ],
            );
        }
    }

    doc.h(2, "Completed epochs");
    let hpath = dir.join(names::HISTORY);
    match read_optional(&hpath)? {
        None => doc.not_computed("history.csv is absent"),
        Some(text) => {
            let h = Csv::parse(&hpath, &text, &[HISTORY_HEADER])?;
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

    let markdown = dir.join(names::REPORT_MD);
    write_atomic(&markdown, to_markdown(&doc).as_bytes())?;
    let html = dir.join(names::REPORT_HTML);
    let text = to_html(
        &doc,
        dir,
        &dir.join(names::AUDIT_DIR).join(names::AUDIT_GALLERY),
    )?;
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
