//! Candle models for chest X-ray classification.
//!
//! Key types:
//! - [`SeedCnn`]: the seed study's small CNN (three Conv→ReLU→MaxPool blocks, adaptive
//!   average pool, one logit), with torch-compatible weight names `conv1..conv3`, `fc`.
//! - [`Conv2d`], [`Linear`]: layers built on a candle [`VarBuilder`](candle_nn::VarBuilder),
//!   so weights load from and save to safetensors through a [`VarMap`](candle_nn::VarMap).
//! - [`max_pool2d`]: a 2×2/stride-2 max-pool whose gradient is correct (candle 0.11's
//!   built-in max-pool backward is not; see `docs/architecture.md`).
//! - [`init_seed_cnn`]: seeded, reproducible initial weights with PyTorch's default
//!   initialisation (candle's CPU RNG cannot be seeded).
//!
//! What this crate does not do: read data, train, or compute metrics. It holds no
//! optimizer state; see `cxr-train` for that.
#![warn(missing_docs)]

mod cnn;
mod conv;
mod error;
mod init;
mod linear;
mod pool;

pub use cnn::{CnnConfig, SeedCnn};
pub use conv::Conv2d;
pub use error::{ModelError, Result};
pub use init::{init_seed_cnn, torch_default_uniform};
pub use linear::Linear;
pub use pool::{global_avg_pool, max_pool2d};
