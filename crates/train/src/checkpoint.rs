use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use cxr_runfolder::{AtomicWriter, EpochRecord};

use crate::{Result, TrainConfig, TrainError};

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// Per-epoch history so far.
    pub history: Vec<EpochRecord>,
    /// Best epoch so far by validation AUC (1-based), if any.
    pub best_epoch: Option<usize>,
    /// Its validation AUC.
    pub best_val_auc: Option<f64>,
    /// The run's configuration.
    pub config: TrainConfig,
    /// sha256 of the training data.
    pub data_sha256: String,
}

const META_KEY: &str = "cxr_checkpoint";
/// The tensor holding self-distillation's past predictions.
const PAST: &str = "self_distillation.past";

/// Writes model weights (`model.<name>`), optimizer moments (`opt.<m|v>.<name>`),
/// the weights' moving average if the run keeps one (`ema.<name>`, see
/// [`crate::TrainConfig::ema`]), the training images' past predictions if the run
/// distils itself (`self_distillation.past`, see
/// [`crate::TrainConfig::self_distillation`]) and `meta` into one safetensors file,
/// atomically: a killed process leaves the previous checkpoint intact.
pub fn save_checkpoint(
    path: &Path,
    weights: &HashMap<String, Tensor>,
    opt_state: &HashMap<String, Tensor>,
    ema: Option<&HashMap<String, Tensor>>,
    past: Option<&[f32]>,
    meta: &CheckpointMeta,
) -> Result<()> {
    let mut all: Vec<(String, Tensor)> = Vec::new();
    for (k, v) in weights {
        all.push((format!("model.{k}"), v.to_device(&Device::Cpu)?));
    }
    for (k, v) in opt_state {
        all.push((format!("opt.{k}"), v.to_device(&Device::Cpu)?));
    }
    for (k, v) in ema.into_iter().flatten() {
        all.push((format!("ema.{k}"), v.to_device(&Device::Cpu)?));
    }
    if let Some(past) = past {
        all.push((PAST.to_string(), Tensor::new(past, &Device::Cpu)?));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let json = serde_json::to_string(meta).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let bytes = safetensors::serialize(
        all.iter().map(|(k, v)| (k.as_str(), v)),
        Some(HashMap::from([(META_KEY.to_string(), json)])),
    )
    .map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    // Written in two halves so that the crash-safety tests can kill the process with a
    // half-written temporary file (`checkpoint:<epoch>`).
    let (head, tail) = bytes.split_at(bytes.len() / 2);
    let mut w = AtomicWriter::create(path)?;
    w.write(head)?;
    crate::guard::test_hang(dir, || format!("checkpoint:{}", meta.epoch));
    w.write(tail)?;
    Ok(w.commit()?)
}

/// A checkpoint read back: weights, optimizer state and metadata.
#[derive(Debug)]
pub struct Checkpoint {
    /// Model weights by parameter name.
    pub weights: HashMap<String, Tensor>,
    /// Optimizer state by `m.<name>` / `v.<name>`.
    pub opt_state: HashMap<String, Tensor>,
    /// The weights' moving average by parameter name; empty when the run keeps none.
    pub ema: HashMap<String, Tensor>,
    /// Each training image's probability when last trained on (NaN before its first
    /// step), when the run distils itself.
    pub past: Option<Vec<f32>>,
    /// Epoch, history and configuration.
    pub meta: CheckpointMeta,
}

/// Reads a checkpoint written by [`save_checkpoint`].
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    let bad = |reason: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let meta_json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| bad(format!("no `{META_KEY}` metadata: not a cxr checkpoint")))?;
    let meta: CheckpointMeta =
        serde_json::from_str(meta_json).map_err(|e| bad(format!("bad metadata: {e}")))?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| bad(e.to_string()))?;
    let mut weights = HashMap::new();
    let mut opt_state = HashMap::new();
    let mut ema = HashMap::new();
    let mut past = None;
    for (k, v) in tensors {
        if k == PAST {
            let values = v
                .to_dtype(candle_core::DType::F32)
                .and_then(|v| v.to_vec1::<f32>())
                .map_err(|e| bad(format!("`{PAST}`: {e}")))?;
            past = Some(values);
        } else if let Some(n) = k.strip_prefix("model.") {
            weights.insert(n.to_string(), v);
        } else if let Some(n) = k.strip_prefix("opt.") {
            opt_state.insert(n.to_string(), v);
        } else if let Some(n) = k.strip_prefix("ema.") {
            ema.insert(n.to_string(), v);
        } else {
            return Err(bad(format!("unexpected tensor `{k}`")));
        }
    }
    Ok(Checkpoint {
        weights,
        opt_state,
        ema,
        past,
        meta,
    })
}
