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

mod error;
mod markdown;
mod run;
mod summary;

pub use error::{ReportError, Result};
pub use markdown::{render_markdown, write_report};
pub use run::{EpochRow, PredictionRow, RunFolder, SplitMetrics};
pub use summary::{SummaryRow, compare_runs, render_summary_csv, render_summary_markdown};
