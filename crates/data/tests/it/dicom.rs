//! DICOM decoding: pydicom's reference files (`tests/fixtures/dicom/`, made by
//! `make_dicom_fixtures.py`), files built here with dicom-object, bad and mutilated
//! files, and the fuzzer's regressions.

use std::path::{Path, PathBuf};

use cxr_data::{DicomFrame, DicomWindow, decode_dicom, decode_dicom_bytes, is_dicom};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dicom")
}

/// One line of `fixtures.tsv`.
#[derive(Debug)]
enum Case {
    Ok {
        file: String,
        window: DicomWindow,
        width: usize,
        height: usize,
        frames: usize,
        tolerance: u8,
        expected: String,
    },
    Err {
        file: String,
        reason: String,
    },
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixtures().join("fixtures.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            match f[1] {
                "ok" => Case::Ok {
                    file: f[0].into(),
                    window: match f[2] {
                        "auto" => DicomWindow::Auto,
                        "minmax" => DicomWindow::MinMax,
                        w => panic!("unknown window {w}"),
                    },
                    width: f[3].parse().unwrap(),
                    height: f[4].parse().unwrap(),
                    frames: f[5].parse().unwrap(),
                    tolerance: f[6].parse().unwrap(),
                    expected: f[7].into(),
                },
                "err" => Case::Err {
                    file: f[0].into(),
                    reason: f[2].into(),
                },
                k => panic!("unknown kind {k}"),
            }
        })
        .collect()
}

#[test]
fn every_good_fixture_matches_pydicom() {
    let mut checked = 0;
    for case in cases() {
        let Case::Ok {
            file,
            window,
            width,
            height,
            frames,
            tolerance,
            expected,
        } = case
        else {
            continue;
        };
        if file.starts_with("j2k_") && !cfg!(feature = "jpeg2000") {
            // Without the feature JPEG 2000 is refused, saying how to get it.
            let e = decode_dicom(&fixtures().join(&file), window).unwrap_err();
            assert!(
                e.contains("jpeg2000") && e.contains("1.2.840.10008.1.2.4.9"),
                "{file}: {e}"
            );
            continue;
        }
        let got =
            decode_dicom(&fixtures().join(&file), window).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut want = std::fs::read(fixtures().join(&expected)).unwrap();
        if expected.ends_with(".rgb") {
            // pydicom's RGB to gray by the documented colour mapping: `image`'s to_luma8
            // (then, for MinMax, the stretch over the frame's own range)
            assert_eq!(want.len(), frames * width * height * 3, "{expected}: size");
            want = want
                .chunks(width * height * 3)
                .flat_map(|rgb| {
                    let mut luma = rgb_to_luma8(width, height, rgb);
                    if window == DicomWindow::MinMax {
                        stretch(&mut luma);
                    }
                    luma
                })
                .collect();
        }
        assert_eq!(got.len(), frames, "{file}: frames");
        assert_eq!(want.len(), frames * width * height, "{expected}: size");
        let mut max_diff = 0u8;
        for (f, frame) in got.iter().enumerate() {
            assert_eq!((frame.width, frame.height), (width, height), "{file}");
            let want = &want[f * width * height..(f + 1) * width * height];
            for (i, (&a, &b)) in frame.pixels.iter().zip(want).enumerate() {
                let d = a.abs_diff(b);
                assert!(
                    d <= tolerance,
                    "{file} ({window:?}) frame {f} pixel ({}, {}): ours {a}, pydicom {b}",
                    i % width,
                    i / width
                );
                max_diff = max_diff.max(d);
            }
        }
        eprintln!("{file} ({window:?}): {frames} frame(s) match, largest difference {max_diff}");
        checked += 1;
    }
    let expected = if cfg!(feature = "jpeg2000") { 18 } else { 16 };
    assert!(checked >= expected, "only {checked} good fixtures");
}

fn rgb_to_luma8(width: usize, height: usize, rgb: &[u8]) -> Vec<u8> {
    let img = image::RgbImage::from_raw(width as u32, height as u32, rgb.to_vec()).unwrap();
    image::DynamicImage::ImageRgb8(img).to_luma8().into_raw()
}

/// `⌊255 · (g − min) / (max − min) + 0.5⌋`, as documented for MinMax on colour.
fn stretch(v: &mut [u8]) {
    let (lo, hi) = (*v.iter().min().unwrap(), *v.iter().max().unwrap());
    for x in v.iter_mut() {
        *x = ((*x - lo) as f64 * 255.0 / (hi - lo) as f64 + 0.5).floor() as u8;
    }
}

