//! Training for cxr: the optimizer loop, checkpoints and the run folder.
//!
//! Key items:
//! - [`train`] runs a [`TrainConfig`] on a [`cxr_data::Dataset`] and writes a run
//!   folder (`metrics.json`, `predictions.csv`, `history.csv`, `model.safetensors`,
//!   `config.json`, `checkpoint.safetensors`); [`RunOptions::resume`] continues a
//!   killed run from its last checkpoint.
//! - [`Adam`] (Adam and AdamW with PyTorch's arithmetic and savable state, per-parameter
//!   rates and freezing for fine-tuning), [`OneCycle`], [`lr_range_test`] and
//!   [`bce_with_logits`].
//! - [`ModelKind`]: the seed CNN, or ResNet18 fine-tuned fastai-style
//!   ([`TrainConfig::resnet18`]: frozen epochs, discriminative rates, one-cycle).
//! - [`parse_device`]: `cpu`, `cuda[:N]`, `metal`, `auto`; the `cuda` and `metal`
//!   cargo features pass through to candle.
//! - [`Precision`]: f32, or bf16/f16 autocast of the forward pass over f32 master
//!   weights on CUDA and Metal ([`Autocast`], [`LossScaler`]).
//! - [`write_atomic`]: every file a run writes goes through it.
//! - [`audit_run`] / [`audit_model`]: the audit of a trained model written to
//!   `<run>/audit/` (quality measures, failure modes and hypothesis verdicts, a
//!   gallery with Grad-CAM and occlusion maps, a corruption sweep, a data audit);
//!   [`train`] runs it at the end unless [`RunOptions::skip_audit`] is set. Any
//!   network joins it by implementing [`AuditModel`].
//!
//! What this crate does not do: decode data (`cxr-data`), define networks
//! (`cxr-models`), compute metrics (`cxr-metrics`) or render reports (`cxr-report`).
#![warn(missing_docs)]

pub mod audit;
mod checkpoint;
mod config;
mod device;
mod error;
mod evaluation;
mod guard;
mod io;
mod lock;
mod loss;
mod lr_find;
mod optim;
mod precision;
mod runfolder;
mod schedule;
mod trainer;

pub use audit::{AuditModel, AuditOptions, AuditSummary, audit_model, audit_run};
pub use checkpoint::{Checkpoint, CheckpointMeta, EpochRecord, load_checkpoint, save_checkpoint};
pub use config::{AugmentPreset, ModelKind, Schedule, TrainConfig};
pub use device::{device_name, parse_device};
pub use error::{Result, TrainError};
pub use guard::{DIVERGENCE_FILE, EXPLODED_LOSS, TEST_HANG_ENV, TEST_HANG_MARKER};
pub use io::{ensure_writable_dir, write_atomic};
pub use lock::RunLock;
pub use loss::{bce_with_logits, bce_with_logits_host};
pub use lr_find::{LrFindPoint, LrFindResult, LrFindSettings, lr_range_test};
pub use optim::{Adam, AdamConfig, OptimizerKind};
pub use precision::{Autocast, LossScaler, Precision};
pub use schedule::{ONE_CYCLE_MOMS, OneCycle, even_mults};
pub use trainer::{RunOptions, RunSummary, train};
