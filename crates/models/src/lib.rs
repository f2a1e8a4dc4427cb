//! Candle models for chest X-ray classification.
//!
//! Key types:
//! - [`SeedCnn`]: the seed study's small CNN (three Conv→ReLU→MaxPool blocks, adaptive
//!   average pool, one logit), with torch-compatible weight names `conv1..conv3`, `fc`.
//! - [`Conv2d`], [`Linear`]: layers built on a candle [`VarBuilder`](candle_nn::VarBuilder),
//!   so weights load from and save to safetensors through a [`VarMap`](candle_nn::VarMap).
//! - [`max_pool2d`]: a 2×2/stride-2 max-pool whose gradient is correct (candle 0.11's
//!   built-in max-pool backward is not; see `docs/architecture.md`).
//! - [`conv3x3_relu_max_pool2d`]: the seed CNN's block (3×3 convolution, bias, ReLU, 2×2
//!   max-pool) as one CPU op — Winograd F(2×2, 3×3) whose output tiles are the pool
//!   windows — used by [`Conv2d::forward_relu_max_pool2d`] and so by [`SeedCnn`];
//!   [`set_cpu_winograd`] switches it off for comparison.
//! - [`conv2d_cpu`], [`relu_max_pool2d`]: the CPU fast paths (one implicit-im2col GEMM with
//!   a hand-written backward; a fused ReLU + max-pool) that [`Conv2d`], [`SeedCnn`] and
//!   [`ResNet18`] use for `f32` on the CPU, as does [`BatchNorm2d`] (one fused op for
//!   normalisation, affine map and the following ReLU or residual add + ReLU, each way);
//!   [`set_cpu_fast_path`] switches them off for comparison. Their GEMMs use this
//!   `cxr-kernels`' AVX-512 kernel where the CPU has it ([`set_cpu_sgemm`] switches back to
//!   candle's matmul).
//! - [`Classifier`]: what training, the audit and prediction need of a network (logits
//!   in train or eval mode, the feature map and head Grad-CAM differentiates, parameter
//!   groups for fine-tuning); [`build_classifier`] builds one by name (`cnn`, `resnet18`)
//!   from its variables.
//! - [`Ensemble`]: members of one network kind combined as a weighted mean of their
//!   logits, itself a [`Classifier`] (Grad-CAM included); [`load_ensemble`] reads one
//!   weights file holding every member under [`member_prefix`].
//! - [`ResNet18`]: torchvision/timm ResNet18 (same weight names) with trainable
//!   parameters and real train/eval [`BatchNorm2d`]; [`imagenet_input`] turns grayscale
//!   batches into its normalised 3-channel input; [`ResNet18::param_groups`] splits
//!   body, head and BatchNorm buffers for optimizers.
//! - [`max_pool2d_3x3_s2`]: ResNet's stem pool with a correct gradient.
//! - [`parse_device`] (`cpu`, `cuda[:N]`, `metal`, `auto`) and [`device_name`].
//! - [`WeightsSource`] (`hub:owner/name`, `PATH.safetensors`, `none`),
//!   [`fetch_hub_file`] (hf-hub cache, offline mode) and [`load_resnet18_weights`]
//!   (strict body, new head).
//! - [`init_seed_cnn`], [`init_resnet18`]: seeded, reproducible initial weights as
//!   PyTorch/torchvision initialise them (candle's CPU RNG cannot be seeded).
//!
//! The CPU kernels these layers dispatch to live in `cxr-kernels`; the switches that
//! compare them with candle's own ops are re-exported here.
//!
//! What this crate does not do: read data, train, or compute metrics. It holds no
//! optimizer state; see `cxr-train` for that.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod batchnorm;
mod classifier;
mod cnn;
mod conv;
mod device;
mod ensemble;
mod error;
mod init;
mod linear;
mod pool;
mod resnet;
mod weights;

pub use batchnorm::{BN_BUFFERS, BN_EPS, BN_MOMENTUM, BN_PARAMS, BatchNorm2d};

pub use classifier::{CLASSIFIERS, Classifier, build_classifier, load_classifier};
pub use cnn::{CnnConfig, SeedCnn};
pub use conv::Conv2d;
/// The CPU kernels' switches, re-exported so that a program built on the networks
/// alone can compare the fast path with candle's own ops.
pub use cxr_kernels::{
    conv2d_candle, conv2d_cpu, conv3x3_relu_max_pool2d, conv3x3_winograd, cpu_fast_path_enabled,
    cpu_sgemm_active, set_cpu_fast_norm, set_cpu_fast_path, set_cpu_sgemm, set_cpu_winograd,
};
pub use device::{device_name, parse_device};
pub use ensemble::{Ensemble, load_ensemble, member_prefix};
pub use error::{ModelError, Result};
pub use init::{init_resnet18, init_seed_cnn, normal, torch_default_uniform};
pub use linear::Linear;
pub use pool::{global_avg_pool, max_pool2d, max_pool2d_3x3_s2, relu_max_pool2d};
pub use resnet::{
    BasicBlock, IMAGENET_MEAN, IMAGENET_STD, ParamGroups, RESNET18_FEATURES, ResNet18,
    ResNetConfig, TensorRole, TensorSpec, imagenet_input,
};
pub use weights::{
    DEFAULT_WEIGHTS, HUB_WEIGHTS_FILE, HubOptions, LoadReport, WeightsSource, fetch_hub_file,
    load_resnet18_weights,
};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
