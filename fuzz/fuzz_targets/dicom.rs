//! The DICOM decoder (`decode_dicom_bytes`) on one file, then each frame through the
//! geometry `decode_image` applies (centre square crop, Triangle resize to 28): any
//! bytes give frames of `width × height` gray pixels or an error message, without a
//! panic, a hang or an unbounded allocation.
#![no_main]

use cxr_data::{DicomWindow, decode_dicom_bytes};
use libfuzzer_sys::fuzz_target;

/// Ceiling on live heap memory per fuzzing process: far above what any input of
/// libFuzzer's sizes may legitimately need (at most 256 MiB of decoded samples and the
/// 8-bit frames), so reaching it means an unbounded allocation.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, 768 << 20);

/// The model's input side (PneumoniaMNIST's 28).
const SIZE: u32 = 28;

fuzz_target!(|data: &[u8]| {
    // both display mappings, picked by the input itself so the corpus covers each
    let window = if data.len() % 2 == 0 {
        DicomWindow::Auto
    } else {
        DicomWindow::MinMax
    };
    let Ok(frames) = decode_dicom_bytes(data, window) else {
        return;
    };
    for frame in frames {
        assert_eq!(frame.pixels.len(), frame.width * frame.height);
        assert!(frame.width >= 1 && frame.height >= 1);
        // the same centre crop and resize as `decode_image`
        let gray =
            image::GrayImage::from_raw(frame.width as u32, frame.height as u32, frame.pixels)
                .expect("frame buffer of width × height");
        let (w, h) = gray.dimensions();
        let side = w.min(h);
        let square =
            image::imageops::crop_imm(&gray, (w - side) / 2, (h - side) / 2, side, side).to_image();
        let out =
            image::imageops::resize(&square, SIZE, SIZE, image::imageops::FilterType::Triangle);
        assert_eq!(out.len(), (SIZE * SIZE) as usize);
    }
});
