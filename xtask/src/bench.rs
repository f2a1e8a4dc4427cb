//! `cargo xtask bench`: cxr's seed-CNN training and inference throughput, and the
//! same recipe in PyTorch (bench/torch_seed_cnn.py) when torch is installed, with
//! ratios from the same run; then ResNet18's training step (forward + backward +
//! AdamW) and eval throughput at `--resnet-sizes` against torchvision's
//! (bench/torch_resnet18.py --time-only); and prediction throughput (read + decode +
//! preprocess + inference) of the first repeat's seed CNN over folders of PNG and DICOM
//! files, cxr's `cxr_predict::predict` against PyTorch + Pillow/pydicom
//! (bench/torch_predict.py). Medians over `--repeats`; the seed-CNN repeats (training, then
//! inference of a fresh model) of cxr and PyTorch alternate, and so do ResNet18's rounds
//! (each the medians of `--repeats` steps) and the predict rounds, so that load on a shared
//! machine hits both.

use std::collections::HashMap;
use std::path::Path;
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
    /// Skip the predict throughput benchmark (PNG and DICOM folders).
    #[arg(long)]
    pub no_predict: bool,
    /// Copies of each test image (under different names) in the predict benchmark's
    /// folders, so that per-call overhead weighs less.
    #[arg(long, default_value_t = 4)]
    pub predict_copies: usize,
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
    if a.repeats == 0
        || a.epochs == 0
        || a.threads == 0
        || a.predict_copies == 0
        || a.resnet_batch < 2
    {
        bail!(
            "--repeats, --epochs, --threads and --predict-copies must be at least 1, \
             --resnet-batch at least 2"
        );
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
    let torch_figures = torch.then(|| torch_summary(&torch_runs));
    print_table(a, &cxr, torch_figures.as_ref());
    if !a.no_predict {
        predict_bench(a, &data.test, &scratch.join("cnn-0"), torch)?;
    }
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

/// The two input folders of the predict benchmark: (label, folder).
const PREDICT_KINDS: [(&str, &str); 2] = [("PNG", "png"), ("DICOM", "dicom")];

/// Writes the test split `copies` times into `root/png/NNNN.png` (8-bit gray) and
/// `root/dicom/NNNN.dcm` (8-bit MONOCHROME2, explicit VR little endian), file `k·n + i`
/// holding image `i`; the folders are emptied first.
fn write_predict_inputs(test: &cxr_data::ImageSet, root: &Path, copies: usize) -> Result<()> {
    let (h, w) = (test.height, test.width);
    let n = test.len();
    if n == 0 || h * w == 0 {
        bail!("the test split is empty: nothing to predict");
    }
    let rows = u16::try_from(h).with_context(|| format!("test images {h} px high: too tall"))?;
    let cols = u16::try_from(w).with_context(|| format!("test images {w} px wide: too wide"))?;
    let files = n
        .checked_mul(copies)
        .with_context(|| format!("--predict-copies {copies}: too many files"))?;
    let digits = (files - 1).to_string().len().max(4);
    for (_, folder) in PREDICT_KINDS {
        let dir = root.join(folder);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    for k in 0..copies {
        for (i, px) in test.images.chunks_exact(h * w).enumerate() {
            let stem = format!("{:0digits$}", k * n + i);
            let png = root.join("png").join(format!("{stem}.png"));
            image::GrayImage::from_raw(w as u32, h as u32, px.to_vec())
                .context("a test image with the wrong number of pixels")?
                .save_with_format(&png, image::ImageFormat::Png)
                .with_context(|| format!("writing {}", png.display()))?;
            let dcm = root.join("dicom").join(format!("{stem}.dcm"));
            let bytes = cxr_testkit::dicom_gray(
                rows,
                cols,
                1,
                8,
                "MONOCHROME2",
                cxr_testkit::DicomPixels::U8(px.to_vec()),
                None,
                None,
            );
            std::fs::write(&dcm, bytes).with_context(|| format!("writing {}", dcm.display()))?;
        }
    }
    Ok(())
}

/// One predict round of one side: images/s over read → probabilities, and each file's
/// probability by file name.
struct PredictRound {
    images_per_second: f64,
    probs: HashMap<String, f64>,
}

/// cxr's `predict` on `dir` into a fresh `out`: its `summary.images_per_second`, the
/// images/s of the whole call (site check and writing the folder included) and the
/// probabilities.
fn cxr_predict_round(run: &Path, dir: &Path, out: &Path) -> Result<(PredictRound, f64)> {
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    let opts = cxr_predict::PredictOptions {
        out: Some(out.to_path_buf()),
        site_resamples: 2,
        inputs_as_given: vec![dir.display().to_string()],
        ..cxr_predict::PredictOptions::default()
    };
    let t0 = Instant::now();
    let o = cxr_predict::predict(run, &[dir.to_path_buf()], &opts)
        .with_context(|| format!("cxr predict with {} on {}", run.display(), dir.display()))?;
    let whole = t0.elapsed().as_secs_f64();
    if o.summary.unreadable > 0 {
        let first = o.rows.iter().find(|r| !r.error.is_empty());
        bail!(
            "cxr predict could not read {} of the files in {} (first: {})",
            o.summary.unreadable,
            dir.display(),
            first.map_or(String::new(), |r| format!("{}: {}", r.path, r.error))
        );
    }
    let probs = o
        .rows
        .iter()
        .filter_map(|r| {
            let name = Path::new(&r.path)
                .file_name()?
                .to_string_lossy()
                .into_owned();
            Some((name, r.prob?))
        })
        .collect();
    Ok((
        PredictRound {
            images_per_second: o.summary.images_per_second,
            probs,
        },
        o.summary.predicted as f64 / whole,
    ))
}

/// bench/torch_predict.py on `dir`, or `None` (said why) when the script fails.
fn torch_predict_round(a: &BenchArgs, run: &Path, dir: &Path) -> Result<Option<PredictRound>> {
    let script = project_root().join("bench").join("torch_predict.py");
    let out = Process::new(&a.python)
        .arg(&script)
        .arg("--run")
        .arg(run)
        .arg("--images")
        .arg(dir)
        .args(["--threads", &a.threads.to_string(), "--json"])
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        println!(
            "PyTorch predict peer skipped: {} failed ({}); it needs torch, Pillow, pydicom and \
             safetensors (see bench/README.md)",
            script.display(),
            stderr_tail(&out)
        );
        return Ok(None);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(line)
        .with_context(|| format!("parsing the last line of {}'s output", script.display()))?;
    let bad = |what: &str| anyhow::anyhow!("{}'s output: no valid `{what}`", script.display());
    let images_per_second = v["images_per_second"]
        .as_f64()
        .ok_or_else(|| bad("images_per_second"))?;
    let names = v["names"].as_array().ok_or_else(|| bad("names"))?;
    let probs = v["probabilities"]
        .as_array()
        .ok_or_else(|| bad("probabilities"))?;
    if names.len() != probs.len() {
        return Err(bad("names and probabilities of the same length"));
    }
    let probs = names
        .iter()
        .zip(probs)
        .map(|(n, p)| Some((n.as_str()?.to_string(), p.as_f64()?)))
        .collect::<Option<HashMap<_, _>>>()
        .ok_or_else(|| bad("names (strings) and probabilities (numbers)"))?;
    Ok(Some(PredictRound {
        images_per_second,
        probs,
    }))
}

/// Largest |cxr − peer| over the files both predicted; an error when they predicted
/// different files.
fn max_prob_difference(cxr: &PredictRound, peer: &PredictRound, dir: &Path) -> Result<f64> {
    if cxr.probs.len() != peer.probs.len() {
        bail!(
            "{}: cxr predicted {} files, the PyTorch peer {}",
            dir.display(),
            cxr.probs.len(),
            peer.probs.len()
        );
    }
    cxr.probs.iter().try_fold(0f64, |m, (name, p)| {
        let q = peer.probs.get(name).with_context(|| {
            format!(
                "{}: the PyTorch peer has no probability for {name}",
                dir.display()
            )
        })?;
        Ok(m.max((p - q).abs()))
    })
}

/// One input kind's figures over the predict rounds.
#[derive(Debug, Default)]
struct PredictFigures {
    /// cxr's `summary.images_per_second`, each round.
    cxr: Vec<f64>,
    /// Images/s of cxr's whole `predict` call, each round.
    cxr_whole: Vec<f64>,
    /// The peer's images/s, each round.
    torch: Vec<f64>,
    /// cxr / peer, each round.
    ratios: Vec<f64>,
    /// Largest |cxr − peer| probability over all files and rounds.
    max_diff: f64,
}

/// Predict throughput of the seed CNN in `run` (the first training repeat's) over
/// folders of PNG and of DICOM files: `--repeats` rounds, each cxr then PyTorch on the
/// PNG folder, then on the DICOM folder; medians, ratios, and the largest probability
/// difference between the two.
fn predict_bench(a: &BenchArgs, test: &cxr_data::ImageSet, run: &Path, torch: bool) -> Result<()> {
    let root = project_root()
        .join("target")
        .join("bench-runs")
        .join("predict");
    write_predict_inputs(test, &root, a.predict_copies)?;
    let files = test.len() * a.predict_copies;
    info!(files, folder = %root.display(), "predict inputs written");
    let mut torch_ok = torch;
    let mut figures: Vec<PredictFigures> = PREDICT_KINDS
        .iter()
        .map(|_| PredictFigures::default())
        .collect();
    for round in 0..a.repeats {
        for ((label, folder), f) in PREDICT_KINDS.iter().zip(figures.iter_mut()) {
            let dir = root.join(folder);
            let out = root.join(format!("out-{folder}-{round}"));
            let (c, whole) = cxr_predict_round(run, &dir, &out)?;
            info!(
                round,
                kind = label,
                images_per_second = c.images_per_second,
                "cxr predict round done"
            );
            if c.probs.len() != files {
                bail!(
                    "cxr predicted {} of the {files} files in {}",
                    c.probs.len(),
                    dir.display()
                );
            }
            f.cxr.push(c.images_per_second);
            f.cxr_whole.push(whole);
            if torch_ok {
                match torch_predict_round(a, run, &dir)? {
                    Some(t) => {
                        info!(
                            round,
                            kind = label,
                            images_per_second = t.images_per_second,
                            "PyTorch predict round done"
                        );
                        f.max_diff = f.max_diff.max(max_prob_difference(&c, &t, &dir)?);
                        f.torch.push(t.images_per_second);
                        f.ratios.push(c.images_per_second / t.images_per_second);
                    }
                    None => torch_ok = false,
                }
            }
        }
    }
    println!(
        "\npredict, seed CNN of {}, {} test images × {} copies = {files} files per folder, \
         {} thread(s), {} rounds, alternating (medians)",
        run.display(),
        test.len(),
        a.predict_copies,
        a.threads,
        a.repeats
    );
    println!(
        "{:<34} {:>12} {:>12} {:>14}",
        "figure", "cxr", "pytorch", "cxr/pytorch"
    );
    for ((label, _), f) in PREDICT_KINDS.iter().zip(&figures) {
        let c = median(f.cxr.clone());
        let name = format!("{label} images/s");
        if torch_ok {
            let t = median(f.torch.clone());
            println!("{name:<34} {c:>12.1} {t:>12.1} {:>14.3}", c / t);
        } else {
            println!("{name:<34} {c:>12.1} {:>12} {:>14}", "–", "–");
        }
    }
    for ((label, _), f) in PREDICT_KINDS.iter().zip(&figures) {
        let name = format!("{label} images/s, whole call");
        println!(
            "{name:<34} {:>12.1} {:>12} {:>14}",
            median(f.cxr_whole.clone()),
            "–",
            "–"
        );
    }
    if torch_ok {
        for ((label, _), f) in PREDICT_KINDS.iter().zip(&figures) {
            let each: Vec<String> = f.ratios.iter().map(|r| format!("{r:.3}")).collect();
            println!(
                "{:<34} {}",
                format!("{label} ratio, each round"),
                each.join(" ")
            );
        }
        let diffs: Vec<String> = PREDICT_KINDS
            .iter()
            .zip(&figures)
            .map(|((label, _), f)| format!("{label} {:.2e}", f.max_diff))
            .collect();
        println!(
            "correctness: max |prob cxr − prob pytorch| over all files and rounds: {}",
            diffs.join(", ")
        );
    }
    println!(
        "images/s: read model.json + weights, list the folder, read + decode + preprocess \
         every file, inference (cxr: summary.images_per_second; the peer: the same span); \
         not the site check or writing the prediction folder. whole call: cxr's predict() \
         timed around, with the site check (2 resamples) and the CSV + summary written."
    );
    Ok(())
}

/// The last line of a finished peer script's standard error (its exception message).
fn stderr_tail(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}
