//! The image-folder decoder on one file (`decode_image_bytes`, as `load_folder` uses
//! it): any bytes give a `size × size` grayscale image or an error message.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// Ceiling on live heap memory per fuzzing process: far above what any input of
/// libFuzzer's sizes may legitimately need, so reaching it means an unbounded allocation.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, 768 << 20);

/// The model's input side (PneumoniaMNIST's 28; `load_folder` is called with 224 by
/// `cargo xtask`, which only changes the final resize).
const SIZE: usize = 28;

fuzz_target!(|data: &[u8]| {
    if let Ok(pixels) = cxr_data::decode_image_bytes(data, SIZE) {
        assert_eq!(pixels.len(), SIZE * SIZE);
    }
});
