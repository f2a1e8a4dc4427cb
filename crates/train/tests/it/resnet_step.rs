//! One ResNet18 training step (train-mode BatchNorm, one logit, BCE with logits) against
//! PyTorch's float64 reference `resnet18_step.safetensors`: logits, loss, BatchNorm running
//! statistics and every parameter's gradient, each within a tolerance relative to its
//! tensor's scale — on the CPU fast path, and on candle's own ops (the path CUDA and Metal
//! run); a perturbed gradient shows that the check can fail.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr_models::{ResNet18, ResNetConfig, init_resnet18, load_resnet18_weights};
use cxr_train::bce_with_logits;

/// Floor of every relative tolerance: float32 arithmetic in another order (PyTorch's own
/// float32 gradients are within 5.8e-6 of the reference).
const FLOOR: f32 = 2e-5;

/// The tolerance of parameter `p`: ten times PyTorch's own float32 error on it, at least
/// [`FLOOR`].
fn tolerance(fx: &HashMap<String, Tensor>, p: &str) -> f32 {
    fx.get(&format!("torch_f32_err.{p}"))
        .map_or(FLOOR, |t| (10.0 * scalar(t)).max(FLOOR))
}

fn scalar(t: &Tensor) -> f32 {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_device(&Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// The step's results: logits, loss, gradients and running statistics by name.
struct Step {
    logits: Vec<f32>,
    loss: f32,
    grads: HashMap<String, Vec<f32>>,
    running: HashMap<String, Vec<f32>>,
}

fn run_step(dir: &std::path::Path, fx: &HashMap<String, Tensor>) -> Step {
    let cfg = ResNetConfig::default();
    let varmap = VarMap::new();
    init_resnet18(&varmap, &cfg, 0, &Device::Cpu).unwrap();
    load_resnet18_weights(&varmap, &cfg, &dir.join("resnet18_random.safetensors")).unwrap();
    {
        let data = varmap.data().lock().unwrap();
        for p in ["fc.weight", "fc.bias"] {
            data[p].set(&fx[&format!("head.{p}")]).unwrap();
        }
    }
    let net = ResNet18::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        &cfg,
    )
    .unwrap();
    let logits = net.forward_t(&fx["x"], true).unwrap();
    let loss = bce_with_logits(&logits, &fx["y"]).unwrap();
    let grads = loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    let mut out = Step {
        logits: values(&logits),
        loss: scalar(&loss),
        grads: HashMap::new(),
        running: HashMap::new(),
    };
    for (name, var) in data.iter() {
        if let Some(g) = grads.get(var.as_tensor()) {
            out.grads.insert(name.clone(), values(g));
        }
        if name.contains("running_") {
            out.running.insert(name.clone(), values(var.as_tensor()));
        }
    }
    out
}

/// Largest difference over the reference's scale (its largest magnitude).
fn rel(ours: &[f32], reference: &[f32]) -> f32 {
    cxr_testkit::rel_err(ours, reference, f32::MIN_POSITIVE)
}

/// Every gradient against the reference: in full where stored, else at its sampled
/// positions (`idx.<p>`, `grad_val.<p>`). Returns the failures as messages.
fn gradient_failures(step: &Step, fx: &HashMap<String, Tensor>) -> Vec<String> {
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut worst = (0f32, String::new());
    for (name, ours) in &step.grads {
        let (mine, reference): (Vec<f32>, Vec<f32>) =
            if let Some(full) = fx.get(&format!("grad.{name}")) {
                (ours.clone(), values(full))
            } else if let (Some(idx), Some(val)) = (
                fx.get(&format!("idx.{name}")),
                fx.get(&format!("grad_val.{name}")),
            ) {
                let idx: Vec<i64> = idx
                    .to_dtype(DType::I64)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                (idx.iter().map(|&i| ours[i as usize]).collect(), values(val))
            } else {
                failures.push(format!("{name}: no reference gradient"));
                continue;
            };
        checked += 1;
        let (e, tol) = (rel(&mine, &reference), tolerance(fx, name));
        if e > worst.0 {
            worst = (e, name.clone());
        }
        if e > tol {
            failures.push(format!("{name}: relative error {e:.2e} above {tol:.1e}"));
        }
    }
    assert_eq!(
        checked, 62,
        "every ResNet18 parameter has a reference gradient"
    );
    eprintln!(
        "largest gradient error: {:.2e} of the scale ({})",
        worst.0, worst.1
    );
    failures
}

fn fixture() -> Option<(std::path::PathBuf, HashMap<String, Tensor>)> {
    let file = cxr_testkit::fixture("resnet18_step.safetensors")?;
    cxr_testkit::fixture("resnet18_random.safetensors")?;
    let fx = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    Some((file.parent().unwrap().to_path_buf(), fx))
}

/// Runs the step and checks everything but the gradients; returns the step.
fn checked_step(dir: &std::path::Path, fx: &HashMap<String, Tensor>) -> Step {
    let step = run_step(dir, fx);
    let e = rel(&step.logits, &values(&fx["logits"]));
    assert!(e <= FLOOR, "logits: relative error {e:.2e}");
    let want = scalar(&fx["loss"]);
    assert!(
        (step.loss - want).abs() <= FLOOR * want.abs(),
        "loss {} vs {want}",
        step.loss
    );
    for (name, ours) in &step.running {
        let reference = values(&fx[&format!("running.{name}")]);
        let e = rel(ours, &reference);
        assert!(e <= FLOOR, "{name}: relative error {e:.2e}");
    }
    assert_eq!(
        step.running.len(),
        40,
        "20 BatchNorm layers, two buffers each"
    );
    let failures = gradient_failures(&step, fx);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    step
}

#[test]
fn resnet18_training_step_matches_pytorch_float64() {
    let Some((dir, fx)) = fixture() else { return };
    let step = checked_step(&dir, &fx);

    // The check can fail: one gradient 1 % off is caught.
    let mut perturbed = step;
    for v in perturbed.grads.get_mut("layer2.1.bn2.bias").unwrap() {
        *v *= 1.01;
    }
    let failures = gradient_failures(&perturbed, &fx);
    assert!(
        failures.len() == 1 && failures[0].starts_with("layer2.1.bn2.bias"),
        "{failures:?}"
    );
}

/// Set in the child process that runs the step on candle's ops.
const CANDLE_OPS_CHILD: &str = "CXR_TEST_CANDLE_OPS_CHILD";

/// The same step with the CPU fast path switched off. The switch is process-wide, so the
/// check runs in a child process of this test binary (only this test), leaving the other
/// tests' arithmetic alone.
#[test]
fn resnet18_training_step_on_candle_ops_matches_pytorch_float64() {
    let Some((dir, fx)) = fixture() else { return };
    if std::env::var_os(CANDLE_OPS_CHILD).is_some() {
        cxr_kernels::set_cpu_fast_path(false);
        assert!(!cxr_kernels::cpu_fast_path_enabled());
        checked_step(&dir, &fx);
        return;
    }
    let name = "resnet_step::resnet18_training_step_on_candle_ops_matches_pytorch_float64";
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CANDLE_OPS_CHILD, "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test: {stdout}"
    );
    eprintln!("{}", stderr.trim());
}
