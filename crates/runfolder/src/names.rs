//! The names of a run folder's files, relative to the folder. Writers and readers use
//! these, never literals.

/// The settings and the run's status (`running`, `finished`, `diverged`): [`crate::RunConfig`].
pub const CONFIG: &str = "config.json";
/// Validation and test metrics of the finished run: [`crate::Metrics`].
pub const METRICS: &str = "metrics.json";
/// One row per validation and test image: [`crate::PredictionRow`].
pub const PREDICTIONS: &str = "predictions.csv";
/// One row per completed epoch: [`crate::EpochRow`].
pub const HISTORY: &str = "history.csv";
/// The best epoch's weights (safetensors, PyTorch's names).
pub const MODEL: &str = "model.safetensors";
/// The model card: what applying the model needs ([`crate::ModelCard`]).
pub const MODEL_CARD: &str = "model.json";
/// The best epoch's weights while training runs.
pub const BEST: &str = "best.safetensors";
/// Weights, optimizer state and history after the last completed epoch (for resume).
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// ROC curves, `split,fpr,tpr,threshold`.
pub const ROC: &str = "roc.csv";
/// Precision–recall curves, `split,recall,precision,threshold`.
pub const PR: &str = "pr.csv";
/// Reliability bins, `split,bin,lower,upper,count,confidence,accuracy`.
pub const RELIABILITY: &str = "reliability.csv";
/// The learning-rate range test's points, `step,lr,loss,smoothed_loss`.
pub const LR_FIND: &str = "lr_find.csv";
/// The learning-rate range test's settings and suggestion.
pub const LR_FIND_JSON: &str = "lr_find.json";
/// The record a diverged run leaves: [`crate::Divergence`].
pub const DIVERGENCE: &str = "divergence.json";
/// The lock a live process holds on the folder: [`crate::RunLock`].
pub const LOCK: &str = ".cxr.lock";
/// The report, Markdown.
pub const REPORT_MD: &str = "report.md";
/// The report, self-contained HTML.
pub const REPORT_HTML: &str = "report.html";
/// The report's figures (a folder).
pub const FIGURES_DIR: &str = "figures";
/// `predictions.csv` as parquet, written with the report.
pub const PREDICTIONS_PARQUET: &str = "predictions.parquet";

/// The audit's folder inside the run folder; the names below are relative to it.
pub const AUDIT_DIR: &str = "audit";
/// Per test image quality measures: [`crate::QualityRow`], [`crate::QUALITY_HEADER`].
pub const AUDIT_QUALITY: &str = "quality.csv";
/// Failure modes and hypothesis verdicts: [`crate::FailureModes`].
pub const AUDIT_FAILURE_MODES: &str = "failure_modes.json";
/// The gallery's rows: [`crate::GalleryRow`], [`crate::GALLERY_HEADER`].
pub const AUDIT_GALLERY: &str = "gallery.csv";
/// The gallery's PNG tiles (a folder).
pub const AUDIT_GALLERY_DIR: &str = "gallery";
/// The corruption sweep: [`crate::RobustnessRow`], [`crate::ROBUSTNESS_HEADER`].
pub const AUDIT_ROBUSTNESS: &str = "robustness.csv";
/// Class balance and duplicates per split: [`crate::DataAudit`].
pub const AUDIT_DATA: &str = "data_audit.json";
/// The audit's settings and timings: [`crate::AuditMeta`].
pub const AUDIT_META: &str = "audit.json";

/// The pipeline's comparison table over several run folders.
pub const SUMMARY_CSV: &str = "summary.csv";
/// The pipeline's comparison table, Markdown.
pub const SUMMARY_MD: &str = "summary.md";

/// Prediction folders of `cxr predict`, inside the run folder by default.
pub const PREDICT_DIR: &str = "predictions";
/// A prediction folder's summary: [`crate::PredictSummary`].
pub const PREDICT_SUMMARY: &str = "summary.json";
/// A prediction folder's explanation overlays (a folder).
pub const PREDICT_EXPLAIN_DIR: &str = "explain";

/// Evaluation folders of `cxr evaluate`, inside the run folder by default.
pub const EVALUATE_DIR: &str = "evaluations";
/// An evaluation folder's findings: [`crate::Evaluation`].
pub const EVALUATION: &str = "evaluation.json";
/// The pipeline's evaluation of its headline model on the test split (a `cxr evaluate`
/// folder inside the pipeline folder): the prevalence-adapted operating points that the
/// pipeline report shows beside the run's own.
pub const HEADLINE_EVALUATION: &str = "headline-evaluation";
/// An ablation folder's results (`cxr ablation`).
pub const ABLATION: &str = "ablation.json";
/// The ablation rendered as a Markdown table.
pub const ABLATION_MD: &str = "ablation.md";
/// An evaluation folder's per-image rows (path or index, label, logit, probabilities,
/// metadata columns), parquet.
pub const EVALUATE_PREDICTIONS: &str = "predictions.parquet";
/// An evaluation folder's subgroup tables, one row per column and group, CSV.
pub const SUBGROUPS_CSV: &str = "subgroups.csv";
/// The same, parquet.
pub const SUBGROUPS_PARQUET: &str = "subgroups.parquet";
