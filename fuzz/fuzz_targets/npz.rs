//! `load_npz_bytes`: any bytes give a dataset or a `DataError`, never a panic, a hang
//! or an allocation beyond what the input can hold.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

/// Ceiling on live heap memory per fuzzing process: far above what any input of
/// libFuzzer's sizes may legitimately need, so reaching it means an unbounded allocation.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, 768 << 20);

fuzz_target!(|data: &[u8]| {
    if let Ok(ds) = cxr_data::load_npz_bytes(data, Path::new("fuzz.npz")) {
        // A dataset that loads is consistent with its own shape.
        for s in [&ds.train, &ds.val, &ds.test] {
            assert_eq!(s.images.len(), s.labels.len() * s.height * s.width);
            assert!(s.labels.iter().all(|&l| l <= 1));
        }
    }
});
