//! One ResNet18 training step (train-mode BatchNorm, one logit, BCE with logits) against
//! PyTorch's float64 reference `resnet18_step.safetensors`: logits, loss, BatchNorm running
//! statistics and every parameter's gradient, each within a tolerance relative to its
//! tensor's scale — on the CPU fast path, on candle's own ops (the path CUDA and Metal
//! run), in f16 autocast on the CPU, and on CUDA (f32, TF32, bf16, f16) and Metal (f32) when
//! the build and the machine have them; a perturbed gradient shows that the check can fail.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cxr_models::{ResNet18, ResNetConfig, TensorRole, init_resnet18, load_resnet18_weights};
use cxr_train::{Autocast, Precision, apply_matmul_precision, bce_with_logits};

use crate::gpu;

/// Floor of every f32 tolerance on the CPU: float32 arithmetic in another order
/// (PyTorch's own float32 gradients are within 5.8e-6 of the reference).
const FLOOR: f32 = 2e-5;

/// Floor of the f32 tolerances on a GPU (TF32 off): the same arithmetic in another
/// order over longer sums (cuBLAS tiles, im2col), as for the seed CNN's GPU step.
const FLOOR_GPU: f32 = 1e-4;

/// How far each tensor may be from the reference, relative to its scale.
#[derive(Debug, Clone, Copy)]
enum Tolerance {
    /// f32: ten times PyTorch's own float32 error on each gradient (`torch_f32_err.<p>`),
    /// `floor` for logits, loss, running statistics and as the least tolerance.
    F32 { floor: f32 },
    /// Autocast or TF32: `factor` times PyTorch's own error in `half` (`bf16`, `f16`)
    /// autocast on the same step (`data/resnet18_autocast_err.json`, made by
    /// `make_resnet18_autocast_yardstick.py`; in bf16 0.32 of the scale at the median
    /// gradient, in f16 0.14: this batch's gradients are small sums of large terms), at
    /// least `floor`.
    Torch16 {
        half: &'static str,
        factor: f32,
        floor: f32,
    },
}

/// What a tensor of the step is, for its tolerance.
#[derive(Debug, Clone, Copy)]
enum Part<'a> {
    Logits,
    Loss,
    Running(&'a str),
    Grad(&'a str),
}

/// PyTorch's autocast error of each tensor of the step, per half type.
struct Yardstick(serde_json::Value);

impl Yardstick {
    fn load() -> Self {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/it/data/resnet18_autocast_err.json");
        let text = std::fs::read_to_string(&file).unwrap();
        Self(serde_json::from_str(&text).unwrap())
    }

    /// PyTorch's error on `part`; for a gradient at least its median gradient error
    /// (one tensor's error is a single noisy draw: cxr's and PyTorch's roundings differ,
    /// and per tensor they differ by up to 2.6× either way on this step).
    fn error(&self, half: &str, part: Part<'_>) -> f32 {
        let e = &self.0[half];
        let v = match part {
            Part::Logits => &e["logits"],
            Part::Loss => &e["loss"],
            Part::Running(p) => &e["running"][p],
            Part::Grad(p) => &e["grads"][p],
        };
        let v = v
            .as_f64()
            .unwrap_or_else(|| panic!("no {half} yardstick for {part:?}")) as f32;
        match part {
            Part::Grad(_) => {
                let mut all: Vec<f64> = e["grads"]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|g| g.as_f64().unwrap())
                    .collect();
                all.sort_by(f64::total_cmp);
                v.max(all[all.len() / 2] as f32)
            }
            _ => v,
        }
    }
}

