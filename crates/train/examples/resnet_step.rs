//! Times the parts of one ResNet18 training step on CPU — train-mode forward with the
//! BCE loss, backward, AdamW (weight decay 0.01) — on random input, as `cargo xtask
//! bench` measures the whole step.
//! `cargo run --release -p cxr-train --example resnet_step -- [SIZE] [BATCH] [STEPS]`
//! (defaults 64 px, batch 32, 8 steps after one warm-up); prints medians.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr_models::{ResNet18, ResNetConfig, imagenet_input, init_resnet18};
use cxr_train::{Adam, AdamConfig, OptimizerKind, bce_with_logits};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let size = args.first().copied().unwrap_or(64);
    let batch = args.get(1).copied().unwrap_or(32);
    let steps = args.get(2).copied().unwrap_or(8).max(1);
    let dev = Device::Cpu;
    let cfg = ResNetConfig::default();
    let varmap = VarMap::new();
    init_resnet18(&varmap, &cfg, 0, &dev)?;
    let net = ResNet18::new(VarBuilder::from_varmap(&varmap, DType::F32, &dev), &cfg)?;
    let params = ResNet18::param_groups(&varmap, &cfg)?.trainable();
    let mut opt = Adam::new(
        params,
        AdamConfig {
            kind: OptimizerKind::AdamW,
            weight_decay: 0.01,
            ..AdamConfig::default()
        },
    )?;
    let x = Tensor::rand(0f32, 1f32, (batch, 1, size, size), &dev)?;
    let y = Tensor::from_vec(
        (0..batch).map(|i| (i % 2) as f32).collect::<Vec<_>>(),
        batch,
        &dev,
    )?;
    let mut parts = [vec![], vec![], vec![], vec![]];
    for i in 0..=steps {
        let t0 = Instant::now();
        let loss = bce_with_logits(&net.forward_t(&imagenet_input(&x)?, true)?, &y)?;
        loss.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        opt.step(&grads)?;
        let t3 = Instant::now();
        if i > 0 {
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            parts[0].push(ms(t0, t1));
            parts[1].push(ms(t1, t2));
            parts[2].push(ms(t2, t3));
            parts[3].push(ms(t0, t3));
        }
    }
    println!("resnet18 {size}px batch {batch}, {steps} steps, medians in ms:");
    for (name, mut v) in ["forward+loss", "backward", "adamw", "step"]
        .into_iter()
        .zip(parts)
    {
        v.sort_by(f64::total_cmp);
        let med = v[v.len() / 2];
        println!(
            "  {name:14} {med:9.1}  ({:.1} images/s)",
            batch as f64 * 1e3 / med
        );
    }
    Ok(())
}