#[test]
fn every_bad_fixture_is_an_error_with_its_reason() {
    let mut checked = 0;
    for case in cases() {
        let Case::Err { file, reason } = case else {
            continue;
        };
        match decode_dicom(&fixtures().join(&file), DicomWindow::Auto) {
            Ok(frames) => panic!("{file}: expected an error, got {} frame(s)", frames.len()),
            Err(e) => {
                eprintln!("{file}: {e}");
                assert!(e.contains(&reason), "{file}: `{reason}` not in `{e}`");
            }
        }
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} bad fixtures");
}

#[test]
fn multi_frame_gives_one_frame_each() {
    let frames = decode_dicom(&fixtures().join("multiframe_3.dcm"), DicomWindow::Auto).unwrap();
    assert_eq!(frames.len(), 3);
    assert_ne!(frames[0].pixels, frames[1].pixels);
}

#[test]
fn is_dicom_sees_the_magic() {
    let bytes = std::fs::read(fixtures().join("explicit_le_8bit.dcm")).unwrap();
    assert!(is_dicom(&bytes));
    assert!(!is_dicom(&png_gray(2, 2, &[0, 1, 2, 3])));
    assert!(!is_dicom(b""));
    // no preamble: `DICM` first, as dicom-rs also reads
    assert!(is_dicom(&bytes[128..]));
    let frames = decode_dicom_bytes(&bytes[128..], DicomWindow::Auto).unwrap();
    let with = decode_dicom_bytes(&bytes, DicomWindow::Auto).unwrap();
    assert_eq!(frames, with);
    let e = decode_dicom_bytes(&png_gray(2, 2, &[0; 4]), DicomWindow::Auto).unwrap_err();
    assert!(e.contains("not a DICOM file"), "{e}");
}

// ---- files built here ---------------------------------------------------------------

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// A gray image as a DICOM file (explicit VR little endian) with `extra` elements.
fn dicom_file(
    rows: u16,
    cols: u16,
    bits: u16,
    photometric: &str,
    pixels: PrimitiveValue,
    extra: Vec<DataElement<InMemDicomObject>>,
) -> Vec<u8> {
    let samples: u16 = if photometric == "RGB" { 3 } else { 1 };
    let mut elements = vec![
        DataElement::new(Tag(0x0008, 0x0016), VR::UI, "1.2.840.10008.5.1.4.1.1.7"),
        DataElement::new(Tag(0x0008, 0x0018), VR::UI, "1.2.826.0.1.3680043.10.1145.7"),
        DataElement::new(Tag(0x0028, 0x0002), VR::US, PrimitiveValue::from(samples)),
        DataElement::new(Tag(0x0028, 0x0004), VR::CS, photometric),
        DataElement::new(Tag(0x0028, 0x0010), VR::US, PrimitiveValue::from(rows)),
        DataElement::new(Tag(0x0028, 0x0011), VR::US, PrimitiveValue::from(cols)),
        DataElement::new(Tag(0x0028, 0x0100), VR::US, PrimitiveValue::from(bits)),
        DataElement::new(Tag(0x0028, 0x0101), VR::US, PrimitiveValue::from(bits)),
        DataElement::new(Tag(0x0028, 0x0102), VR::US, PrimitiveValue::from(bits - 1)),
        DataElement::new(Tag(0x0028, 0x0103), VR::US, PrimitiveValue::from(0u16)),
        DataElement::new(
            Tag(0x7FE0, 0x0010),
            if bits == 8 { VR::OB } else { VR::OW },
            pixels,
        ),
    ];
    if samples == 3 {
        elements.push(DataElement::new(
            Tag(0x0028, 0x0006),
            VR::US,
            PrimitiveValue::from(0u16),
        ));
    }
    elements.extend(extra);
    let obj = InMemDicomObject::from_element_iter(elements)
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(EXPLICIT_LE)
                .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7"),
        )
        .unwrap();
    let mut out = Vec::new();
    obj.write_all(&mut out).unwrap();
    out
}

fn png(img: image::DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    bytes
}

fn png_gray(w: u32, h: u32, px: &[u8]) -> Vec<u8> {
    png(image::GrayImage::from_raw(w, h, px.to_vec())
        .unwrap()
        .into())
}

/// The pixels `image` gives for a PNG, through `to_luma8` as `decode_image` does.
fn luma_of_png(bytes: &[u8]) -> Vec<u8> {
    image::load_from_memory(bytes)
        .unwrap()
        .to_luma8()
        .into_raw()
}

