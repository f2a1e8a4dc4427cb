//! Training for cxr: the optimizer loop, checkpoints and the files of a run folder.
//!
//! Key items:
//! - [`train`] runs a [`TrainConfig`] on a [`cxr_data::Dataset`] and writes a run
//!   folder (`metrics.json`, `predictions.csv`, `history.csv`, `model.safetensors`,
//!   `config.json`, `checkpoint.safetensors`; the format is `cxr-runfolder`'s);
//!   [`RunOptions::resume`] continues a killed run from its last checkpoint.
//! - [`ensemble`] combines finished runs into a run folder of the same kind (the
//!   mean of their logits, scored and described like a trained model), so prediction,
//!   the audit and the reports apply to it unchanged.
//! - [`Adam`] (Adam and AdamW with PyTorch's arithmetic and savable state, per-parameter
//!   rates and freezing for fine-tuning), [`OneCycle`], [`lr_range_test`] and
//!   [`bce_with_logits`].
//! - [`ModelKind`]: the seed CNN, or ResNet18 fine-tuned fastai-style
//!   ([`TrainConfig::resnet18`]: frozen epochs, discriminative rates, one-cycle); any
//!   [`cxr_models::Classifier`] trains the same way.
//! - [`parse_device`]: `cpu`, `cuda[:N]`, `metal`, `auto`; the `cuda` and `metal`
//!   cargo features pass through to candle.
//! - [`Precision`]: f32, or bf16/f16 autocast of the forward pass over f32 master
//!   weights on CUDA and Metal ([`Autocast`], [`LossScaler`]).
//!
//! What this crate does not do: decode data (`cxr-data`), define networks
//! (`cxr-models`), compute metrics (`cxr-metrics`), audit a trained model
//! (`cxr-audit`) or render reports (`cxr-report`). `cxr` chains them.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod checkpoint;
mod distill;
mod ema;
mod ensemble;
mod error;
mod evaluation;
mod guard;
mod loss;
mod lr_find;
mod mixing;
mod optim;
mod precision;
mod schedule;
mod trainer;

pub use checkpoint::{Checkpoint, CheckpointMeta, load_checkpoint, save_checkpoint};
pub use cxr_models::{device_name, parse_device};
pub use cxr_runfolder::{
    AdamConfig, AugmentPreset, EpochRecord, KeepEpoch, ModelKind, OptimizerKind, Precision,
    Schedule, TrainConfig,
};
pub use ensemble::ensemble;
pub use error::{Result, TrainError};
pub use guard::EXPLODED_LOSS;
pub use loss::{bce_with_logits, bce_with_logits_host};
pub use lr_find::{LrFindPoint, LrFindResult, LrFindSettings, lr_range_test};
pub use optim::Adam;
pub use precision::{
    Autocast, LossScaler, apply_matmul_precision, check_precision_device, compute_dtype,
};
pub use schedule::{ONE_CYCLE_MOMS, OneCycle, even_mults};
pub use trainer::{RunOptions, RunSummary, train};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
