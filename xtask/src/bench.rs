//! `cargo xtask bench`: cxr's seed-CNN training and inference throughput, and the
//! same recipe in PyTorch (bench/torch_seed_cnn.py) when torch is installed, with
//! ratios from the same run; then ResNet18's training step (forward + backward +
//! AdamW) and eval throughput at `--resnet-sizes` against torchvision's
//! (bench/torch_resnet18.py --time-only). Medians over `--repeats`; the seed-CNN repeats
//! (training, then inference of a fresh model) of cxr and PyTorch alternate, and so do
//! ResNet18's rounds (each the medians of `--repeats` steps), so that load on a shared
//! machine hits both.

use std::process::Command as Process;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use cxr_data::{Batcher, BatcherConfig, Normalize};
use cxr_models::{
    CnnConfig, ResNet18, ResNetConfig, SeedCnn, imagenet_input, init_resnet18, init_seed_cnn,
};
use cxr_train::{Adam, AdamConfig, OptimizerKind, RunOptions, TrainConfig, bce_with_logits};
use tracing::info;

use clap::Args;
use cxr::cli::DataArgs;
use cxr::load_data;

use crate::tasks::project_root;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Training epochs per measurement.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Repetitions; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Threads for both cxr (RAYON_NUM_THREADS) and PyTorch.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Skip the PyTorch peer even if torch is installed.
    #[arg(long)]
    pub no_torch: bool,
    /// Python interpreter for the PyTorch peer.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Input sizes of the ResNet18 step benchmark (each at least 28).
    #[arg(long, value_delimiter = ',', default_value = "64,128")]
    pub resnet_sizes: Vec<usize>,
    /// Skip the ResNet18 step benchmark.
    #[arg(long)]
    pub no_resnet: bool,
    /// Batch size of the ResNet18 step benchmark.
    #[arg(long, default_value_t = 32)]
    pub resnet_batch: usize,
    #[command(flatten)]
    pub data: DataArgs,
}

/// Figures of one framework; medians over repeats.
#[derive(Debug, Default, Clone)]
struct Figures {
    train_images_per_second: f64,
    seconds_per_epoch: f64,
    infer_batched_images_per_second: f64,
    infer_batch1_ms: f64,
    peak_rss_mib: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub fn bench(a: &BenchArgs) -> Result<()> {
    if a.repeats == 0 || a.epochs == 0 || a.threads == 0 || a.resnet_batch < 2 {
        bail!("--repeats, --epochs and --threads must be at least 1, --resnet-batch at least 2");
    }
    if let Some(s) = a.resnet_sizes.iter().find(|&&s| s < 28) {
        bail!("--resnet-sizes: {s} px is too small for ResNet18 (at least 28)");
    }
    // candle and gemm read RAYON_NUM_THREADS once, at first use: re-run ourselves
    // with it set so that cxr and PyTorch get the same number of threads.
    let want = a.threads.to_string();
    if std::env::var("RAYON_NUM_THREADS").ok().as_deref() != Some(want.as_str()) {
        let exe = std::env::current_exe().context("locating the xtask binary")?;
        let status = Process::new(exe)
            .args(std::env::args_os().skip(1))
            .env("RAYON_NUM_THREADS", &want)
            .status()
            .context("re-running bench with RAYON_NUM_THREADS set")?;
        if !status.success() {
            bail!("bench failed ({status})");
        }
        return Ok(());
    }
    let data = load_data(&a.data, 28)?;
    let scratch = project_root().join("target").join("bench-runs");
    let torch = !a.no_torch && has_torch(a);
    let mut runs = Vec::new();
    let mut torch_runs = Vec::new();
    let mut infer = Vec::new();
    // cxr and PyTorch repeats alternate, so that load on a shared machine hits both.
    for rep in 0..a.repeats {
        let cfg = TrainConfig {
            epochs: a.epochs,
            seed: rep as u64,
            ..TrainConfig::default()
        };
        let dir = scratch.join(format!("cnn-{rep}"));
        let _ = std::fs::remove_dir_all(&dir);
        let t0 = Instant::now();
        let s = cxr_train::train(&cfg, &data, &dir, &RunOptions::default())?;
        info!(
            rep,
            seconds = t0.elapsed().as_secs_f64(),
            "cxr training repeat done"
        );
        runs.push(s);
        // Inference in every repeat too, so that it alternates with PyTorch's as well.
        infer.push(inference(&data.test)?);
        if torch {
            let t0 = Instant::now();
            torch_runs.push(torch_repeat(a, &data.source, rep)?);
            info!(
                rep,
                seconds = t0.elapsed().as_secs_f64(),
                "PyTorch training repeat done"
            );
        }
    }
    let batched = median(infer.iter().map(|i: &(f64, f64)| i.0).collect());
    let batch1 = median(infer.iter().map(|i| i.1).collect());
    let cxr = Figures {
        train_images_per_second: median(runs.iter().map(|r| r.train_images_per_second).collect()),
        seconds_per_epoch: median(
            runs.iter()
                .map(|r| data.train.len() as f64 / r.train_images_per_second)
                .collect(),
        ),
        infer_batched_images_per_second: batched,
        infer_batch1_ms: batch1,
        peak_rss_mib: peak_rss_mib(),
    };
    let torch = torch.then(|| torch_summary(&torch_runs));
    print_table(a, &cxr, torch.as_ref());
    if !a.no_resnet {
        for &size in &a.resnet_sizes {
            resnet_bench(a, size)?;
        }
    }
    Ok(())
}

/// Images per second of one ResNet18 training step (train-mode forward, BCE,
/// backward, AdamW) and of eval-mode inference, on a random batch of
/// `--resnet-batch` images at `size` px: medians of `--repeats` after one warm-up.
fn resnet_step_figures(size: usize, batch: usize, repeats: usize) -> Result<(f64, f64)> {
    let device = Device::Cpu;
    let cfg = ResNetConfig::default();
    let varmap = VarMap::new();
    init_resnet18(&varmap, &cfg, 0, &device)?;
    let net = ResNet18::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), &cfg)?;
    let params = ResNet18::param_groups(&varmap, &cfg)?.trainable();
    let mut opt = Adam::new(
        params,
        AdamConfig {
            kind: OptimizerKind::AdamW,
            weight_decay: 0.01,
            ..AdamConfig::default()
        },
    )?;
    let x = Tensor::rand(0f32, 1f32, (batch, 1, size, size), &device)?;
    let y = Tensor::from_vec(
        (0..batch).map(|i| (i % 2) as f32).collect::<Vec<_>>(),
        batch,
        &device,
    )?;
    let mut train = Vec::new();
    let mut eval = Vec::new();
    for i in 0..=repeats {
        let t0 = Instant::now();
        let loss = bce_with_logits(&net.forward_t(&imagenet_input(&x)?, true)?, &y)?;
        opt.step(&loss.backward()?)?;
        let dt_train = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        net.forward_t(&imagenet_input(&x)?, false)?
            .to_vec1::<f32>()?;
        let dt_eval = t0.elapsed().as_secs_f64();
        if i > 0 {
            train.push(batch as f64 / dt_train);
            eval.push(batch as f64 / dt_eval);
        }
    }
    Ok((median(train), median(eval)))
}

