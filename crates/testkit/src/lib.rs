//! Test helpers shared by cxr's crates, written once: where the shared data and PyTorch
//! fixtures are, npy/npz and DICOM files made in a test, command-line exit checks and
//! float comparisons with a stated relative tolerance.
//!
//! A dev-dependency of the crates, and a dependency of xtask (the bench writes its
//! DICOM files with [`dicom_gray`]); nothing here is part of cxr's API. It depends on no cxr crate,
//! so every crate's tests can use it.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

/// `file` in the folder named by the environment variable `var`, else in
/// `<checkout>/../shared/<sub>/`. When it is absent: `None` with a note on stderr (the
/// test skips), or a failure when `CI` is set (CI always has the shared folder).
pub fn shared_file(var: &str, sub: &str, file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("..").join("shared").join(sub));
    let path = dir.join(file);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} not found (set {var})",
        path.display()
    );
    eprintln!("skipped: {} not found (set {var})", path.display());
    None
}

/// The checkout's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `pneumoniamnist.npz` from `CXR_DATA_DIR` or the shared folder (see [`shared_file`]).
pub fn pneumoniamnist() -> Option<PathBuf> {
    shared_file("CXR_DATA_DIR", "data", "pneumoniamnist.npz")
}

/// A PyTorch fixture from `CXR_FIXTURES` or the shared folder (see [`shared_file`]).
pub fn fixture(file: &str) -> Option<PathBuf> {
    shared_file("CXR_FIXTURES", "fixtures", file)
}