fn single(bytes: &[u8], window: DicomWindow) -> DicomFrame {
    let mut frames = decode_dicom_bytes(bytes, window).unwrap();
    assert_eq!(frames.len(), 1);
    frames.remove(0)
}

#[test]
fn monochrome1_with_rescale_and_window_decodes_to_exactly_v() {
    // s = (255 − v)·4 + 100; x = 0.5 s − 50 = 510 − 2v; the window 255.5 / 511 maps x to
    // x / 2 = 255 − v exactly, and MONOCHROME1 inverts it back to v.
    let (w, h) = (16u16, 16u16);
    let v: Vec<u8> = (0..=255).collect();
    let s: Vec<u16> = v.iter().map(|&v| (255 - v as u16) * 4 + 100).collect();
    let bytes = dicom_file(
        h,
        w,
        16,
        "MONOCHROME1",
        PrimitiveValue::U16(s.into()),
        vec![
            DataElement::new(Tag(0x0028, 0x1052), VR::DS, "-50"),
            DataElement::new(Tag(0x0028, 0x1053), VR::DS, "0.5"),
            DataElement::new(Tag(0x0028, 0x1050), VR::DS, "255.5"),
            DataElement::new(Tag(0x0028, 0x1051), VR::DS, "511"),
        ],
    );
    let frame = single(&bytes, DicomWindow::Auto);
    assert_eq!((frame.width, frame.height), (16, 16));
    assert_eq!(frame.pixels, v);
    // MinMax: x spans 0..=510 over the frame, stretched and inverted: v again
    assert_eq!(single(&bytes, DicomWindow::MinMax).pixels, v);
}

#[test]
fn eight_bit_gray_maps_as_the_same_png() {
    let (w, h) = (20u32, 13u32);
    let px: Vec<u8> = (0..w * h).map(|i| (i * 37 % 256) as u8).collect();
    let bytes = dicom_file(
        h as u16,
        w as u16,
        8,
        "MONOCHROME2",
        PrimitiveValue::U8(px.clone().into()),
        vec![],
    );
    let frame = single(&bytes, DicomWindow::Auto);
    assert_eq!(frame.pixels, luma_of_png(&png_gray(w, h, &px)));
    assert_eq!(frame.pixels, px);
}

#[test]
fn rgb_maps_as_the_same_png_through_to_luma8() {
    let (w, h) = (17u32, 9u32);
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 73 % 251) as u8).collect();
    let bytes = dicom_file(
        h as u16,
        w as u16,
        8,
        "RGB",
        PrimitiveValue::U8(rgb.clone().into()),
        vec![],
    );
    let want = luma_of_png(&png(image::RgbImage::from_raw(w, h, rgb).unwrap().into()));
    assert_eq!(single(&bytes, DicomWindow::Auto).pixels, want);
}

#[test]
fn first_window_of_several_is_used() {
    let px: Vec<u8> = (0..=255).collect();
    let with = |centres: &str, widths: &str| {
        dicom_file(
            16,
            16,
            8,
            "MONOCHROME2",
            PrimitiveValue::U8(px.clone().into()),
            vec![
                DataElement::new(Tag(0x0028, 0x1050), VR::DS, centres),
                DataElement::new(Tag(0x0028, 0x1051), VR::DS, widths),
            ],
        )
    };
    let one = single(&with("128", "256"), DicomWindow::Auto);
    let two = single(&with("128\\40", "256\\20"), DicomWindow::Auto);
    assert_eq!(one, two);
    // centre 128, width 256: y = (v − 127.5) / 255 · 255 + 127.5 = v
    assert_eq!(one.pixels, px);
}

// ---- hostile and mutilated input ------------------------------------------------------

