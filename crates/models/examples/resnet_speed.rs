//! ResNet18 CPU speed: eval forward and train-mode forward + backward at one size.
//!
//! `cargo run --release -p cxr-models --example resnet_speed -- [SIZE] [BATCH] [REPEATS]`
//! (defaults 64 px, batch 32, 5 repeats after one warm-up). Threads: `RAYON_NUM_THREADS`.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr_models::{ResNet18, ResNetConfig, imagenet_input, init_resnet18, normal};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let size = args.first().copied().unwrap_or(64);
    let batch = args.get(1).copied().unwrap_or(32);
    let repeats = args.get(2).copied().unwrap_or(5).max(1);
    let dev = Device::Cpu;
    let cfg = ResNetConfig::default();
    let varmap = VarMap::new();
    init_resnet18(&varmap, &cfg, 0, &dev)?;
    let net = ResNet18::new(VarBuilder::from_varmap(&varmap, DType::F32, &dev), &cfg)?;
    let groups = ResNet18::param_groups(&varmap, &cfg)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let gray: Vec<f32> = normal(&mut rng, batch * size * size, 0.25)
        .into_iter()
        .map(|v| (v + 0.5).clamp(0.0, 1.0))
        .collect();
    let x = imagenet_input(&Tensor::from_vec(gray, (batch, 1, size, size), &dev)?)?;

    let time = |f: &mut dyn FnMut() -> Result<(), Box<dyn std::error::Error>>| {
        f()?; // warm-up
        let mut best = f64::INFINITY;
        let mut total = 0.0;
        for _ in 0..repeats {
            let t = Instant::now();
            f()?;
            let s = t.elapsed().as_secs_f64();
            best = best.min(s);
            total += s;
        }
        Ok::<_, Box<dyn std::error::Error>>((best, total / repeats as f64))
    };
    let (eval_best, eval_mean) = time(&mut || {
        net.forward_t(&x, false)?.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    })?;
    let (train_best, train_mean) = time(&mut || {
        let logits = net.forward_t(&x, true)?;
        let grads = logits.sqr()?.mean_all()?.backward()?;
        // touch every trainable gradient so nothing is lazily skipped
        let mut n = 0;
        for (_, v) in groups.trainable() {
            n += grads.get(v.as_tensor()).is_some() as usize;
        }
        assert_eq!(n, 62);
        Ok(())
    })?;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    println!(
        "resnet18 {size}px batch {batch}, threads {threads}, {repeats} repeats (best / mean):"
    );
    println!(
        "  eval forward        {:8.1} / {:8.1} ms per batch, {:6.2} / {:6.2} ms per image",
        eval_best * 1e3,
        eval_mean * 1e3,
        eval_best * 1e3 / batch as f64,
        eval_mean * 1e3 / batch as f64
    );
    println!(
        "  train fwd+backward  {:8.1} / {:8.1} ms per batch, {:6.2} / {:6.2} ms per image",
        train_best * 1e3,
        train_mean * 1e3,
        train_best * 1e3 / batch as f64,
        train_mean * 1e3 / batch as f64
    );
    Ok(())
}
