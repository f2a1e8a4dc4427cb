//! The run-folder format of cxr: every file a training run, its audit and its report
//! write, as typed structures shared by writers and readers, with the files' names,
//! atomic writes and the folder's lock.
//!
//! Key items:
//! - [`names`]: each file's name in the folder (writers and readers use these).
//! - `config.json`: [`RunConfig`] (settings [`TrainConfig`], data, device, status,
//!   [`Provenance`]); `metrics.json`: [`Metrics`] ([`SplitMetrics`], [`Calibration`],
//!   [`OperatingPoint`], [`BootstrapCi`]); `divergence.json`: [`Divergence`];
//!   `model.json`: [`ModelCard`] (what applying the model needs: [`Preprocess`],
//!   temperature, operating points chosen on validation).
//! - A prediction folder (`cxr predict`): [`PredictRow`] rows of its `predictions.csv`
//!   and [`PredictSummary`] (`summary.json`, with the [`SiteCheck`]).
//! - An evaluation folder (`cxr evaluate`): [`Evaluation`] (`evaluation.json`: operating
//!   points with intervals, calibration, prevalence shift, [`SubgroupTable`]s,
//!   [`ModelComparison`]).
//! - An ablation (`cxr ablation`): [`Ablation`] (`ablation.json`: per change, pairs of
//!   runs without and with it, scored on the same images).
//! - CSV files: [`write_history`] / [`read_history`], [`write_predictions`], and the
//!   headers every writer uses ([`PREDICTIONS_HEADER`], [`QUALITY_HEADER`], …).
//! - The audit's files ([`Audit`]: [`FailureModes`], [`DataAudit`], [`AuditMeta`],
//!   gallery, quality and robustness rows).
//! - [`RunFolder`]: a finished run read back and checked, every error naming the file
//!   and the line or field.
//! - [`write_atomic`], [`write_json`], [`AtomicWriter`]: a reader sees the old file or
//!   the new one, never a partial one; [`RunLock`]: one process per folder.
//!
//! What this crate does not do: compute anything (metrics come from `cxr-metrics`,
//! settings are checked but not applied), touch tensors or render reports. It depends
//! on no other cxr crate, so any tool can read and write run folders with it.
//!
//! ```
//! use cxr_runfolder::{RunConfig, RunStatus, TrainConfig, names};
//!
//! let dir = tempfile::tempdir()?;
//! let config = RunConfig {
//!     train: TrainConfig::resnet18("none"),
//!     status: RunStatus::Running,
//!     ..RunConfig::default()
//! };
//! config.write(&dir.path().join(names::CONFIG))?;
//! let back = RunConfig::read(&dir.path().join(names::CONFIG))?;
//! assert_eq!(back, config);
//! assert_eq!(back.train.image_size, 64);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod ablation;
mod audit;
mod card;
mod config;
mod divergence;
mod error;
mod evaluation;
mod io;
mod lock;
mod metrics;
pub mod names;
mod predict;
mod run;
mod settings;

pub use ablation::{Ablation, AblationPair, AblationRow};
pub use audit::{
    AssociationTest, Audit, AuditMeta, AuditSettings, DataAudit, Duplicates, Evidence,
    FailureModes, GALLERY_HEADER, GalleryKind, GalleryRow, GroupQuartile, GroupTable, Hypothesis,
    Intervention, Logit, MeasureModes, Overlay, PairCount, PatientAudit, PatientOverlapRow,
    PrevalenceShift, QUALITY_HEADER, QualityRow, Quartile, ROBUSTNESS_HEADER, RobustnessRow,
    SplitBalance,
};
pub use card::{
    CROP_RESIZE, CardData, CardOperatingPoint, CardScaling, MODEL_CARD_FORMAT, ModelCard,
    Preprocess, RESIZE, ReferenceLogits,
};
pub use config::{
    DataRecord, EnsembleMember, ExcludedDuplicates, PatientIdsRecord, Provenance, RunConfig,
    RunStatus, SkippedFile, ValFromTrainRecord, WeightsLoaded,
};
pub use divergence::{Divergence, LastGood, is_diverged_run};
pub use error::{Result, RunFolderError};
pub use evaluation::{
    EstimateCi, EvaluatedCalibration, EvaluatedPoint, EvaluatedSet, Evaluation, HeterogeneityTest,
    MetadataJoin, ModelComparison, ProportionEstimate, ReliabilityPoint, RocPoint, SetPrevalence,
    SubgroupRow, SubgroupTable,
};
pub use io::{
    AtomicWriter, Csv, ensure_writable_dir, json, parse, read, read_json, read_optional,
    write_atomic, write_json,
};
pub use lock::RunLock;
pub use metrics::{
    Bootstrap, BootstrapCi, Calibration, Interval, MemberScore, Metrics, OperatingPoint,
    Prevalence, SplitMetrics, Timing,
};
pub use predict::{
    ErrorCount, Explained, LabelShiftCheck, PREDICT_HEADER, PredictRow, PredictSummary, SiteCheck,
    read_predict_rows, write_predict_rows,
};
pub use run::{
    CurvePoint, EpochRecord, EpochRow, HISTORY_HEADER, LrFindRow, PREDICTIONS_HEADER,
    PredictionRow, ReliabilityRow, RunFolder, read_history, read_predictions, write_history,
    write_predictions,
};
pub use settings::{
    AdamConfig, AugmentPreset, KeepEpoch, ModelKind, OptimizerKind, Precision, Schedule,
    TrainConfig,
};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
