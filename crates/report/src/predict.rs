//! The report of a prediction folder (`cxr predict`): `report.html` (self-contained),
//! `report.md`, `figures/probabilities.png` and `predictions.parquet`, from the folder's
//! `summary.json` and `predictions.csv`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cxr_runfolder::{PredictRow, PredictSummary, names, read_predict_rows};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::doc::{Block, Doc, Tile, to_html, to_markdown};
use crate::files::write_atomic;
use crate::{ReportError, Result, figures};

/// What [`write_predict_report`] wrote.
#[derive(Debug, Clone)]
pub struct PredictReportFiles {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// `predictions.parquet`.
    pub parquet: PathBuf,
}

/// Rows listed in the report's table of highest probabilities.
const TOP_ROWS: usize = 20;

/// Writes the report of the prediction folder `dir`.
pub fn write_predict_report(dir: &Path) -> Result<PredictReportFiles> {
    let summary = PredictSummary::read(&dir.join(names::PREDICT_SUMMARY))?;
    let csv = dir.join(names::PREDICTIONS);
    let rows = read_predict_rows(&csv)?;
    let doc = predict_doc(&summary, &rows)?;
    let fig_dir = dir.join(names::FIGURES_DIR);
    std::fs::create_dir_all(&fig_dir).map_err(|source| ReportError::Io {
        path: fig_dir.clone(),
        source,
    })?;
    for f in &doc.figures {
        write_atomic(&fig_dir.join(format!("{}.png", f.name)), &f.png)?;
    }
    let markdown = dir.join(names::REPORT_MD);
    write_atomic(&markdown, to_markdown(&doc).as_bytes())?;
    let html = dir.join(names::REPORT_HTML);
    write_atomic(
        &html,
        to_html(&doc, dir, &dir.join(names::PREDICT_SUMMARY))?.as_bytes(),
    )?;
    let parquet = dir.join(names::PREDICTIONS_PARQUET);
    write_predict_parquet(&parquet, &rows)?;
    Ok(PredictReportFiles {
        markdown,
        html,
        parquet,
    })
}

fn pct(n: usize, of: usize) -> String {
    if of == 0 {
        "–".into()
    } else {
        format!("{:.1}%", 100.0 * n as f64 / of as f64)
    }
}

