//! One file's bytes through `read_input_bytes`, the reader `cxr predict` uses: DICOM
//! decoding (`decode_dicom_bytes`), then each frame through `fit_square` (centre square
//! crop, Triangle resize to 28). Any bytes give 28 × 28 images or an error message,
//! without a panic, a hang or an unbounded allocation.
#![no_main]

use cxr_data::{DicomWindow, read_input_bytes};
use libfuzzer_sys::fuzz_target;

/// Ceiling on live heap memory per fuzzing process: far above what any input of
/// libFuzzer's sizes may legitimately need (at most 256 MiB of decoded samples and the
/// 8-bit frames), so reaching it means an unbounded allocation.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, 768 << 20);

/// The model's input side (PneumoniaMNIST's 28).
const SIZE: usize = 28;

fuzz_target!(|data: &[u8]| {
    // both display mappings, picked by the input itself so the corpus covers each
    let window = if data.len() % 2 == 0 {
        DicomWindow::Auto
    } else {
        DicomWindow::MinMax
    };
    let Ok(frames) = read_input_bytes(data, SIZE, window) else {
        return;
    };
    for frame in frames {
        assert_eq!(frame.len(), SIZE * SIZE);
    }
});
