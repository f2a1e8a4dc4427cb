//! The process-wide switch for the CPU fast paths.

use std::sync::atomic::{AtomicBool, Ordering};

static FAST: AtomicBool = AtomicBool::new(true);

/// Turns the CPU fast paths ([`crate::conv2d_cpu`], the fused max-pool) on or off for
/// the whole process. They are on by default; off routes every layer through candle's
/// own ops (used by benchmarks and tests to compare the two).
pub fn set_cpu_fast_path(enabled: bool) {
    FAST.store(enabled, Ordering::Relaxed);
}

/// Whether the CPU fast paths are on (see [`set_cpu_fast_path`]).
pub fn cpu_fast_path_enabled() -> bool {
    FAST.load(Ordering::Relaxed)
}
