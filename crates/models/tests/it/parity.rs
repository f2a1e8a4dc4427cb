//! Eval-mode logits of the seed CNN against PyTorch (`cnn_step.safetensors`).

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr_models::{CnnConfig, SeedCnn};

/// The fixture folder (`CXR_FIXTURES` or the shared folder); `None` (test skipped)
/// only outside CI.
fn fixtures() -> Option<PathBuf> {
    cxr_testkit::fixture("cnn_step.safetensors").and_then(|f| f.parent().map(PathBuf::from))
}

/// Max |a − b| divided by max(1, max |b|): the tolerance is relative to the tensor's scale.
fn scaled_max_err(a: &Tensor, b: &Tensor) -> f32 {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn seed_cnn_logits_match_pytorch() {
    let Some(dir) = fixtures() else { return };
    let t = candle_core::safetensors::load(dir.join("cnn_step.safetensors"), &Device::Cpu).unwrap();
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (name, v) in &t {
            if let Some(p) = name.strip_prefix("before.") {
                data.insert(p.to_string(), candle_core::Var::from_tensor(v).unwrap());
            }
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = SeedCnn::new(vb, &CnnConfig::default()).unwrap();
    let logits = model.forward(&t["x"]).unwrap();
    let err = scaled_max_err(&logits, &t["logits"]);
    assert!(
        err <= 1e-5,
        "logits differ from PyTorch: scaled max error {err:e} > 1e-5"
    );
}