/// npy bytes (format 1.0, header padded to 64 bytes as numpy does) of an array with
/// numpy dtype `descr` (e.g. `|u1`), order flag `fortran`, `shape` and raw `data`
/// (which need not match the shape: tests of bad files use that).
pub fn npy(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// Writes a zip (an npz when the entries are npy files) holding `entries` (name,
/// bytes), deflated when `deflate`, else stored.
pub fn write_zip(path: &Path, entries: &[(String, Vec<u8>)], deflate: bool) {
    use std::io::Write as _;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in entries {
        zip.start_file(name.as_str(), opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// A MedMNIST-layout npz of 28×28 u8 images: for each split (name, count) the images
/// (pseudo-random pixels, brighter for label 1, labels alternating 0, 1, …) and the
/// labels `[n, 1]`, stored entries. The same file every time.
pub fn write_tiny_npz(path: &Path, splits: &[(&str, usize)]) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut entries = Vec::new();
    for &(split, n) in splits {
        let labels: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
        let mut images = Vec::with_capacity(n * 28 * 28);
        for &l in &labels {
            for _ in 0..28 * 28 {
                images.push((next() % 160) as u8 + 60 * l);
            }
        }
        entries.push((
            format!("{split}_images.npy"),
            npy("|u1", false, &[n, 28, 28], &images),
        ));
        entries.push((
            format!("{split}_labels.npy"),
            npy("|u1", false, &[n, 1], &labels),
        ));
    }
    write_zip(path, &entries, false);
}

/// Asserts a finished process' exit code, that its stderr contains every needle and
/// that nothing panicked.
pub fn assert_exit(out: &Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "`{n}` not in stderr: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The largest difference between `a` and `b` relative to `b`'s scale (its largest
/// magnitude, at least `floor`): the error measure of the parity tests.
pub fn rel_err(a: &[f32], b: &[f32], floor: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let scale = b.iter().fold(floor, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Asserts that `a` matches `b` within `tol` of `b`'s scale ([`rel_err`] with floor
/// `f32::MIN_POSITIVE`), naming `what`.
pub fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    let e = rel_err(a, b, f32::MIN_POSITIVE);
    assert!(e <= tol, "{what}: relative error {e:.3e} above {tol:.1e}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_error_scales_with_the_reference() {
        assert_eq!(rel_err(&[1.0, 2.0], &[1.0, 2.0], 0.0), 0.0);
        assert!((rel_err(&[0.011], &[0.010], 0.0) - 0.1).abs() < 1e-6);
        assert!(std::panic::catch_unwind(|| assert_close("x", &[1.02], &[1.0], 0.01)).is_err());
        assert_close("x", &[1.005], &[1.0], 0.01);
    }

    #[test]
    fn npy_header_is_padded_to_64_bytes() {
        let b = npy("|u1", false, &[2], &[7, 9]);
        assert_eq!(&b[..6], b"\x93NUMPY");
        assert_eq!((b.len() - 2) % 64, 0);
    }
}

/// A gray DICOM file (explicit VR little endian, secondary capture) with `frames`
/// frames of `rows × cols` pixels of `bits` bits (8: `pixels` are bytes; 16: `pixels`
/// are u16 values, little endian), `photometric` `MONOCHROME1` or `MONOCHROME2`, and
/// the optional `(intercept, slope)` rescale and `(centre, width)` window.
#[allow(clippy::too_many_arguments)]
pub fn dicom_gray(
    rows: u16,
    cols: u16,
    frames: u32,
    bits: u16,
    photometric: &str,
    pixels: DicomPixels,
    rescale: Option<(f64, f64)>,
    window: Option<(f64, f64)>,
) -> Vec<u8> {
    use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
    const SC: &str = "1.2.840.10008.5.1.4.1.1.7";
    let (vr, value) = match pixels {
        DicomPixels::U8(p) => (VR::OB, PrimitiveValue::U8(p.into())),
        DicomPixels::U16(p) => (VR::OW, PrimitiveValue::U16(p.into())),
    };
    let mut elements = vec![
        DataElement::new(Tag(0x0008, 0x0016), VR::UI, SC),
        DataElement::new(
            Tag(0x0008, 0x0018),
            VR::UI,
            "1.2.826.0.1.3680043.10.1145.99",
        ),
        DataElement::new(Tag(0x0028, 0x0002), VR::US, PrimitiveValue::from(1u16)),
        DataElement::new(Tag(0x0028, 0x0004), VR::CS, photometric),
        DataElement::new(Tag(0x0028, 0x0008), VR::IS, frames.to_string()),
        DataElement::new(Tag(0x0028, 0x0010), VR::US, PrimitiveValue::from(rows)),
        DataElement::new(Tag(0x0028, 0x0011), VR::US, PrimitiveValue::from(cols)),
        DataElement::new(Tag(0x0028, 0x0100), VR::US, PrimitiveValue::from(bits)),
        DataElement::new(Tag(0x0028, 0x0101), VR::US, PrimitiveValue::from(bits)),
        DataElement::new(Tag(0x0028, 0x0102), VR::US, PrimitiveValue::from(bits - 1)),
        DataElement::new(Tag(0x0028, 0x0103), VR::US, PrimitiveValue::from(0u16)),
    ];
    if let Some((centre, width)) = window {
        elements.push(DataElement::new(
            Tag(0x0028, 0x1050),
            VR::DS,
            centre.to_string(),
        ));
        elements.push(DataElement::new(
            Tag(0x0028, 0x1051),
            VR::DS,
            width.to_string(),
        ));
    }
    if let Some((intercept, slope)) = rescale {
        elements.push(DataElement::new(
            Tag(0x0028, 0x1052),
            VR::DS,
            intercept.to_string(),
        ));
        elements.push(DataElement::new(
            Tag(0x0028, 0x1053),
            VR::DS,
            slope.to_string(),
        ));
    }
    elements.push(DataElement::new(Tag(0x7FE0, 0x0010), vr, value));
    let obj = InMemDicomObject::from_element_iter(elements)
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax("1.2.840.10008.1.2.1")
                .media_storage_sop_class_uid(SC),
        )
        .expect("a valid file meta table");
    let mut out = Vec::new();
    obj.write_all(&mut out).expect("DICOM written to memory");
    out
}

/// Pixel values for [`dicom_gray`].
#[derive(Debug, Clone)]
pub enum DicomPixels {
    /// 8-bit values.
    U8(Vec<u8>),
    /// 16-bit values.
    U16(Vec<u16>),
}
