//! Times the parts of one seed-CNN training step (batch 64, 28×28) on CPU — forward,
//! loss, backward, optimizer — with the CPU fast paths on and off (and the fused Winograd
//! block on and off), then each layer's
//! pieces (conv forward, input gradient, weight gradient, ReLU + max-pool forward and
//! backward) for both, and the convolutions' GEMMs with cxr's AVX-512 kernel against
//! candle's matmul (the `gemm` crate). The fast path runs twice: with cxr's GEMM and with
//! candle's matmul inside it (`set_cpu_sgemm(false)`).
//! `cargo run --release -p cxr-train --example step_profile`.

use std::time::Instant;

use candle_core::Var;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr_kernels::{
    MatLayout, conv2d_candle, conv2d_cpu, cpu_sgemm_active, set_cpu_fast_path, set_cpu_sgemm,
    set_cpu_winograd, sgemm_f32,
};
use cxr_models::{CnnConfig, SeedCnn, init_seed_cnn, max_pool2d, relu_max_pool2d};
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
    let x = input_batch(b)?;
    let y = Tensor::from_vec((0..b).map(|i| (i % 2) as f32).collect::<Vec<_>>(), b, &dev)?;
    println!("cxr AVX-512 GEMM active: {}", cpu_sgemm_active());
    // `--variant LABEL` times that one variant only (e.g. under `perf stat`, whose CPU
    // time is steadier than wall time on a shared machine).
    let only = std::env::args().skip_while(|a| a != "--variant").nth(1);
    if std::env::args().any(|a| a == "--infer") {
        return infer(&model);
    }
    for (fast, sgemm, wino, label) in [
        (true, true, true, "winograd"),
        (true, true, false, "fast+sgemm"),
        (true, false, false, "fast+gemm"),
        (false, true, false, "candle ops"),
    ] {
        if only.as_deref().is_some_and(|o| o != label) {
            continue;
        }
        set_cpu_fast_path(fast);
        set_cpu_sgemm(sgemm);
        set_cpu_winograd(wino);
        step(&model, &mut opt, &x, &y, b, label)?;
    }
    set_cpu_winograd(true);
    if only.is_some() {
        return Ok(());
    }
    set_cpu_fast_path(true);
    set_cpu_sgemm(true);
    gemms()?;
    if std::env::args().any(|a| a == "--gemm-only") {
        return Ok(());
    }
    layers()?;
    Ok(())
}

fn step(
    model: &SeedCnn,
    opt: &mut Adam,
    x: &Tensor,
    y: &Tensor,
    b: usize,
    label: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let (mut tf, mut tb, mut to) = (0.0, 0.0, 0.0);
    let mut all = Vec::new();
    // `--steps N` (default 20) timed steps after 3 warm-ups.
    let steps: usize = std::env::args()
        .skip_while(|a| a != "--steps")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    for i in 0..steps + 3 {
        let t0 = Instant::now();
        let logits = model.forward(x)?;
        let loss = bce_with_logits(&logits, y)?;
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
            all.push((t3 - t0).as_secs_f64());
        }
    }
    let per = |t: f64| t / steps as f64 / b as f64 * 1e3;
    all.sort_by(f64::total_cmp);
    println!(
        "{label:>10}: ms per image: forward+loss {:.3}, backward {:.3}, optimizer {:.3}, total {:.3}; median step {:.3}, fastest {:.3}",
        per(tf),
        per(tb),
        per(to),
        per(tf + tb + to),
        all[all.len() / 2] / b as f64 * 1e3,
        all[0] / b as f64 * 1e3
    );
    Ok(())
}

/// A fixed, deterministic batch of `b` 28×28 grayscale images in [0, 1].
fn input_batch(b: usize) -> candle_core::Result<Tensor> {
    Tensor::from_vec(
        (0..b * 784)
            .map(|i| ((i * 7919) % 255) as f32 / 255.0)
            .collect::<Vec<_>>(),
        (b, 1, 28, 28),
        &Device::Cpu,
    )
}

