//! Reports for cxr run folders.
//!
//! Key types:
//! - [`write_report`]: `figures/*.png`, `report.md`, a self-contained `report.html` and
//!   `predictions.parquet`; optional inputs that are absent give "Not computed"
//!   sections, malformed ones a [`ReportError::Format`] naming file and line or field.
//! - [`write_divergence_report`]: the report of a run stopped by divergence (from
//!   `divergence.json`, `config.json` and `history.csv`).
//! - [`compare_runs`], [`write_pipeline_report`]: the pipeline's `summary.csv`,
//!   `summary.md` and top-level `report.html` over several run folders.
//! - [`write_predict_report`]: the report of a prediction folder (`cxr predict`):
//!   inputs and unreadable files, the distribution of probabilities, the site check,
//!   the highest-probability images with their overlays, and `predictions.parquet`.
//! - [`write_evaluate_report`]: the report of an evaluation folder (`cxr evaluate`), from
//!   its `evaluation.json` alone: the model card's operating points scored on another
//!   site's labelled set (Wilson and bootstrap intervals, validation figures beside
//!   them), ROC and calibration figures, the prevalence shift, subgroup tables with
//!   forest plots, and an optional paired comparison with a second model.
//! - [`render_ablation_markdown`]: an ablation (`ablation.json`, `cxr ablation`) as a
//!   table; the pipeline report shows the one in its folder.
//! - [`check_embedded_images`], [`browser::check_in_chromium`]: offline and headless
//!   Chromium checks of a written report.
//!
//! It reads run folders through `cxr-runfolder` ([`cxr_runfolder::RunFolder`]: the
//! files checked against their format, every error naming the file and the line or
//! field).
//!
//! What this crate does not do: train, run models or touch tensors. It reads files
//! that `cxr-train` and `cxr-audit` wrote, so a report can be rebuilt at any time
//! without retraining.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod ablation;
pub mod browser;
mod doc;
mod error;
mod evaluate;
pub mod figures;
mod files;
mod html_check;
mod markdown;
mod parquet_io;
mod partial;
mod predict;
mod summary;

pub use ablation::render_ablation_markdown;
pub use doc::png_size;
pub use error::{ReportError, Result};
pub use evaluate::{EvaluateReportFiles, write_evaluate_report};
pub use figures::Figure;
pub use html_check::{EmbeddedImage, check_embedded_images};
pub use markdown::{ReportFiles, render_markdown, write_report};
pub use parquet_io::{read_predictions_parquet, write_predictions_parquet};
pub use partial::{DivergenceReport, write_divergence_report};
pub use predict::{PredictReportFiles, write_predict_parquet, write_predict_report};
pub use summary::{
    PipelineReportFiles, SUMMARY_CSV_HEADER, SummaryRow, compare_runs, open_pipeline,
    render_summary_csv, render_summary_markdown, write_pipeline_report,
};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