/// ResNet18 at `size` px: `--repeats` rounds, each cxr's medians of `--repeats` steps
/// then PyTorch's (alternating, so that load on a shared machine hits both alike);
/// medians of the rounds, and each round's train-step ratio.
fn resnet_bench(a: &BenchArgs, size: usize) -> Result<()> {
    let batch = a.resnet_batch;
    let (mut ct, mut ce, mut tt, mut te, mut ratios) = (vec![], vec![], vec![], vec![], vec![]);
    let mut torch_ok = !a.no_torch;
    for round in 0..a.repeats {
        let (train, eval) = resnet_step_figures(size, batch, a.repeats)?;
        info!(size, round, train, eval, "cxr ResNet18 round done");
        ct.push(train);
        ce.push(eval);
        if torch_ok {
            match torch_resnet(a, size, batch)? {
                Some((train_t, eval_t)) => {
                    info!(size, round, train_t, eval_t, "PyTorch ResNet18 round done");
                    tt.push(train_t);
                    te.push(eval_t);
                    ratios.push(train / train_t);
                }
                None => torch_ok = false,
            }
        }
    }
    let (train, eval) = (median(ct), median(ce));
    let torch = torch_ok.then(|| (median(tt), median(te)));
    println!(
        "\nResNet18, {size}×{size}, batch {batch}, {} thread(s), {} rounds of {} steps, alternating (medians)",
        a.threads, a.repeats, a.repeats
    );
    println!(
        "{:<34} {:>12} {:>12} {:>14}",
        "figure", "cxr", "pytorch", "cxr/pytorch"
    );
    for (name, c, t) in [
        ("train step images/s", train, torch.map(|t| t.0)),
        ("inference images/s", eval, torch.map(|t| t.1)),
    ] {
        match t {
            Some(t) => println!("{name:<34} {c:>12.2} {t:>12.2} {:>14.3}", c / t),
            None => println!("{name:<34} {c:>12.2} {:>12} {:>14}", "–", "–"),
        }
    }
    if torch.is_some() {
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        println!("{:<34} {}", "train step ratio, each round", each.join(" "));
    }
    Ok(())
}

/// torchvision's figures from bench/torch_resnet18.py, or `None` without torch.
fn torch_resnet(a: &BenchArgs, size: usize, batch: usize) -> Result<Option<(f64, f64)>> {
    let script = project_root().join("bench").join("torch_resnet18.py");
    let out = Process::new(&a.python)
        .arg(&script)
        .args([
            "--time-only",
            "--json",
            "--size",
            &size.to_string(),
            "--batch-size",
            &batch.to_string(),
            "--threads",
            &a.threads.to_string(),
            "--repeats",
            &a.repeats.to_string(),
        ])
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        println!(
            "PyTorch ResNet18 peer skipped: {} failed ({}); it needs torch and torchvision",
            script.display(),
            stderr_tail(&out)
        );
        return Ok(None);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("parsing {}'s output: `{line}`", script.display()))?;
    Ok(v["train_images_per_second"]
        .as_f64()
        .zip(v["eval_images_per_second"].as_f64()))
}

