//! `divergence.json`: the record a run leaves when training diverged.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{EpochRecord, Result, TrainConfig, names};

/// The last checkpoint a diverged run kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastGood {
    /// File name in the run folder.
    pub file: String,
    /// Epochs it holds.
    pub epoch: usize,
}

/// `divergence.json`: where and why training stopped, the last good checkpoint, the
/// settings and the completed epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The run's settings.
    #[serde(default)]
    pub config: Option<TrainConfig>,
    /// The completed epochs.
    #[serde(default)]
    pub history: Vec<EpochRecord>,
}

impl Divergence {
    /// Reads `<dir>/divergence.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        crate::io::read_json(&dir.join(names::DIVERGENCE))
    }

    /// Writes `<dir>/divergence.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        crate::io::write_json(&dir.join(names::DIVERGENCE), self)
    }
}

/// Whether `dir` holds a diverged run's record and no finished run
/// (`divergence.json` present, `metrics.json` absent).
pub fn is_diverged_run(dir: &Path) -> bool {
    dir.join(names::DIVERGENCE).is_file() && !dir.join(names::METRICS).is_file()
}
