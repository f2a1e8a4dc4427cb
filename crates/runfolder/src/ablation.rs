//! `ablation.json`: what each change of a recipe did to the test AUC, over seeds,
//! written by `cxr ablation` and rendered in its own report and the pipeline's.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::io::{read_json, write_json};

/// An ablation: rows of changes, each measured on pairs of runs (the same seed without
/// and with the change) scored on the same images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ablation {
    /// The labelled set the pairs were scored on (its path as given).
    pub data: String,
    /// Its split, when the set has splits (`test` unless asked otherwise).
    pub split: Option<String>,
    /// Images scored.
    pub images: usize,
    /// One row per change, in the order given.
    pub rows: Vec<AblationRow>,
}

/// One change of the recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationRow {
    /// The change, in words (`light → strong augmentation`).
    pub change: String,
    /// Its pairs of runs, one per seed.
    pub pairs: Vec<AblationPair>,
    /// Median AUC of the runs without the change.
    pub median_before: f64,
    /// Median AUC of the runs with it.
    pub median_after: f64,
    /// Median of the paired differences (after − before).
    pub median_difference: f64,
}

/// A run without a change against the run with it, on the same images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AblationPair {
    /// The run without the change.
    pub before: String,
    /// The run with it.
    pub after: String,
    /// The seed of the run with the change (from its `config.json`).
    pub seed: u64,
    /// AUC without the change.
    pub auc_before: f64,
    /// AUC with it.
    pub auc_after: f64,
    /// `auc_after − auc_before`.
    pub difference: f64,
    /// 95 % DeLong interval of the difference, lower end.
    pub difference_low: f64,
    /// Upper end.
    pub difference_high: f64,
    /// Paired DeLong test, two-sided p.
    pub delong_p: f64,
    /// The evaluation folder behind this pair (relative to the ablation folder).
    pub evaluation: String,
}

impl Ablation {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self> {
        read_json(path)
    }

    /// Writes `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}