/// A file meta group (explicit VR little endian) followed by `data_set`.
fn raw_file(data_set: &[u8]) -> Vec<u8> {
    let mut meta = Vec::new();
    let mut elem = |tag: u16, vr: &[u8; 2], value: &[u8]| {
        meta.extend(0x0002u16.to_le_bytes());
        meta.extend(tag.to_le_bytes());
        meta.extend(vr);
        if vr == b"OB" {
            meta.extend([0, 0]);
            meta.extend((value.len() as u32).to_le_bytes());
        } else {
            meta.extend((value.len() as u16).to_le_bytes());
        }
        meta.extend(value);
    };
    elem(0x0001, b"OB", &[0, 1]);
    elem(0x0002, b"UI", b"1.2.840.10008.5.1.4.1.1.7\0");
    elem(0x0003, b"UI", b"1.2.3.4\0");
    elem(0x0010, b"UI", b"1.2.840.10008.1.2.1\0");
    elem(0x0012, b"UI", b"1.2.3.5\0");
    let mut out = vec![0u8; 128];
    out.extend(b"DICM");
    out.extend([0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    out.extend((meta.len() as u32).to_le_bytes());
    out.extend(meta);
    out.extend(data_set);
    out
}

#[test]
fn a_declared_4_gib_element_is_refused_before_allocating() {
    // (0009,0010) OB declaring 0xFFFFFFF0 bytes, in a 200-byte file
    let mut ds = vec![0x09, 0x00, 0x10, 0x00, b'O', b'B', 0, 0];
    ds.extend(0xFFFF_FFF0u32.to_le_bytes());
    ds.extend([0u8; 16]);
    let e = decode_dicom_bytes(&raw_file(&ds), DicomWindow::Auto).unwrap_err();
    assert!(e.contains("truncated") && e.contains("4294967280"), "{e}");
    // the same in the meta group
    let mut bytes = raw_file(&[]);
    let at = bytes.len();
    bytes.extend([0x02, 0x00, 0x00, 0x01, b'O', b'B', 0, 0]);
    bytes.extend(0xFFFF_FFF0u32.to_le_bytes());
    // group length covers the new element
    let gl = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) + 12;
    bytes[140..144].copy_from_slice(&gl.to_le_bytes());
    assert_eq!(at, bytes.len() - 12);
    let e = decode_dicom_bytes(&bytes, DicomWindow::Auto).unwrap_err();
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn deeply_nested_sequences_are_refused_not_a_stack_overflow() {
    // (0040,A730) SQ of undefined length, containing an item of undefined length,
    // containing the next sequence, 100 000 levels deep
    let level = [
        0x40, 0x00, 0x30, 0xA7, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, // sequence
        0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF, // item
    ];
    let ds: Vec<u8> = level
        .iter()
        .copied()
        .cycle()
        .take(level.len() * 100_000)
        .collect();
    let e = decode_dicom_bytes(&raw_file(&ds), DicomWindow::Auto).unwrap_err();
    assert!(e.contains("nested more than"), "{e}");
    // a few levels are fine (the error is then the missing pixel data)
    let ds: Vec<u8> = level
        .iter()
        .copied()
        .cycle()
        .take(level.len() * 8)
        .collect();
    let e = decode_dicom_bytes(&raw_file(&ds), DicomWindow::Auto).unwrap_err();
    assert!(!e.contains("nested"), "{e}");
}

/// Every prefix and every single-byte change of some fixtures: an `Ok` or an `Err`,
/// never a panic (a quick, deterministic cousin of the fuzz target).
#[test]
fn mutilated_fixtures_never_panic() {
    for name in [
        "explicit_le_8bit.dcm",
        "rle_16bit.dcm",
        "rle_rgb.dcm",
        "jpeg_baseline_8bit.dcm",
        "jpeg_lossless_12bit.dcm",
        "j2k_lossless_16bit.dcm",
        "j2k_rgb.dcm",
        "deflated_8bit.dcm",
        "voi_lut_12bit.dcm",
        "implicit_le_12bit.dcm",
    ] {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        let mut errors = 0;
        for cut in 0..bytes.len() {
            errors += decode_dicom_bytes(&bytes[..cut], DicomWindow::Auto).is_err() as usize;
        }
        // a cut in the trailing item delimiters of encapsulated pixel data is harmless
        assert!(errors >= bytes.len() - 16, "{name}: {errors} errors");
        let step = (bytes.len() / 600).max(1);
        for i in (0..bytes.len()).step_by(step) {
            for v in [0x00, 0xFF, bytes[i] ^ 0x80] {
                let mut m = bytes.clone();
                m[i] = v;
                let _ = decode_dicom_bytes(&m, DicomWindow::Auto);
                let _ = decode_dicom_bytes(&m, DicomWindow::MinMax);
            }
        }
    }
}

/// Inputs the fuzz target once crashed or hung on (`fuzz/regressions/dicom/`).
#[test]
fn fuzz_regressions_decode_or_fail_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/dicom");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let start = std::time::Instant::now();
        let result = decode_dicom(&path, DicomWindow::Auto);
        eprintln!("{}: {:?}", path.display(), result.as_ref().map(|f| f.len()));
        assert!(
            start.elapsed().as_secs() < 10,
            "{}: too slow",
            path.display()
        );
    }
}