fn predict_doc(s: &PredictSummary, rows: &[PredictRow]) -> Result<Doc> {
    let mut doc = Doc {
        title: format!("cxr predictions — {} from {}", s.network, s.run),
        ..Doc::default()
    };
    doc.p(format!(
        "**Inputs:** {} given, {} files found, {} frames predicted, {} files unreadable. \
         Device {}, {:.1} s ({:.1} images/s), cxr {}.",
        s.inputs.len(),
        s.files,
        s.predicted,
        s.unreadable,
        s.device,
        s.seconds,
        s.images_per_second,
        s.cxr_version
    ));
    doc.p(format!(
        "**Decision:** pneumonia when P(pneumonia) ≥ {:.4} — {}. {} of {} frames ({}) are called pneumonia.",
        s.threshold,
        s.threshold_source,
        s.positives,
        s.predicted,
        pct(s.positives, s.predicted)
    ));
    if s.adapt_prior {
        doc.p(format!(
            "**Prior adapted (--adapt-prior):** without adaptation the threshold is {:.4} and \
             {} frames ({}) are called pneumonia; `prob_adapted` in predictions.csv holds the \
             calibrated probabilities adjusted to the estimated prevalence.",
            s.threshold_unadapted,
            s.positives_unadapted,
            pct(s.positives_unadapted, s.predicted)
        ));
    }
    if s.card_derived {
        doc.p(
            "**Model card derived:** the run predates model.json; preprocessing and \
             thresholds were derived from its config.json and metrics.json, and no training \
             prevalence was recorded (no site check).",
        );
    }

    doc.h(2, "Unreadable inputs");
    if s.errors.is_empty() {
        doc.p("Every input file was read.");
    } else {
        doc.table(
            &["reason", "files"],
            s.errors
                .iter()
                .map(|e| vec![e.reason.clone(), e.count.to_string()])
                .collect(),
        );
        let listed: Vec<Vec<String>> = rows
            .iter()
            .filter(|r| !r.error.is_empty())
            .take(TOP_ROWS)
            .map(|r| vec![r.path.clone(), r.error.clone()])
            .collect();
        doc.p(format!(
            "The first {} unreadable files (every one is a row of predictions.csv):",
            listed.len()
        ));
        doc.table(&["file", "reason"], listed);
    }

    doc.h(2, "Distribution of probabilities");
    let probs: Vec<f64> = rows.iter().filter_map(|r| r.prob).collect();
    if probs.is_empty() {
        doc.not_computed("no frame could be predicted");
    } else {
        doc.figure(figures::probability_histogram(&probs, s.threshold)?);
    }

    doc.h(2, "Site check (no labels needed)");
    match &s.site_check {
        Some(c) => {
            doc.p(c.verdict.clone());
            doc.table(
                &["", "value"],
                vec![
                    vec![
                        "estimated prevalence".into(),
                        format!(
                            "{:.3} ({:.0}% CI {:.3}–{:.3}, {} bootstrap resamples)",
                            c.estimate,
                            c.level * 100.0,
                            c.ci_low,
                            c.ci_high,
                            c.resamples
                        ),
                    ],
                    vec![
                        "training prevalence".into(),
                        format!("{:.3}", c.train_prevalence),
                    ],
                    vec![
                        "reference prevalence (validation, EM's prior)".into(),
                        format!("{:.3}", c.reference_prevalence),
                    ],
                    vec![
                        "mean calibrated probability".into(),
                        format!("{:.3} ({})", c.mean_probability, c.calibration),
                    ],
                    vec![
                        "label-shift test".into(),
                        match &c.label_shift_test {
                            Some(t) => format!(
                                "KS distance {:.3}, p = {:.3} ({} resamples): {}",
                                t.statistic,
                                t.p_value,
                                t.resamples,
                                if t.rejected {
                                    "rejected — more than prevalence differs"
                                } else {
                                    "not rejected"
                                }
                            ),
                            None => "not computed (no validation logits in the model card)".into(),
                        },
                    ],
                    vec![
                        "EM".into(),
                        format!(
                            "{} iterations, {}",
                            c.iterations,
                            if c.converged {
                                "converged"
                            } else {
                                "not converged"
                            }
                        ),
                    ],
                ],
            );
            doc.p(format!("Method: {}.", c.method));
        }
        None => doc.not_computed("no training prevalence in the model card, or nothing predicted"),
    }

    doc.h(2, "Highest probabilities");
    if !s.explained.is_empty() {
        let tiles = s
            .explained
            .iter()
            .map(|e| Tile {
                lines: vec![
                    format!("{} (frame {})", e.path, e.frame),
                    format!("P(pneumonia) {:.3}", e.prob),
                ],
                images: vec![
                    ("input".into(), e.image.clone()),
                    ("Grad-CAM".into(), e.gradcam.clone()),
                    ("occlusion".into(), e.occlusion.clone()),
                ],
            })
            .collect();
        doc.p(
            "Grad-CAM and occlusion sensitivity for the pneumonia class (hot = evidence for \
             pneumonia), on the model's input image.",
        );
        doc.blocks.push(Block::Gallery(tiles));
    }
    let mut ok: Vec<&PredictRow> = rows.iter().filter(|r| r.is_ok()).collect();
    ok.sort_by(|a, b| {
        b.prob
            .unwrap_or(0.0)
            .total_cmp(&a.prob.unwrap_or(0.0))
            .then_with(|| a.path.cmp(&b.path))
    });
    let f = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
    doc.table(
        &["file", "frame", "prob", "prob_calibrated", "decision"],
        ok.iter()
            .take(TOP_ROWS)
            .map(|r| {
                vec![
                    r.path.clone(),
                    r.frame.to_string(),
                    f(r.prob),
                    f(r.prob_calibrated),
                    r.decision.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    );
    doc.p(
        "These are a model's outputs, not diagnoses: the model was trained on one data set \
         and its operating points were chosen on that set's validation split.",
    );
    Ok(doc)
}

fn perr(path: &Path, e: impl std::fmt::Display) -> ReportError {
    ReportError::Parquet {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The prediction folder's rows as parquet: `path` (UTF-8), `frame` (INT64), `logit`,
/// `prob`, `prob_calibrated`, `prob_adapted`, `threshold` (optional DOUBLE), `decision`,
/// `operating_point`, `error` (UTF-8, empty where none). Written atomically.
pub fn write_predict_parquet(path: &Path, rows: &[PredictRow]) -> Result<()> {
    let schema = "message predictions {
        REQUIRED BYTE_ARRAY path (UTF8);
        REQUIRED INT64 frame;
        OPTIONAL DOUBLE logit;
        OPTIONAL DOUBLE prob;
        OPTIONAL DOUBLE prob_calibrated;
        OPTIONAL DOUBLE prob_adapted;
        REQUIRED BYTE_ARRAY decision (UTF8);
        OPTIONAL DOUBLE threshold;
        REQUIRED BYTE_ARRAY operating_point (UTF8);
        REQUIRED BYTE_ARRAY error (UTF8);
    }";
    let schema = Arc::new(parse_message_type(schema).map_err(|e| perr(path, e))?);
    let props = Arc::new(WriterProperties::builder().build());
    let mut writer =
        SerializedFileWriter::new(Vec::new(), schema, props).map_err(|e| perr(path, e))?;
    let mut group = writer.next_row_group().map_err(|e| perr(path, e))?;
    let text = |f: fn(&PredictRow) -> &str| -> Vec<ByteArray> {
        rows.iter().map(|r| ByteArray::from(f(r))).collect()
    };
    let optional = |f: fn(&PredictRow) -> Option<f64>| -> (Vec<f64>, Vec<i16>) {
        let values = rows.iter().filter_map(f).collect();
        let levels = rows.iter().map(|r| i16::from(f(r).is_some())).collect();
        (values, levels)
    };
    let mut col = 0usize;
    while let Some(mut w) = group.next_column().map_err(|e| perr(path, e))? {
        let written = match col {
            0 => w
                .typed::<ByteArrayType>()
                .write_batch(&text(|r| r.path.as_str()), None, None),
            1 => {
                let v: Vec<i64> = rows.iter().map(|r| r.frame as i64).collect();
                w.typed::<Int64Type>().write_batch(&v, None, None)
            }
            2..=5 | 7 => {
                let (v, d) = match col {
                    2 => optional(|r| r.logit),
                    3 => optional(|r| r.prob),
                    4 => optional(|r| r.prob_calibrated),
                    5 => optional(|r| r.prob_adapted),
                    _ => optional(|r| r.threshold),
                };
                w.typed::<DoubleType>().write_batch(&v, Some(&d), None)
            }
            6 => w.typed::<ByteArrayType>().write_batch(
                &text(|r| r.decision.as_deref().unwrap_or("")),
                None,
                None,
            ),
            8 => w.typed::<ByteArrayType>().write_batch(
                &text(|r| r.operating_point.as_str()),
                None,
                None,
            ),
            _ => w
                .typed::<ByteArrayType>()
                .write_batch(&text(|r| r.error.as_str()), None, None),
        };
        written.map_err(|e| perr(path, e))?;
        w.close().map_err(|e| perr(path, e))?;
        col += 1;
    }
    group.close().map_err(|e| perr(path, e))?;
    let bytes = writer.into_inner().map_err(|e| perr(path, e))?;
    write_atomic(path, &bytes)
}
