//! Reports for cxr run folders.
//!
//! Key types:
//! - [`RunFolder`]: a run folder read back and checked against the contract
//!   (`metrics.json`, `predictions.csv`, `history.csv`, `config.json`).
//! - [`render_markdown`] / [`write_report`]: a `report.md` with the metrics, the
//!   confusion matrix, the training history and the worst failure cases.
//! - [`compare_runs`]: a comparison table over several run folders (the pipeline's
//!   `summary.csv` and `summary.md`).
//!
//! What this crate does not do: train, run models or touch tensors. It reads files
//! that `cxr-train` wrote, so a report can be rebuilt at any time without retraining.
#![warn(missing_docs)]

pub mod audit;
pub mod browser;
mod doc;
mod error;
pub mod figures;
mod files;
mod html_check;
mod markdown;
mod parquet_io;
mod run;
mod summary;

pub use audit::Audit;
pub use doc::png_size;
pub use error::{ReportError, Result};
pub use figures::Figure;
pub use html_check::{EmbeddedImage, check_embedded_images};
pub use markdown::{ReportFiles, render_markdown, write_report};
pub use parquet_io::{read_predictions_parquet, write_predictions_parquet};
pub use run::{
    BootstrapCi, Calibration, CurvePoint, EpochRow, Interval, LrFindRow, OperatingPoint,
    PredictionRow, ReliabilityRow, RunFolder, SplitMetrics,
};
pub use summary::{
    PipelineReportFiles, SUMMARY_CSV_HEADER, SummaryRow, compare_runs, open_pipeline,
    render_summary_csv, render_summary_markdown, write_pipeline_report,
};
