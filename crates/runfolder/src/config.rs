//! `config.json`: a run's settings, its data, where it ran and how it ended.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Precision, Result, TrainConfig};

/// Where a run stands, as `config.json` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Training (or killed while training: resume it).
    #[default]
    Running,
    /// Training and evaluation finished; `metrics.json` is written.
    Finished,
    /// Training stopped on a non-finite or exploding loss: see `divergence.json`.
    Diverged,
}

impl RunStatus {
    /// `running`, `finished` or `diverged`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Diverged => "diverged",
        }
    }
}

/// `config.json` → `data`: the data the run trained on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DataRecord {
    /// The file or folder the data came from.
    pub source: String,
    /// sha256 of the data (the npz file, or the folder's listing and contents).
    pub sha256: String,
    /// Training images used (after `--exclude-duplicates` and `--limit`).
    pub train: usize,
    /// Validation images.
    pub val: usize,
    /// Test images.
    pub test: usize,
    /// What `--exclude-duplicates` left out, when it was given.
    pub excluded_duplicates: Option<ExcludedDuplicates>,
}

/// `config.json` → `data.excluded_duplicates`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExcludedDuplicates {
    /// Training images left out.
    pub train_removed: usize,
    /// Of those, images duplicating a validation or test image.
    pub duplicating_val_or_test: usize,
    /// Of those, repeated copies within the training split.
    pub repeated_within_train: usize,
    /// Their indices in the training split.
    pub removed_indices: Vec<usize>,
}

/// `config.json` → `weights_loaded`: the pretrained weights a run started from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WeightsLoaded {
    /// The source as given (`hub:owner/name`, a path).
    pub source: String,
    /// The safetensors file read.
    pub file: String,
    /// Tensors loaded.
    pub tensors: usize,
    /// Whether the head was loaded too (same class count).
    pub head_loaded: bool,
    /// Tensors of the file that were skipped, with the reason.
    pub skipped: Vec<String>,
}

/// `config.json` → `skipped_files[]`: an input file left out while loading the data.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SkippedFile {
    /// The file.
    pub path: String,
    /// Why it was left out.
    pub error: String,
}

/// How a run came about: set by the program that starts it, recorded in `config.json`
/// beside the settings (flattened: the keys stand at the top level).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Provenance {
    /// `git rev-parse HEAD` of the source tree (`-dirty` with uncommitted changes).
    pub git_commit: Option<String>,
    /// The command line, without the program name.
    pub command: Option<String>,
    /// Input files left out while loading the data (`--skip-bad`).
    pub skipped_files: Vec<SkippedFile>,
    /// Why a run that asked for pretrained weights trains from scratch.
    pub pretrained_fallback: Option<String>,
    /// The patient ids of folder data: where they came from and what they matched.
    pub patient_ids: Option<PatientIdsRecord>,
    /// The validation split drawn from train by patient (`--val-from-train`).
    pub val_from_train: Option<ValFromTrainRecord>,
    /// Set when the run is an ensemble of finished runs rather than a trained network:
    /// its members, as `model.json` lists them (`train` then holds the first member's
    /// settings, which every member shares but for the seed and epochs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<Vec<EnsembleMember>>,
}

/// One member of an ensemble model: a finished run whose weights the ensemble's
/// weights file holds under `member{i}.` (`i` its position in
/// `ModelCard::members`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleMember {
    /// The member's run folder, as given when the ensemble was built.
    pub run: String,
    /// The member's training seed.
    pub seed: u64,
    /// The member's input size.
    pub image_size: usize,
    /// The epochs the member trained.
    pub epochs: usize,
    /// Its weight in the ensemble's logit (the weights sum to 1).
    pub weight: f64,
    /// The member's epoch whose weights it contributes.
    pub best_epoch: Option<usize>,
    /// The member's own validation ROC AUC.
    pub val_auc: Option<f64>,
    /// The member's own test ROC AUC (reported, never used to build the ensemble).
    pub test_auc: Option<f64>,
}

/// `config.json` → `patient_ids`: the patient ids of folder data.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PatientIdsRecord {
    /// `pattern REGEX` or `table PATH`.
    pub source: String,
    /// sha256 of the patients table, when the ids came from one.
    pub table_sha256: Option<String>,
    /// Distinct patients per split used (`train`, `val`, `test`).
    pub patients: BTreeMap<String, u64>,
    /// Images no pattern or table row matched, each counted as its own patient.
    pub unmatched_images: u64,
    /// Up to 20 of them (relative to the data root).
    pub unmatched_examples: Vec<String>,
    /// Rows of the table that name no image of the data.
    pub unused_table_rows: u64,
    /// Up to 20 of them, as written.
    pub unused_examples: Vec<String>,
    /// Patients with images in more than one of the splits used.
    pub overlapping_patients: u64,
    /// Whether training went ahead despite them (`--allow-patient-overlap`).
    pub overlap_allowed: bool,
}

/// `config.json` → `val_from_train`: the validation split drawn from train by patient.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ValFromTrainRecord {
    /// Fraction of each class's training images aimed for in validation.
    pub fraction: f64,
    /// The seed of the draw (the run's).
    pub seed: u64,
    /// How a patient's label is decided for the stratification.
    pub patient_label: String,
    /// Images of the given validation split, not used for anything.
    pub given_val_images: u64,
    /// Patients left in training.
    pub train_patients: u64,
    /// Training images left.
    pub train_images: u64,
    /// Patients moved to validation.
    pub val_patients: u64,
    /// Validation images.
    pub val_images: u64,
    /// Validation images labelled normal.
    pub val_normal: u64,
    /// Validation images labelled pneumonia.
    pub val_pneumonia: u64,
    /// What happened, in words.
    pub note: String,
}

/// `config.json`. Written when a run starts (status `running`), again once its model is
/// built, and when it finishes or diverges.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunConfig {
    /// Every training setting.
    pub train: TrainConfig,
    /// The data.
    pub data: DataRecord,
    /// The device the run used (`cpu`, `cuda:0`, …), resolved from `train.device`.
    pub device_resolved: String,
    /// The forward pass' precision.
    pub precision: Precision,
    /// CPU threads (rayon's pool).
    pub threads: usize,
    /// The cxr version that wrote the folder.
    pub cxr_version: String,
    /// Where the run stands.
    pub status: RunStatus,
    /// The error that stopped a diverged run.
    pub error: Option<String>,
    /// Whether the network started from pretrained weights.
    pub pretrained: Option<bool>,
    /// The pretrained weights loaded, if any.
    pub weights_loaded: Option<WeightsLoaded>,
    /// How the run came about.
    #[serde(flatten)]
    pub provenance: Provenance,
    /// Keys this version does not know (written by a newer or other tool), kept as read.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl RunConfig {
    /// Reads `path`; errors name the file, the line and the field.
    pub fn read(path: &Path) -> Result<Self> {
        crate::io::read_json(path)
    }

    /// Writes `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::io::write_json(path, self)
    }
}
