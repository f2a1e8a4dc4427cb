//! One training step of the seed CNN against PyTorch (`cnn_step.safetensors`):
//! logits, loss, every gradient, and every weight after one Adam(lr 1e-3) step — on
//! the CPU, and on CUDA / Metal when the build has the backend and a GPU answers.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cxr_models::{CnnConfig, SeedCnn};
use cxr_train::{Adam, AdamConfig, Autocast, Precision, apply_matmul_precision, bce_with_logits};

use crate::{check, fixtures, gpu};

/// CPU tolerance: 1e-5 of each tensor's own scale (max |reference|; for weight updates,
/// the learning rate). PyTorch's float32 and ours sum in different orders: measured
/// errors are a few 1e-7.
const TOL: f32 = 1e-5;

/// GPU f32 with TF32 off (`f32-strict`): the same arithmetic summed in another
/// order (cuBLAS / Metal GEMM, im2col), over up to 12 544 terms (the weight gradient
/// of conv1): 1e-4.
const TOL_GPU_F32: f32 = 1e-4;

/// CUDA with TF32 matmuls (10-bit mantissa, unit roundoff 2⁻¹¹ ≈ 4.9e-4, for each
/// GEMM input, errors growing with the depth of the sums): 5e-3 of each tensor's scale
/// for logits, loss and gradients. The weight update is held to 5e-3 of the learning
/// rate plus the shift its own gradient difference explains (a near-zero gradient whose
/// sign flips moves its weight by 2·lr, and is allowed exactly that).
const TOL_TF32: f32 = 5e-3;

/// bf16 autocast of the forward (8-bit mantissa, unit roundoff 2⁻⁹ ≈ 2e-3 per
/// rounding, four layers deep, backward in bf16 too): 5e-2.
const TOL_BF16: f32 = 5e-2;

fn load_fixture(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("cnn_step.safetensors"), &Device::Cpu).unwrap()
}

/// Runs the step on `dev` in `precision` and compares everything with PyTorch.
fn adam_step_matches(t: &HashMap<String, Tensor>, dev: &Device, precision: Precision, tol: f32) {
    let label = format!("{:?}/{}", dev.location(), precision.as_str());
    let varmap = VarMap::new();
    let mut names = Vec::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (name, v) in t {
            if let Some(p) = name.strip_prefix("before.") {
                let v = v.to_device(dev).unwrap();
                data.insert(p.to_string(), Var::from_tensor(&v).unwrap());
                names.push(p.to_string());
            }
        }
    }
    names.sort();
    assert_eq!(names.len(), 8, "fixture should hold 8 parameters");
    let params: Vec<(String, Var)> = {
        let data = varmap.data().lock().unwrap();
        names.iter().map(|n| (n.clone(), data[n].clone())).collect()
    };
    let cfg = CnnConfig::default();
    let x = t["x"].to_device(dev).unwrap();
    let logits = match Autocast::new(precision, params.clone()) {
        None => SeedCnn::new(VarBuilder::from_varmap(&varmap, DType::F32, dev), &cfg)
            .unwrap()
            .forward(&x)
            .unwrap(),
        Some(ac) => {
            let half = SeedCnn::new(ac.var_builder(dev).unwrap(), &cfg).unwrap();
            ac.output(&half.forward(&ac.input(&x).unwrap()).unwrap())
                .unwrap()
        }
    };
    check(&format!("{label} logits"), &logits, &t["logits"], tol);
    let loss = bce_with_logits(&logits, &t["y"].to_device(dev).unwrap()).unwrap();
    check(
        &format!("{label} loss"),
        &loss.reshape(1).unwrap(),
        &t["loss"],
        tol,
    );

    let grads = loss.backward().unwrap();
    for (name, var) in &params {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{label}: no gradient for {name}"));
        assert_eq!(g.dtype(), DType::F32, "{label}: master gradients are f32");
        check(
            &format!("{label} grad.{name}"),
            g,
            &t[&format!("grad.{name}")],
            tol,
        );
    }
    // The optimizer alone: Adam on PyTorch's own gradients gives PyTorch's weights.
    let cfg = AdamConfig::default();
    let fresh: Vec<(String, Var)> = params
        .iter()
        .map(|(n, _)| {
            let v = t[&format!("before.{n}")].to_device(dev).unwrap();
            (n.clone(), Var::from_tensor(&v).unwrap())
        })
        .collect();
    // A GradStore holding exactly PyTorch's gradients: d/dw Σ (w ⊙ g) = g.
    let mut linear = Tensor::zeros((), DType::F32, dev).unwrap();
    for (name, var) in &fresh {
        let g = t[&format!("grad.{name}")].to_device(dev).unwrap();
        linear = (linear + (var.as_tensor() * g).unwrap().sum_all().unwrap()).unwrap();
    }
    let torch_grads = linear.backward().unwrap();
    Adam::new(fresh.clone(), cfg)
        .unwrap()
        .step(&torch_grads)
        .unwrap();
    // Compared as updates (after − before), whose scale is the learning rate: the
    // weights themselves are ~100× larger and would hide an update error.
    for (name, var) in &fresh {
        let before = t[&format!("before.{name}")].to_device(dev).unwrap();
        let ours = (var.as_tensor() - &before).unwrap();
        let theirs = (t[&format!("after.{name}")].to_device(dev).unwrap() - &before).unwrap();
        check(
            &format!("{label} Adam on PyTorch's gradients: update of {name}"),
            &ours,
            &theirs,
            tol,
        );
    }
    // The whole step, as updates on the learning rate's scale. Adam's first step moves a
    // weight by lr·g/(|g| + ε), which for |g| near ε turns a gradient difference far
    // inside the tolerance above (5.6e-9 vs 5.3e-9 for one conv2 weight) into a weight
    // difference of ~1e-5; each weight is allowed exactly the shift that formula gives
    // for its measured gradient difference, on top of `tol · lr`.
    let mut opt = Adam::new(params.clone(), cfg).unwrap();
    opt.step(&grads).unwrap();
    for (name, var) in &params {
        let ours = vec_f64(grads.get(var.as_tensor()).unwrap());
        let theirs = vec_f64(&t[&format!("grad.{name}")]);
        let step = |g: f64| cfg.lr * g / (g.abs() + cfg.eps);
        let allowance: Vec<f64> = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (step(*a) - step(*b)).abs())
            .collect();
        let got = vec_f64(var.as_tensor());
        let want = vec_f64(&t[&format!("after.{name}")]);
        let before = vec_f64(&t[&format!("before.{name}")]);
        let scale = cfg.lr;
        for (i, (((g, w), b), extra)) in got
            .iter()
            .zip(&want)
            .zip(&before)
            .zip(&allowance)
            .enumerate()
        {
            let err = ((g - b) - (w - b)).abs();
            assert!(
                err <= f64::from(tol) * scale + extra,
                "{label} update of {name}[{i}]: {} vs {} (error {err:e}, allowed {:e} + {extra:e} from the gradient difference)",
                g - b,
                w - b,
                f64::from(tol) * scale
            );
        }
    }
}

