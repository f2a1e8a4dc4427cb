//! Candle models for chest X-ray classification.
//!
//! Key types:
//! - [`SeedCnn`]: the seed study's small CNN (three Conv→ReLU→MaxPool blocks, adaptive
//!   average pool, one logit), with torch-compatible weight names `conv1..conv3`, `fc`.
//! - [`Conv2d`], [`Linear`]: layers built on a candle [`VarBuilder`](candle_nn::VarBuilder),
//!   so weights load from and save to safetensors through a [`VarMap`](candle_nn::VarMap).
//! - [`max_pool2d`]: a 2×2/stride-2 max-pool whose gradient is correct (candle 0.11's
//!   built-in max-pool backward is not; see `docs/architecture.md`).
//! - [`conv2d_cpu`], [`relu_max_pool2d`]: the CPU fast paths (im2col + one GEMM with a
//!   hand-written backward; a fused ReLU + max-pool) that [`Conv2d`] and [`SeedCnn`]
//!   use for `f32` on the CPU; [`set_cpu_fast_path`] switches them off for comparison.
//! - [`init_seed_cnn`]: seeded, reproducible initial weights with PyTorch's default
//!   initialisation (candle's CPU RNG cannot be seeded).
//!
//! What this crate does not do: read data, train, or compute metrics. It holds no
//! optimizer state; see `cxr-train` for that.
#![warn(missing_docs)]

mod cnn;
mod conv;
mod cpu_conv;
mod cpu_pool;
mod error;
mod fast_path;
mod init;
mod linear;
mod pool;

pub use cnn::{CnnConfig, SeedCnn};
pub use conv::Conv2d;
pub use cpu_conv::{conv2d_candle, conv2d_cpu};
pub use error::{ModelError, Result};
pub use fast_path::{cpu_fast_path_enabled, set_cpu_fast_path};
pub use init::{init_seed_cnn, torch_default_uniform};
pub use linear::Linear;
pub use pool::{global_avg_pool, max_pool2d, relu_max_pool2d};
