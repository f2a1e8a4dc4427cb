//! Integration tests for cxr-train: PyTorch parity of one training step, the run
//! folder contract on real data, resume, bad inputs, and the audit.

mod audit;
mod bad_inputs;
mod parity;
mod smoke;

use std::path::PathBuf;

use candle_core::Tensor;

/// The fixture folder: `CXR_FIXTURES`, else `../shared/fixtures` beside the checkout.
/// `None` (test skipped with a note) only outside CI; in CI a missing folder fails.
pub fn fixtures() -> Option<PathBuf> {
    shared_path("CXR_FIXTURES", "fixtures", "cnn_step.safetensors")
}

/// The folder holding `pneumoniamnist.npz`: `CXR_DATA_DIR`, else `../shared/data`.
pub fn data_dir() -> Option<PathBuf> {
    shared_path("CXR_DATA_DIR", "data", "pneumoniamnist.npz")
}

fn shared_path(var: &str, sub: &str, file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared")
            .join(sub)
    });
    if dir.join(file).is_file() {
        Some(dir)
    } else if std::env::var_os("CI").is_some() {
        panic!("{} not found in {} (set {var})", file, dir.display());
    } else {
        eprintln!("skipped: no {file} in {} (set {var})", dir.display());
        None
    }
}

/// Asserts max |a − b| / max(1, max |b|) ≤ `tol`, naming `what` on failure.
pub fn check(what: &str, a: &Tensor, b: &Tensor, tol: f32) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(&b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale;
    assert!(err <= tol, "{what}: scaled max error {err:e} > {tol:e}");
}