/// The values as f64, through the CPU (candle's Metal backend has no f64).
fn vec_f64(t: &Tensor) -> Vec<f64> {
    t.to_device(&candle_core::Device::Cpu)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The check can fail: a gradient 1 % off (as a wrong kernel might give) is caught on
/// every parameter, as is an update 1 % off.
#[test]
fn a_one_percent_error_fails_the_parity_check() {
    let Some(dir) = fixtures() else { return };
    let t = load_fixture(&dir);
    for (name, g) in t.iter().filter(|(n, _)| n.starts_with("grad.")) {
        let off = (g * 1.01).unwrap();
        let err = crate::scaled_error(&off, g);
        assert!(err > TOL_TF32, "{name}: a 1% error measures {err:e}");
        assert!(err > TOL, "{name}");
        let p = name.trim_start_matches("grad.");
        let before = &t[&format!("before.{p}")];
        let update = (&t[&format!("after.{p}")] - before).unwrap();
        let off = (&update * 1.01).unwrap();
        assert!(crate::scaled_error(&off, &update) > TOL, "update of {p}");
    }
}

#[test]
fn one_adam_step_matches_pytorch() {
    let Some(dir) = fixtures() else { return };
    adam_step_matches(&load_fixture(&dir), &Device::Cpu, Precision::F32, TOL);
}

/// The step on CUDA GPU 0: f32 with TF32 off (`f32-strict`), f32 with TF32 matmuls
/// (cxr's default `f32`), and bf16 autocast.
#[test]
fn one_adam_step_matches_pytorch_on_cuda() {
    let Some(dev) = gpu("cuda") else { return };
    let Some(dir) = fixtures() else { return };
    let t = load_fixture(&dir);
    // The TF32 switch is process-wide: the CUDA tests take turns.
    let _mode = crate::cuda_mode_lock();
    apply_matmul_precision(Precision::F32Strict, &dev);
    adam_step_matches(&t, &dev, Precision::F32Strict, TOL_GPU_F32);
    assert!(apply_matmul_precision(Precision::F32, &dev));
    adam_step_matches(&t, &dev, Precision::F32, TOL_TF32);
    apply_matmul_precision(Precision::F32Strict, &dev);
    adam_step_matches(&t, &dev, Precision::Bf16, TOL_BF16);
}

/// The step on the Metal GPU in f32.
#[test]
fn one_adam_step_matches_pytorch_on_metal() {
    let Some(dev) = gpu("metal") else { return };
    let Some(dir) = fixtures() else { return };
    adam_step_matches(&load_fixture(&dir), &dev, Precision::F32, TOL_GPU_F32);
}
