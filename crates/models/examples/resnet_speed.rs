//! ResNet18 CPU speed: eval forward and train-mode forward + backward at one size.
//!
//! `cargo run --release -p cxr-models --example resnet_speed -- [SIZE] [BATCH] [REPEATS] [MODE]`
//! (defaults 64 px, batch 32, 5 repeats after one warm-up). `MODE` is `fast` (default:
//! the CPU fast paths on), `plain` (candle's own ops, `set_cpu_fast_path(false)`) or
//! `compare` (both, repeats interleaved so that load on a shared machine hits both
//! alike, and the plain/fast ratio); `norm` compares the fused BatchNorm against
//! candle's ops with the convolution and pool fast paths on in both. Threads:
//! `RAYON_NUM_THREADS`. On Linux it also prints the process CPU time (all threads) per
//! image, which is steadier than wall time on a loaded machine.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr_models::{
    ResNet18, ResNetConfig, imagenet_input, init_resnet18, normal, set_cpu_fast_norm,
    set_cpu_fast_path,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // (label, fast paths, fused BatchNorm)
    let modes: &[(&str, bool, bool)] = match args.get(3).map(String::as_str) {
        None | Some("fast") => &[("fast path", true, true)],
        Some("plain") => &[("plain candle", false, false)],
        Some("compare") => &[("fast path", true, true), ("plain candle", false, false)],
        Some("norm") => &[("fast path", true, true), ("candle BN", true, false)],
        Some(other) => {
            return Err(format!("unknown mode {other:?}: fast, plain, compare or norm").into());
        }
    };
    args.truncate(3);
    let args: Vec<usize> = args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
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

    // Per mode: (best, total, CPU total) seconds for eval and train.
    let mut eval_t = vec![(f64::INFINITY, 0.0, 0.0); modes.len()];
    let mut train_t = vec![(f64::INFINITY, 0.0, 0.0); modes.len()];
    let eval = || -> Result<(), Box<dyn std::error::Error>> {
        net.forward_t(&x, false)?.sum_all()?.to_scalar::<f32>()?;
        Ok(())
    };
    let train = || -> Result<(), Box<dyn std::error::Error>> {
        let logits = net.forward_t(&x, true)?;
        let grads = logits.sqr()?.mean_all()?.backward()?;
        // touch every trainable gradient so nothing is lazily skipped
        let mut n = 0;
        for (_, v) in groups.trainable() {
            n += grads.get(v.as_tensor()).is_some() as usize;
        }
        assert_eq!(n, 62);
        Ok(())
    };
    for rep in 0..=repeats {
        for (m, &(_, fast, norm)) in modes.iter().enumerate() {
            set_cpu_fast_path(fast);
            set_cpu_fast_norm(norm);
            for (f, acc) in [
                (
                    &eval as &dyn Fn() -> Result<(), Box<dyn std::error::Error>>,
                    &mut eval_t[m],
                ),
                (&train, &mut train_t[m]),
            ] {
                let (t, c) = (Instant::now(), cpu_seconds());
                f()?;
                let s = t.elapsed().as_secs_f64();
                if rep > 0 {
                    // rep 0 is the warm-up
                    acc.0 = acc.0.min(s);
                    acc.1 += s;
                    acc.2 += cpu_seconds() - c;
                }
            }
        }
    }
    set_cpu_fast_path(true);
    set_cpu_fast_norm(true);
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    println!(
        "resnet18 {size}px batch {batch}, threads {threads}, {repeats} repeats (best / mean):"
    );
    let per_img = |t: f64| t * 1e3 / batch as f64;
    for (m, &(path, ..)) in modes.iter().enumerate() {
        for (what, (best, total, cpu)) in [
            ("eval forward", eval_t[m]),
            ("train fwd+backward", train_t[m]),
        ] {
            let mean = total / repeats as f64;
            println!(
                "  {path:12} {what:18} {:8.1} / {:8.1} ms per batch, {:6.2} / {:6.2} ms per image, CPU {:6.2} ms per image",
                best * 1e3,
                mean * 1e3,
                per_img(best),
                per_img(mean),
                per_img(cpu / repeats as f64)
            );
        }
    }
    if modes.len() == 2 {
        println!(
            "  {} / {} (best): eval {:.2}x, train {:.2}x",
            modes[1].0,
            modes[0].0,
            eval_t[1].0 / eval_t[0].0,
            train_t[1].0 / train_t[0].0
        );
    }
    Ok(())
}

/// CPU time (user + system, all threads) of this process so far, from `/proc/self/stat`
/// (clock ticks of 1/100 s); 0 where that file does not exist.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name: state is field 3; utime, stime 14, 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
