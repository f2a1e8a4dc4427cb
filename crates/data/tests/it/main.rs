//! Integration tests for cxr-data: the real PneumoniaMNIST file, locating and
//! downloading it, and every bad input, each asserting the error variant and that the
//! message names the file (and the key).

mod bad_inputs;
mod dicom;
mod folder;
mod locate;
mod npz_ok;
mod patients;

use std::path::{Path, PathBuf};

use cxr_data::DataError;

/// One array for [`write_npz`]: name, numpy dtype string, order, shape, raw bytes.
#[derive(Debug, Clone)]
pub struct Arr {
    /// Array name without `.npy`.
    pub name: String,
    /// numpy dtype string, e.g. `|u1`.
    pub descr: String,
    /// Declared `fortran_order`.
    pub fortran: bool,
    /// Declared shape (need not match the data).
    pub shape: Vec<usize>,
    /// Raw bytes after the header.
    pub data: Vec<u8>,
}

/// npy bytes of `a` ([`cxr_testkit::npy`]).
pub fn npy(a: &Arr) -> Vec<u8> {
    cxr_testkit::npy(&a.descr, a.fortran, &a.shape, &a.data)
}

pub use cxr_testkit::write_zip;

/// Writes an npz with `arrays` as `<name>.npy` entries, deflated when `deflate`.
pub fn write_npz(path: &Path, arrays: &[Arr], deflate: bool) {
    let entries: Vec<(String, Vec<u8>)> = arrays
        .iter()
        .map(|a| (format!("{}.npy", a.name), npy(a)))
        .collect();
    write_zip(path, &entries, deflate);
}

/// A valid MedMNIST-layout set of arrays: `n` images per split of `size × size`,
/// labels `[N, 1]` alternating 0, 1. Order: train_images, train_labels, val_…, test_….
pub fn valid_arrays(n: usize, size: usize) -> Vec<Arr> {
    let mut out = Vec::new();
    for split in ["train", "val", "test"] {
        out.push(Arr {
            name: format!("{split}_images"),
            descr: "|u1".into(),
            fortran: false,
            shape: vec![n, size, size],
            data: (0..n * size * size).map(|i| (i % 256) as u8).collect(),
        });
        out.push(Arr {
            name: format!("{split}_labels"),
            descr: "|u1".into(),
            fortran: false,
            shape: vec![n, 1],
            data: (0..n).map(|i| (i % 2) as u8).collect(),
        });
    }
    out
}

/// Writes [`valid_arrays`]`(4, 28)` after `edit` has changed them (deflated).
pub fn write_edited(path: &Path, edit: impl FnOnce(&mut Vec<Arr>)) {
    let mut arrays = valid_arrays(4, 28);
    edit(&mut arrays);
    write_npz(path, &arrays, true);
}

/// Asserts `result` is an error matching `pred` whose message contains every needle.
#[track_caller]
pub fn check<T>(result: cxr_data::Result<T>, pred: impl Fn(&DataError) -> bool, needles: &[&str]) {
    match result {
        Err(e) => {
            assert!(pred(&e), "unexpected error variant: {e:?}");
            let msg = e.to_string();
            eprintln!("expected error: {msg}");
            for n in needles {
                assert!(msg.contains(n), "`{n}` not in: {msg}");
            }
        }
        Ok(_) => panic!("expected an error matching {needles:?}, got Ok"),
    }
}

/// `pneumoniamnist.npz` from `CXR_DATA_DIR` or the shared folder; `None` (with a note)
/// when absent, a failure when `CI` is set.
pub fn real_npz() -> Option<PathBuf> {
    cxr_testkit::pneumoniamnist()
}