/// (batched images/s with batch 256, batch-1 latency in ms): medians.
fn inference(test: &cxr_data::ImageSet) -> Result<(f64, f64)> {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let cfg = CnnConfig::default();
    init_seed_cnn(&varmap, &cfg, 0, &device)?;
    let model = SeedCnn::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), &cfg)?;
    let batches: Vec<Tensor> = Batcher::new(
        test,
        BatcherConfig {
            batch_size: 256,
            shuffle: false,
            seed: 0,
            epoch: 0,
            augment: None,
            normalize: Normalize::default(),
            limit: None,
            drop_last: false,
        },
        &device,
    )?
    .map(|b| b.map(|b| b.x))
    .collect::<std::result::Result<_, _>>()?;
    let mut passes = Vec::new();
    for i in 0..6 {
        let t0 = Instant::now();
        for x in &batches {
            model.forward(x)?.detach().to_vec1::<f32>()?;
        }
        if i > 0 {
            passes.push(test.len() as f64 / t0.elapsed().as_secs_f64());
        }
    }
    let first = &batches[0];
    let mut lat = Vec::new();
    for i in 0..220 {
        let x = first.narrow(0, i % first.dim(0)?, 1)?;
        let t0 = Instant::now();
        model.forward(&x)?.detach().to_vec1::<f32>()?;
        if i >= 20 {
            lat.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok((median(passes), median(lat)))
}

/// Whether `python` can import torch (the PyTorch peer runs); says so when not.
fn has_torch(a: &BenchArgs) -> bool {
    let ok = Process::new(&a.python)
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!(
            "PyTorch peer skipped: `{} -c 'import torch'` failed (see bench/README.md)",
            a.python
        );
    }
    ok
}

/// One repeat of bench/torch_seed_cnn.py: its JSON figures.
fn torch_repeat(a: &BenchArgs, data: &std::path::Path, rep: usize) -> Result<serde_json::Value> {
    let script = project_root().join("bench").join("torch_seed_cnn.py");
    let out = Process::new(&a.python)
        .arg(&script)
        .args([
            "--json",
            "--epochs",
            &a.epochs.to_string(),
            "--threads",
            &a.threads.to_string(),
        ])
        .args(["--seed", &rep.to_string(), "--data"])
        .arg(data)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), stderr_tail(&out));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line).with_context(|| {
        format!(
            "parsing the last line of {}'s output: `{line}`",
            script.display()
        )
    })?;
    Ok(v)
}

/// Medians of the PyTorch repeats.
fn torch_summary(all: &[serde_json::Value]) -> Figures {
    let get = |k: &str| median(all.iter().filter_map(|v| v[k].as_f64()).collect());
    Figures {
        train_images_per_second: get("train_images_per_second"),
        seconds_per_epoch: get("seconds_per_epoch"),
        infer_batched_images_per_second: get("infer_batched_images_per_second"),
        infer_batch1_ms: get("infer_batch1_ms"),
        peak_rss_mib: get("peak_rss_mib"),
    }
}

fn print_table(a: &BenchArgs, cxr: &Figures, torch: Option<&Figures>) {
    println!(
        "seed CNN, batch 64, 28×28, {} thread(s), {} epoch(s) × {} repeats (medians)",
        a.threads, a.epochs, a.repeats
    );
    println!(
        "{:<34} {:>12} {:>12} {:>14}",
        "figure", "cxr", "pytorch", "cxr/pytorch"
    );
    let rows: [(&str, f64, Option<f64>, bool); 5] = [
        (
            "train images/s",
            cxr.train_images_per_second,
            torch.map(|t| t.train_images_per_second),
            true,
        ),
        (
            "train seconds/epoch",
            cxr.seconds_per_epoch,
            torch.map(|t| t.seconds_per_epoch),
            false,
        ),
        (
            "inference images/s (batch 256)",
            cxr.infer_batched_images_per_second,
            torch.map(|t| t.infer_batched_images_per_second),
            true,
        ),
        (
            "inference latency ms (batch 1)",
            cxr.infer_batch1_ms,
            torch.map(|t| t.infer_batch1_ms),
            false,
        ),
        (
            "peak RSS MiB (whole process)",
            cxr.peak_rss_mib,
            torch.map(|t| t.peak_rss_mib),
            false,
        ),
    ];
    for (name, c, t, _) in rows {
        match t {
            Some(t) => println!("{name:<34} {c:>12.2} {t:>12.2} {:>14.3}", c / t),
            None => println!("{name:<34} {c:>12.2} {:>12} {:>14}", "–", "–"),
        }
    }
}

/// The last line of a finished peer script's standard error (its exception message).
fn stderr_tail(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}