/// `--infer`: eval-mode forward of a batch of 256 (the bench's batched inference), ms per
/// image (median and fastest of 30 after 3 warm-ups), with the fused Winograd block on and
/// off, alternating.
fn infer(model: &SeedCnn) -> Result<(), Box<dyn std::error::Error>> {
    let b = 256;
    let x = input_batch(b)?;
    let mut times = [Vec::new(), Vec::new()];
    for i in 0..33 {
        for (wino, t) in [true, false].into_iter().zip(times.iter_mut()) {
            set_cpu_winograd(wino);
            let t0 = Instant::now();
            model.forward(&x)?.to_vec1::<f32>()?;
            if i >= 3 {
                t.push(t0.elapsed().as_secs_f64() / b as f64 * 1e3);
            }
        }
    }
    set_cpu_winograd(true);
    for (label, mut t) in ["winograd", "fast+sgemm"].into_iter().zip(times) {
        t.sort_by(f64::total_cmp);
        println!(
            "{label:>10}: inference ms per image (batch {b}): median {:.4}, fastest {:.4}",
            t[t.len() / 2],
            t[0]
        );
    }
    Ok(())
}

/// Fastest of 30 runs of `f` in milliseconds (after 3 warm-ups): on a shared machine the
/// minimum is the run least disturbed by other processes.
fn time_min<F: FnMut() -> candle_core::Result<()>>(mut f: F) -> candle_core::Result<f64> {
    let mut best = f64::INFINITY;
    for i in 0..33 {
        let t0 = Instant::now();
        f()?;
        if i >= 3 {
            best = best.min(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(best)
}

/// Median milliseconds of `f` over 15 runs after 3 warm-ups.
fn time<F: FnMut() -> candle_core::Result<()>>(mut f: F) -> candle_core::Result<f64> {
    let mut t = Vec::new();
    for i in 0..18 {
        let t0 = Instant::now();
        f()?;
        if i >= 3 {
            t.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// Per-layer pieces of the seed CNN at batch 64: conv forward, input gradient, weight
/// gradient (each through autograd, so the gradient times are backward minus forward),
/// and the ReLU + max-pool, fast path against candle's ops.
fn layers() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    println!("per layer, batch 64, median ms per batch: fast path | candle ops");
    for (name, ci, co, hw) in [
        ("conv1", 1, 32, 28),
        ("conv2", 32, 64, 14),
        ("conv3", 64, 128, 7),
    ] {
        let xv: Vec<f32> = (0..64 * ci * hw * hw)
            .map(|i| ((i * 31) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let wv: Vec<f32> = (0..co * ci * 9)
            .map(|i| ((i * 17) % 89) as f32 / 89.0 - 0.5)
            .collect();
        let x = Var::from_vec(xv, (64, ci, hw, hw), &dev)?;
        let w = Var::from_vec(wv, (co, ci, 3, 3), &dev)?;
        let b = Var::zeros(co, candle_core::DType::F32, &dev)?;
        let mut row = Vec::new();
        for fast in [true, false] {
            let conv = |x: &Tensor| {
                if fast {
                    conv2d_cpu(x, w.as_tensor(), Some(b.as_tensor()), 1, 1)
                } else {
                    conv2d_candle(x, w.as_tensor(), Some(b.as_tensor()), 1, 1)
                }
            };
            let fwd = time(|| conv(&x.as_tensor().detach()).map(|_| ()))?;
            // weight gradient only: the input is not a variable
            let wgrad = time(|| {
                conv(&x.as_tensor().detach())?
                    .sum_all()?
                    .backward()
                    .map(|_| ())
            })? - fwd;
            // input + weight gradient
            let both = time(|| conv(x.as_tensor())?.sum_all()?.backward().map(|_| ()))? - fwd;
            let y = conv(&x.as_tensor().detach())?;
            let yv = Var::from_tensor(&y)?;
            let pool = |t: &Tensor| {
                if fast {
                    relu_max_pool2d(t).map_err(|e| candle_core::Error::Msg(e.to_string()))
                } else {
                    set_cpu_fast_path(false);
                    let r =
                        max_pool2d(&t.relu()?).map_err(|e| candle_core::Error::Msg(e.to_string()));
                    set_cpu_fast_path(true);
                    r
                }
            };
            let pf = time(|| pool(yv.as_tensor()).map(|_| ()))?;
            let pb = time(|| pool(yv.as_tensor())?.sum_all()?.backward().map(|_| ()))? - pf;
            row.push([fwd, both - wgrad, wgrad, pf, pb]);
        }
        println!(
            "{name} {ci:>3}->{co:<3} {hw:>2}px: conv fwd {:6.2} | {:6.2}   input grad {:6.2} | {:6.2}   weight grad {:6.2} | {:6.2}   relu+pool fwd {:5.2} | {:5.2}   bwd {:5.2} | {:5.2}",
            row[0][0],
            row[1][0],
            row[0][1],
            row[1][1],
            row[0][2],
            row[1][2],
            row[0][3],
            row[1][3],
            row[0][4],
            row[1][4]
        );
    }
    Ok(())
}

/// The seed CNN's convolution GEMMs at batch 64 (forward `W·cols`, weight gradient
/// `dY·colsᵀ`, input gradient `Wᵀ·dY`, all row-major): cxr's AVX-512 kernel against
/// candle's matmul, fastest of 30 runs in ms and GFLOP/s.
fn gemms() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    if !cpu_sgemm_active() {
        println!("GEMMs: cxr's AVX-512 kernel is not active on this CPU; skipped");
        return Ok(());
    }
    println!(
        "GEMMs, batch 64, fastest of 30 runs, ms (GFLOP/s): cxr sgemm | candle matmul (gemm crate)"
    );
    for (name, ci, co, hw) in [
        ("conv1", 1, 32, 28),
        ("conv2", 32, 64, 14),
        ("conv3", 64, 128, 7),
    ] {
        let (rows, n) = (ci * 9, 64 * hw * hw);
        let w: Vec<f32> = (0..co * rows)
            .map(|i| ((i * 17) % 89) as f32 / 89.0 - 0.5)
            .collect();
        let cols: Vec<f32> = (0..rows * n)
            .map(|i| ((i * 31) % 97) as f32 / 97.0 - 0.5)
            .collect();
        let dy: Vec<f32> = (0..co * n)
            .map(|i| ((i * 13) % 83) as f32 / 83.0 - 0.5)
            .collect();
        let wt = Tensor::from_slice(&w, (co, rows), &dev)?;
        let ct = Tensor::from_slice(&cols, (rows, n), &dev)?;
        let dyt = Tensor::from_slice(&dy, (co, n), &dev)?;
        // (label, m, n, k, a, its layout, b, its layout, C's group) as the convolution
        // calls them: dY is [B, Co, L], the forward writes [B, Co, L], the input gradient
        // [B, C·9, L]; candle multiplies contiguous [Co, N] copies.
        let l = hw * hw;
        let dyg: Vec<f32> = dyt
            .reshape((co, 64, l))?
            .transpose(0, 1)?
            .flatten_all()?
            .to_vec1()?;
        type Case<'a> = (
            &'a str,
            usize,
            usize,
            usize,
            &'a [f32],
            MatLayout,
            &'a [f32],
            MatLayout,
            usize,
        );
        let (rm, tr, gr) = (
            MatLayout::RowMajor,
            MatLayout::Transposed,
            MatLayout::Grouped(l),
        );
        let cases: [Case<'_>; 3] = [
            ("forward W·cols", co, n, rows, &w, rm, &cols, rm, l),
            (
                "weight grad dY·colsᵀ",
                co,
                rows,
                n,
                &dyg,
                gr,
                &cols,
                tr,
                rows,
            ),
            ("input grad Wᵀ·dY", rows, n, co, &w, tr, &dyg, gr, l),
        ];
        for (i, (label, m, nn, k, a, al, bm, bl, og)) in cases.into_iter().enumerate() {
            let flop = 2.0 * (m * nn * k) as f64;
            let ours = if sgemm_f32(m, nn, k, a, al, bm, bl, og).is_some() {
                time_min(|| {
                    sgemm_f32(m, nn, k, a, al, bm, bl, og)
                        .map(|_| ())
                        .ok_or_else(|| candle_core::Error::Msg("sgemm declined".into()))
                })?
            } else {
                f64::NAN // declined: the convolution uses candle's matmul for this one
            };
            let theirs = time_min(|| {
                let r = match i {
                    0 => wt.matmul(&ct)?,
                    1 => dyt.matmul(&ct.t()?)?,
                    _ => wt.t()?.matmul(&dyt)?,
                };
                r.dims();
                Ok(())
            })?;
            println!(
                "{name} {label:<22} m {m:>4} n {nn:>5} k {k:>5}: {ours:6.2} ({:5.1}) | {theirs:6.2} ({:5.1})",
                flop / ours / 1e6,
                flop / theirs / 1e6
            );
        }
    }
    Ok(())
}
