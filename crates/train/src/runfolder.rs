use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::checkpoint::EpochRecord;
use crate::{Result, TrainError, write_atomic};

/// One row of `predictions.csv`.
#[derive(Debug, Clone)]
pub(crate) struct Prediction {
    pub split: &'static str,
    pub index: usize,
    pub label: u8,
    pub logit: f32,
}

/// Writes the files of a run folder, each atomically.
pub(crate) struct RunFiles {
    dir: PathBuf,
}

impl RunFiles {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let path = self.path(name);
        let mut s = serde_json::to_string_pretty(value).map_err(|e| TrainError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        s.push('\n');
        write_atomic(&path, s.as_bytes())
    }

    pub fn write_safetensors(&self, name: &str, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let path = self.path(name);
        let mut all: Vec<(&String, Tensor)> = Vec::new();
        for (k, v) in tensors {
            all.push((k, v.to_device(&Device::Cpu)?));
        }
        all.sort_by(|a, b| a.0.cmp(b.0));
        let bytes = safetensors::serialize(all.iter().map(|(k, v)| (k.as_str(), v)), None)
            .map_err(|e| TrainError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
        write_atomic(&path, &bytes)
    }

    /// A text file (CSV) written as given.
    pub fn write_text(&self, name: &str, text: &str) -> Result<()> {
        write_atomic(&self.path(name), text.as_bytes())
    }

    /// `history.csv`: `epoch,train_loss,val_loss,val_auc`.
    pub fn write_history(&self, history: &[EpochRecord]) -> Result<()> {
        let mut s = String::from("epoch,train_loss,val_loss,val_auc\n");
        for r in history {
            let _ = writeln!(
                s,
                "{},{},{},{}",
                r.epoch, r.train_loss, r.val_loss, r.val_auc
            );
        }
        write_atomic(&self.path("history.csv"), s.as_bytes())
    }

    /// `predictions.csv`: `split,index,label,prob,logit,prob_calibrated`;
    /// prob = sigmoid(logit), prob_calibrated = sigmoid(logit / temperature).
    pub fn write_predictions(&self, preds: &[Prediction], temperature: f64) -> Result<()> {
        let mut s = String::from("split,index,label,prob,logit,prob_calibrated\n");
        for p in preds {
            let z = p.logit as f64;
            let prob = 1.0 / (1.0 + (-z).exp());
            let cal = 1.0 / (1.0 + (-z / temperature).exp());
            let _ = writeln!(
                s,
                "{},{},{},{},{},{}",
                p.split, p.index, p.label, prob, p.logit, cal
            );
        }
        write_atomic(&self.path("predictions.csv"), s.as_bytes())
    }
}
