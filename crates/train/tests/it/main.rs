//! Integration tests for cxr-train: PyTorch parity of one training step, the run
//! folder contract on real data, resume, bad inputs, no input gradient, and the audit.

mod bad_inputs;
mod input_gradient;
mod interchange;
mod parity;
mod resnet;
mod resnet_step;
mod smoke;

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use cxr_data::{Dataset, ImageSet};

/// The fixture folder (`CXR_FIXTURES` or the shared folder); `None` (test skipped)
/// only outside CI.
pub fn fixtures() -> Option<PathBuf> {
    folder_of(cxr_testkit::fixture("cnn_step.safetensors"))
}

/// The folder holding `pneumoniamnist.npz` (`CXR_DATA_DIR` or the shared folder).
pub fn data_dir() -> Option<PathBuf> {
    folder_of(cxr_testkit::pneumoniamnist())
}

fn folder_of(file: Option<PathBuf>) -> Option<PathBuf> {
    file.and_then(|f| f.parent().map(PathBuf::from))
}

/// A synthetic 28×28 dataset (8 train, 6 val, 6 test images, both classes in each).
pub fn tiny_dataset() -> Dataset {
    let set = |n: usize| ImageSet {
        images: (0..n * 28 * 28).map(|i| (i % 251) as u8).collect(),
        labels: (0..n).map(|i| (i % 2) as u8).collect(),
        height: 28,
        width: 28,
    };
    Dataset {
        train: set(8),
        val: set(6),
        test: set(6),
        source: "tiny".into(),
        sha256: "0".repeat(64),
        files: Default::default(),
        patients: None,
    }
}

/// A GPU of `kind` (`cuda` or `metal`) for the GPU variants of the tests: `None`
/// (test skipped with a note) when this build lacks the backend or no device answers,
/// unless `CXR_REQUIRE_GPU` names that kind (the GPU CI runner sets it), then it fails.
pub fn gpu(kind: &str) -> Option<Device> {
    let built = match kind {
        "cuda" => candle_core::utils::cuda_is_available(),
        "metal" => candle_core::utils::metal_is_available(),
        other => panic!("unknown GPU kind {other}"),
    };
    let why = if built {
        match cxr_train::parse_device(kind) {
            Ok(d) => return Some(d),
            Err(e) => format!("no {kind} device: {e}"),
        }
    } else {
        format!("this build has no {kind} support (build with --features {kind})")
    };
    let required = std::env::var("CXR_REQUIRE_GPU").is_ok_and(|v| v.split(',').any(|k| k == kind));
    assert!(!required, "CXR_REQUIRE_GPU={kind} but {why}");
    eprintln!("skipped: {why}");
    None
}

/// Serialises the CUDA tests: candle's TF32 switch is process-wide, and each of them
/// sets it (directly, or through training's `--precision`).
pub fn cuda_mode_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// max |a − b| / max |b|: the error relative to the reference tensor's own scale (so a
/// gradient of size 1e-3 is not measured against 1). An all-zero reference is compared
/// absolutely.
pub fn scaled_error(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let cpu = |t: &Tensor| -> Vec<f32> {
        t.to_device(&candle_core::Device::Cpu)
            .unwrap()
            .to_dtype(candle_core::DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let (a, b) = (cpu(a), cpu(b));
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(&b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    if scale > 0.0 { err / scale } else { err }
}

/// Asserts [`scaled_error`] ≤ `tol`, naming `what` on failure.
pub fn check(what: &str, a: &Tensor, b: &Tensor, tol: f32) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
    let err = scaled_error(a, b);
    assert!(
        err <= tol,
        "{what}: max error {err:e} of the tensor's scale > {tol:e}"
    );
}
