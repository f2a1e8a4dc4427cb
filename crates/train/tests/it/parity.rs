//! One training step of the seed CNN against PyTorch (`cnn_step.safetensors`):
//! logits, loss, every gradient, and every weight after one Adam(lr 1e-3) step.

use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};
use cxr_models::{CnnConfig, SeedCnn};
use cxr_train::{Adam, AdamConfig, bce_with_logits};

use crate::{check, fixtures};

/// Tolerance: 1e-5 of each tensor's scale (max(1, max |reference|)).
const TOL: f32 = 1e-5;

#[test]
fn one_adam_step_matches_pytorch() {
    let Some(dir) = fixtures() else { return };
    let t = candle_core::safetensors::load(dir.join("cnn_step.safetensors"), &Device::Cpu).unwrap();
    let varmap = VarMap::new();
    let mut names = Vec::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (name, v) in &t {
            if let Some(p) = name.strip_prefix("before.") {
                data.insert(p.to_string(), Var::from_tensor(v).unwrap());
                names.push(p.to_string());
            }
        }
    }
    names.sort();
    assert_eq!(names.len(), 8, "fixture should hold 8 parameters");
    let model = SeedCnn::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        &CnnConfig::default(),
    )
    .unwrap();
    let logits = model.forward(&t["x"]).unwrap();
    check("logits", &logits, &t["logits"], TOL);
    let loss = bce_with_logits(&logits, &t["y"]).unwrap();
    check("loss", &loss.reshape(1).unwrap(), &t["loss"], TOL);

    let params: Vec<(String, Var)> = {
        let data = varmap.data().lock().unwrap();
        names.iter().map(|n| (n.clone(), data[n].clone())).collect()
    };
    let grads = loss.backward().unwrap();
    for (name, var) in &params {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        check(&format!("grad.{name}"), g, &t[&format!("grad.{name}")], TOL);
    }
    let mut opt = Adam::new(params.clone(), AdamConfig::default()).unwrap();
    opt.step(&grads).unwrap();
    for (name, var) in &params {
        check(
            &format!("after.{name}"),
            var.as_tensor(),
            &t[&format!("after.{name}")],
            TOL,
        );
    }
}
