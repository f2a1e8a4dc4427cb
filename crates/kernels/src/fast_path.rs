//! The process-wide switch for the CPU fast paths.

use std::sync::atomic::{AtomicBool, Ordering};

static FAST: AtomicBool = AtomicBool::new(true);
static FAST_NORM: AtomicBool = AtomicBool::new(true);

/// Turns the CPU fast paths ([`crate::conv2d_cpu`], the fused max-pool, the fused
/// BatchNorm) on or off for
/// the whole process. They are on by default; off routes every layer through candle's
/// own ops (used by benchmarks and tests to compare the two).
pub fn set_cpu_fast_path(enabled: bool) {
    FAST.store(enabled, Ordering::Relaxed);
}

/// Whether the CPU fast paths are on (see [`set_cpu_fast_path`]).
pub fn cpu_fast_path_enabled() -> bool {
    FAST.load(Ordering::Relaxed)
}

/// Turns only the fused BatchNorm fast path on or off (the convolution and pool fast
/// paths follow [`set_cpu_fast_path`] alone); for benchmarks that measure the fused
/// BatchNorm against candle's ops with everything else equal.
pub fn set_cpu_fast_norm(enabled: bool) {
    FAST_NORM.store(enabled, Ordering::Relaxed);
}

/// Whether the fused BatchNorm runs: the fast paths are on ([`set_cpu_fast_path`]) and
/// the BatchNorm one is not switched off by itself.
pub fn cpu_fast_norm_enabled() -> bool {
    cpu_fast_path_enabled() && FAST_NORM.load(Ordering::Relaxed)
}
