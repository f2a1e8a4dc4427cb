//! Times the parts of one seed-CNN training step (batch 64, 28×28) on CPU:
//! forward, loss, backward, optimizer. `cargo run --release -p cxr-train --example step_profile`.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr_models::{CnnConfig, SeedCnn, init_seed_cnn};
use cxr_train::{Adam, AdamConfig, bce_with_logits};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let cfg = CnnConfig::default();
    init_seed_cnn(&varmap, &cfg, 0, &dev)?;
    let model = SeedCnn::new(VarBuilder::from_varmap(&varmap, DType::F32, &dev), &cfg)?;
    let mut params: Vec<_> = varmap
        .data()
        .lock()
        .map_err(|_| "lock")?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = Adam::new(params, AdamConfig::default())?;
    let b = 64;
    let x = Tensor::from_vec(
        (0..b * 784)
            .map(|i| ((i * 7919) % 255) as f32 / 255.0)
            .collect::<Vec<_>>(),
        (b, 1, 28, 28),
        &dev,
    )?;
    let y = Tensor::from_vec((0..b).map(|i| (i % 2) as f32).collect::<Vec<_>>(), b, &dev)?;
    let (mut tf, mut tb, mut to) = (0.0, 0.0, 0.0);
    let steps = 20;
    for i in 0..steps + 3 {
        let t0 = Instant::now();
        let logits = model.forward(&x)?;
        let loss = bce_with_logits(&logits, &y)?;
        let _ = loss.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        opt.step(&grads)?;
        let t3 = Instant::now();
        if i >= 3 {
            tf += (t1 - t0).as_secs_f64();
            tb += (t2 - t1).as_secs_f64();
            to += (t3 - t2).as_secs_f64();
        }
    }
    let per = |t: f64| t / steps as f64 / b as f64 * 1e3;
    println!(
        "ms per image: forward+loss {:.3}, backward {:.3}, optimizer {:.3}, total {:.3}",
        per(tf),
        per(tb),
        per(to),
        per(tf + tb + to)
    );
    Ok(())
}
