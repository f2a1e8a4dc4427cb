//! CPU kernels of cxr as candle custom ops, each with a hand-written backward.
//!
//! Key items:
//! - Convolutions: [`conv2d_cpu`] (one implicit-im2col GEMM each way; [`conv2d_candle`]
//!   is candle's own for comparison), [`conv3x3_winograd`] (Winograd F(2×2, 3×3) for
//!   3×3 stride-1 convolutions) and [`conv3x3_relu_max_pool2d`] (the seed CNN's block —
//!   convolution, bias, ReLU, 2×2 max-pool — as one op whose Winograd output tiles are
//!   the pool windows).
//! - [`batch_norm_cpu`]: BatchNorm's normalisation, affine map and the following ReLU or
//!   residual add + ReLU ([`Act`]) as one op; [`conv_batch_norm_cpu`] runs a bias-free
//!   convolution ([`ConvKind`]), its BatchNorm (+ ReLU) and optionally a max-pool
//!   ([`PoolSpec`]) as one autograd node.
//! - [`max_pool2d_cpu`]: max-pools with PyTorch's tie and NaN rules, ReLU fused.
//! - [`sgemm_f32`]: the AVX-512 `f32` GEMM the ops above run on.
//! - [`AdamStep`]: the element-wise Adam / AdamW update, in place.
//! - Switches for benchmarks and tests: [`set_cpu_fast_path`], [`set_cpu_fast_norm`],
//!   [`set_cpu_winograd`], [`set_cpu_sgemm`]; the `*_applies` functions say whether an op
//!   takes given tensors (contiguous `f32` on the CPU, supported shapes).
//!
//! Results are bit-for-bit the same with and without AVX-512: the vector code runs the
//! same operations in the same order.
//!
//! What this crate does not do: define layers or networks (`cxr-models` decides when
//! each op applies and falls back to candle's ops elsewhere), or run on a GPU. It is
//! the only crate of cxr with `unsafe` code: AVX-512 intrinsics in [`sgemm_f32`]'s
//! module and calls of functions compiled for AVX-512 after detecting it (`simd_fn!`).
#![warn(missing_docs)]

#[macro_use]
mod simd;

mod adam;
mod buf;
mod cpu_conv;
mod cpu_conv_bn;
mod cpu_norm;
mod cpu_pool;
mod cpu_winograd;
mod fast_path;
mod sgemm;

pub use adam::AdamStep;
pub use cpu_conv::{conv_fast_path_applies, conv2d_candle, conv2d_cpu};
pub use cpu_conv_bn::{ConvKind, conv_batch_norm_cpu};
pub use cpu_norm::{Act, Norm, batch_norm_cpu, bn_fast_path_applies};
pub use cpu_pool::{PoolSpec, max_pool2d_cpu, pool_fast_path_applies};
pub use cpu_winograd::{
    conv3x3_relu_max_pool2d, conv3x3_winograd, fused_block_applies, set_cpu_winograd,
    winograd_conv_applies,
};
pub use fast_path::{
    cpu_fast_norm_enabled, cpu_fast_path_enabled, set_cpu_fast_norm, set_cpu_fast_path,
};
pub use sgemm::{MatLayout, cpu_sgemm_active, set_cpu_sgemm, sgemm_f32};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