impl Tolerance {
    fn of(self, fx: &HashMap<String, Tensor>, yard: &Yardstick, part: Part<'_>) -> f32 {
        match (self, part) {
            (Self::F32 { floor }, Part::Grad(p)) => fx
                .get(&format!("torch_f32_err.{p}"))
                .map_or(floor, |t| (10.0 * scalar(t)).max(floor)),
            (Self::F32 { floor }, _) => floor,
            (
                Self::Torch16 {
                    half,
                    factor,
                    floor,
                },
                part,
            ) => (factor * yard.error(half, part)).max(floor),
        }
    }
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

/// The step on `dev`; with a half `precision` through [`Autocast`] as training runs it
/// (BatchNorm's tensors kept f32).
fn run_step(
    dir: &std::path::Path,
    fx: &HashMap<String, Tensor>,
    dev: &Device,
    precision: Precision,
) -> Step {
    let cfg = ResNetConfig::default();
    let varmap = VarMap::new();
    init_resnet18(&varmap, &cfg, 0, dev).unwrap();
    load_resnet18_weights(&varmap, &cfg, &dir.join("resnet18_random.safetensors")).unwrap();
    let all: Vec<(String, Var)> = {
        let data = varmap.data().lock().unwrap();
        for p in ["fc.weight", "fc.bias"] {
            data[p]
                .set(&fx[&format!("head.{p}")].to_device(dev).unwrap())
                .unwrap();
        }
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let role = |n: &str| ResNet18::tensor_role(n).unwrap();
    let x = fx["x"].to_device(dev).unwrap();
    let logits = match Autocast::new(precision, Vec::new()) {
        None => {
            let net =
                ResNet18::new(VarBuilder::from_varmap(&varmap, DType::F32, dev), &cfg).unwrap();
            net.forward_t(&x, true).unwrap()
        }
        Some(_) => {
            let (kept, cast): (Vec<_>, Vec<_>) = all
                .iter()
                .cloned()
                .partition(|(n, _)| matches!(role(n), TensorRole::BodyNorm | TensorRole::Buffer));
            let ac = Autocast::new(precision, cast).unwrap().keeping_f32(kept);
            let net = ResNet18::new(ac.var_builder(dev).unwrap(), &cfg).unwrap();
            let half = net.forward_t(&ac.input(&x).unwrap(), true).unwrap();
            assert_eq!(half.dtype(), ac.dtype());
            ac.output(&half).unwrap()
        }
    };
    let loss = bce_with_logits(&logits, &fx["y"].to_device(dev).unwrap()).unwrap();
    let grads = loss.backward().unwrap();
    let mut out = Step {
        logits: values(&logits),
        loss: scalar(&loss.to_device(&Device::Cpu).unwrap()),
        grads: HashMap::new(),
        running: HashMap::new(),
    };
    for (name, var) in &all {
        if let Some(g) = grads.get(var.as_tensor()) {
            assert_eq!(g.dtype(), DType::F32, "{name}: gradient of the f32 master");
            out.grads.insert(name.clone(), values(g));
        }
        if name.contains("running_") {
            assert_eq!(var.dtype(), DType::F32, "{name}");
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
fn gradient_failures(
    step: &Step,
    fx: &HashMap<String, Tensor>,
    tol: Tolerance,
    yard: &Yardstick,
) -> Vec<String> {
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
        let (e, tol) = (rel(&mine, &reference), tol.of(fx, yard, Part::Grad(name)));
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

/// Runs the step on `dev` in `precision` and checks all of it against `tol`; returns
/// the step.
fn checked_step(
    dir: &std::path::Path,
    fx: &HashMap<String, Tensor>,
    dev: &Device,
    precision: Precision,
    tol: Tolerance,
) -> Step {
    let label = format!("{:?}/{}", dev.location(), precision.as_str());
    let yard = Yardstick::load();
    let step = run_step(dir, fx, dev, precision);
    let e = rel(&step.logits, &values(&fx["logits"]));
    let t = tol.of(fx, &yard, Part::Logits);
    assert!(
        e <= t,
        "{label}: logits: relative error {e:.2e} above {t:.1e}"
    );
    let want = scalar(&fx["loss"]);
    let t = tol.of(fx, &yard, Part::Loss);
    assert!(
        (step.loss - want).abs() <= t * want.abs(),
        "{label}: loss {} vs {want}",
        step.loss
    );
    let mut worst = 0f32;
    for (name, ours) in &step.running {
        let reference = values(&fx[&format!("running.{name}")]);
        let e = rel(ours, &reference);
        let t = tol.of(fx, &yard, Part::Running(name));
        worst = worst.max(e);
        assert!(
            e <= t,
            "{label}: {name}: relative error {e:.2e} above {t:.1e}"
        );
    }
    assert_eq!(
        step.running.len(),
        40,
        "20 BatchNorm layers, two buffers each"
    );
    eprintln!("{label}: largest running-statistics error: {worst:.2e} of the scale");
    let failures = gradient_failures(&step, fx, tol, &yard);
    assert!(failures.is_empty(), "{label}:\n{}", failures.join("\n"));
    step
}

const CPU_F32: Tolerance = Tolerance::F32 { floor: FLOOR };

#[test]
fn resnet18_training_step_matches_pytorch_float64() {
    let Some((dir, fx)) = fixture() else { return };
    let step = checked_step(&dir, &fx, &Device::Cpu, Precision::F32, CPU_F32);

    // The check can fail: one gradient 1 % off is caught.
    let mut perturbed = step;
    for v in perturbed.grads.get_mut("layer2.1.bn2.bias").unwrap() {
        *v *= 1.01;
    }
    let failures = gradient_failures(&perturbed, &fx, CPU_F32, &Yardstick::load());
    assert!(
        failures.len() == 1 && failures[0].starts_with("layer2.1.bn2.bias"),
        "{failures:?}"
    );
}

/// bf16 autocast (PyTorch's own bf16 error on this step is up to 0.52 of a gradient's
/// scale, see [`Tolerance::Torch16`]): within twice PyTorch's error on every tensor, at
/// least 1e-2 (bf16's unit roundoff 2⁻⁸ ≈ 3.9e-3, a few roundings deep). A formula
/// error moves a tensor by its whole scale or more; f32 BatchNorm statistics should keep
/// cxr at or below PyTorch's error.
const BF16: Tolerance = Tolerance::Torch16 {
    half: "bf16",
    factor: 2.0,
    floor: 1e-2,
};

/// f16 autocast: twice PyTorch's own f16 error on every tensor, at least 2e-3 (f16's
/// unit roundoff 2⁻¹¹ ≈ 4.9e-4, a few roundings deep).
const F16: Tolerance = Tolerance::Torch16 {
    half: "f16",
    factor: 2.0,
    floor: 2e-3,
};

/// TF32 matmuls on CUDA: inputs of each product rounded with unit roundoff 2⁻¹¹, eight
/// times finer than bf16's 2⁻⁸, and nothing else in lower precision: half of
/// PyTorch's bf16 error (a margin of four over that ratio), at least the seed CNN's
/// TF32 tolerance.
const TF32: Tolerance = Tolerance::Torch16 {
    half: "bf16",
    factor: 0.5,
    floor: 5e-3,
};

/// The step in f16 autocast on the CPU: the autocast graph the GPUs run (half-precision
/// casts of the weights, BatchNorm kept f32, f32 gradients for the masters) on candle's
/// CPU f16 kernels. (candle 0.11.1's CPU matmul has no bf16, so bf16 runs on GPUs only;
/// training refuses half precision on the CPU for speed alone.)
#[test]
fn resnet18_training_step_in_f16_autocast_matches_pytorch_float64() {
    let Some((dir, fx)) = fixture() else { return };
    checked_step(&dir, &fx, &Device::Cpu, Precision::F16, F16);
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
        checked_step(&dir, &fx, &Device::Cpu, Precision::F32, CPU_F32);
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

/// The step on CUDA GPU 0: f32 with TF32 off (`f32-strict`), f32 with TF32 (cxr's
/// default `f32`), bf16 and f16 autocast.
#[test]
fn resnet18_training_step_on_cuda_matches_pytorch_float64() {
    let Some(dev) = gpu("cuda") else { return };
    let Some((dir, fx)) = fixture() else { return };
    let _mode = crate::cuda_mode_lock();
    apply_matmul_precision(Precision::F32Strict, &dev);
    let strict = Tolerance::F32 { floor: FLOOR_GPU };
    checked_step(&dir, &fx, &dev, Precision::F32Strict, strict);
    assert!(apply_matmul_precision(Precision::F32, &dev));
    checked_step(&dir, &fx, &dev, Precision::F32, TF32);
    apply_matmul_precision(Precision::F32Strict, &dev);
    checked_step(&dir, &fx, &dev, Precision::Bf16, BF16);
    checked_step(&dir, &fx, &dev, Precision::F16, F16);
}

/// The step on the Metal GPU in f32.
#[test]
fn resnet18_training_step_on_metal_matches_pytorch_float64() {
    let Some(dev) = gpu("metal") else { return };
    let Some((dir, fx)) = fixture() else { return };
    let tol = Tolerance::F32 { floor: FLOOR_GPU };
    checked_step(&dir, &fx, &dev, Precision::F32, tol);
}
