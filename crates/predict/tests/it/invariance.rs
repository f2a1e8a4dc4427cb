//! Every PneumoniaMNIST test image written as 8-bit, RGB and 16-bit PNG, as 8-bit
//! MONOCHROME2 DICOM, as 16-bit MONOCHROME1 DICOM with rescale and window, and as frames
//! of multi-frame DICOM files: `predict` gives the run's own test probability, bit for
//! bit (every format decodes to the same 8-bit pixels).

use std::path::Path;

use cxr_runfolder::read_predictions;
use cxr_testkit::{DicomPixels, dicom_gray};

use crate::{options, train_cnn};

const FRAMES_PER_FILE: usize = 8;

fn write_png(path: &Path, img: image::DynamicImage) {
    img.save_with_format(path, image::ImageFormat::Png).unwrap();
}

#[test]
fn every_format_predicts_the_runs_own_test_probabilities_bit_for_bit() {
    let Some(npz) = cxr_testkit::pneumoniamnist() else {
        return;
    };
    let data = cxr_data::load_npz(&npz).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    train_cnn(&data, &run);
    let reference: Vec<f64> = read_predictions(&run)
        .unwrap()
        .into_iter()
        .filter(|r| r.split == "test")
        .map(|r| r.prob)
        .collect();
    let test = &data.test;
    assert_eq!(reference.len(), test.len());
    let (h, w) = (test.height as u32, test.width as u32);

    let formats = [
        "gray8",
        "rgb",
        "gray16",
        "dcm8",
        "dcm16_mono1",
        "multiframe",
    ];
    for f in formats {
        std::fs::create_dir_all(tmp.path().join(f)).unwrap();
    }
    for i in 0..test.len() {
        let px = test.image(i).to_vec();
        let name = |f: &str, ext: &str| tmp.path().join(f).join(format!("{i:04}.{ext}"));
        let gray = image::GrayImage::from_raw(w, h, px.clone()).unwrap();
        write_png(&name("gray8", "png"), gray.clone().into());
        write_png(
            &name("rgb", "png"),
            image::DynamicImage::ImageLuma8(gray).to_rgb8().into(),
        );
        let wide: Vec<u16> = px.iter().map(|&v| v as u16 * 257).collect();
        let g16 = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(w, h, wide).unwrap();
        write_png(
            &name("gray16", "png"),
            image::DynamicImage::ImageLuma16(g16),
        );
        let dcm8 = dicom_gray(
            h as u16,
            w as u16,
            1,
            8,
            "MONOCHROME2",
            DicomPixels::U8(px.clone()),
            None,
            None,
        );
        std::fs::write(name("dcm8", "dcm"), dcm8).unwrap();
        // s = (255 − v)·4 + 100, rescaled to x = 0.5 s − 50 = 510 − 2v; the window
        // (255.5, 511) maps x to 255 − v and MONOCHROME1 inverts it back to v.
        let stored: Vec<u16> = px.iter().map(|&v| (255 - v as u16) * 4 + 100).collect();
        let dcm16 = dicom_gray(
            h as u16,
            w as u16,
            1,
            16,
            "MONOCHROME1",
            DicomPixels::U16(stored),
            Some((-50.0, 0.5)),
            Some((255.5, 511.0)),
        );
        std::fs::write(name("dcm16_mono1", "dcm"), dcm16).unwrap();
    }
    for (k, first) in (0..test.len()).step_by(FRAMES_PER_FILE).enumerate() {
        let last = (first + FRAMES_PER_FILE).min(test.len());
        let px: Vec<u8> = (first..last).flat_map(|i| test.image(i).to_vec()).collect();
        let bytes = dicom_gray(
            h as u16,
            w as u16,
            (last - first) as u32,
            8,
            "MONOCHROME2",
            DicomPixels::U8(px),
            None,
            None,
        );
        std::fs::write(
            tmp.path().join("multiframe").join(format!("{k:03}.dcm")),
            bytes,
        )
        .unwrap();
    }

    for f in formats {
        let out = tmp.path().join(format!("out_{f}"));
        let got = cxr_predict::predict(&run, &[tmp.path().join(f)], &options(&out)).unwrap();
        let probs: Vec<f64> = got.rows.iter().map(|r| r.prob.unwrap()).collect();
        assert_eq!(probs.len(), reference.len(), "{f}: rows");
        assert!(got.rows.iter().all(|r| r.error.is_empty()), "{f}: errors");
        if f == "multiframe" {
            for (j, r) in got.rows.iter().enumerate() {
                assert_eq!(r.frame, j % FRAMES_PER_FILE, "{f}: frame numbers");
            }
        }
        for (i, (p, r)) in probs.iter().zip(&reference).enumerate() {
            assert_eq!(
                p.to_bits(),
                r.to_bits(),
                "{f}: test image {i}: predict {p} against the run's {r}"
            );
        }
    }
}
