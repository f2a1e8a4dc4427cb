use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cxr_data::{Augment, Batcher, BatcherConfig, Dataset, ImageSet, Normalize};
use cxr_metrics::BinaryReport;
use cxr_models::{CnnConfig, SeedCnn, init_seed_cnn};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tracing::{info, warn};

use crate::checkpoint::{CheckpointMeta, EpochRecord, load_checkpoint, save_checkpoint};
use crate::evaluation::{SplitScores, evaluate};
use crate::guard::record_divergence;
use crate::runfolder::{Prediction, RunFiles};
use crate::{
    Adam, AugmentPreset, Autocast, LossScaler, ModelKind, Result, RunLock, TrainConfig, TrainError,
    bce_with_logits, bce_with_logits_host, device_name, ensure_writable_dir, parse_device,
};

/// How a run is carried out (not part of the model's recipe).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from `<out>/checkpoint.safetensors` if it exists.
    pub resume: bool,
    /// Draw progress bars (only on a terminal, never when `CI` is set).
    pub progress: bool,
    /// Extra entries for `config.json` (git commit, command line, ...).
    pub provenance: serde_json::Map<String, serde_json::Value>,
    /// Do not audit the trained model at the end (see [`crate::audit_run`]).
    pub skip_audit: bool,
    /// Settings of the audit run at the end.
    pub audit: crate::AuditOptions,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run folder.
    pub out_dir: PathBuf,
    /// Best epoch by validation AUC (1-based); its weights are `model.safetensors`.
    pub best_epoch: usize,
    /// Validation metrics of the best epoch at the configured threshold.
    pub val: BinaryReport,
    /// Test metrics of the best epoch at the configured threshold.
    pub test: BinaryReport,
    /// Seconds spent in training epochs (including per-epoch validation).
    pub train_seconds: f64,
    /// Training images processed per second (training passes only).
    pub train_images_per_second: f64,
}

/// A model being trained. Only the seed CNN exists today; the enum keeps the loop
/// model-agnostic.
enum Net {
    Cnn(SeedCnn, CnnConfig),
}

impl Net {
    /// f32 logits `[N]`. Under autocast the network is rebuilt from half-precision
    /// casts of the current f32 weights and runs in that type.
    fn logits(&self, x: &Tensor, autocast: Option<&Autocast>) -> Result<Tensor> {
        match (self, autocast) {
            (Net::Cnn(m, _), None) => Ok(m.forward(x)?),
            (Net::Cnn(_, mcfg), Some(ac)) => {
                let half = SeedCnn::new(ac.var_builder(x.device())?, mcfg)?;
                ac.output(&half.forward(&ac.input(x)?)?)
            }
        }
    }
}

/// Trains per `cfg` on `data`, writing the run folder contract into `out_dir`
/// (`metrics.json`, `predictions.csv`, `history.csv`, `model.safetensors`,
/// `config.json`, plus `checkpoint.safetensors` for resume).
pub fn train(
    cfg: &TrainConfig,
    data: &Dataset,
    out_dir: &Path,
    opts: &RunOptions,
) -> Result<RunSummary> {
    cfg.validate()?;
    ensure_writable_dir(out_dir)?;
    let _lock = RunLock::acquire(out_dir)?;
    crate::guard::remove_stale_temps(out_dir);
    let device = parse_device(&cfg.device)?;
    cfg.precision.check_device(&device)?;
    info!(
        device = device_name(&device),
        requested = cfg.device.as_str(),
        precision = cfg.precision.as_str(),
        "device"
    );
    let files = RunFiles::new(out_dir);

    let (train_set, val_set, test_set) = sized_splits(data, cfg.image_size)?;
    info!(
        train = train_set.len(),
        val = val_set.len(),
        test = test_set.len(),
        size = cfg.image_size,
        device = device_name(&device),
        "data ready"
    );

    let mut config_json = serde_json::json!({
        "train": cfg,
        "data": {
            "source": data.source.display().to_string(),
            "sha256": data.sha256,
            "train": train_set.len(),
            "val": val_set.len(),
            "test": test_set.len(),
        },
        "device_resolved": device_name(&device),
        "precision": cfg.precision.as_str(),
        "threads": rayon_threads(),
        "cxr_version": env!("CARGO_PKG_VERSION"),
        "status": "running",
    });
    for (k, v) in &opts.provenance {
        config_json[k] = v.clone();
    }
    files.write_json("config.json", &config_json)?;

    // Model and optimizer.
    let varmap = VarMap::new();
    let net = match cfg.model {
        ModelKind::Cnn => {
            let mcfg = CnnConfig::default();
            init_seed_cnn(&varmap, &mcfg, cfg.seed, &device)?;
            Net::Cnn(
                SeedCnn::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), &mcfg)?,
                mcfg,
            )
        }
    };
    let params = sorted_params(&varmap)?;
    let autocast = Autocast::new(cfg.precision, params.clone());
    let mut scaler = LossScaler::new(cfg.precision);
    let mut opt = Adam::new(params.clone(), cfg.optimizer)?;

    let mut history: Vec<EpochRecord> = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    let mut start_epoch = 0usize;
    let ckpt_path = files.path("checkpoint.safetensors");
    if opts.resume && ckpt_path.is_file() {
        let ck = load_checkpoint(&ckpt_path)?;
        check_resumable(&ck.meta, cfg, &data.sha256, &ckpt_path)?;
        set_weights(&varmap, &ck.weights, &ckpt_path)?;
        opt.load_state(&ck.opt_state, ck.meta.step, &ckpt_path)?;
        history = ck.meta.history;
        best = ck.meta.best_epoch.zip(ck.meta.best_val_auc);
        start_epoch = ck.meta.epoch;
        info!(epoch = start_epoch, "resumed from {}", ckpt_path.display());
    } else if opts.resume {
        warn!(
            "--resume: no checkpoint at {}, starting fresh",
            ckpt_path.display()
        );
    }

    let augment = match cfg.augment {
        AugmentPreset::None => None,
        AugmentPreset::Light => Some(Augment::light()),
    };
    let normalize = Normalize {
        mean: cfg.normalize_mean,
        std: cfg.normalize_std,
    };
    let show_progress =
        opts.progress && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();

    let mut train_images = 0usize;
    let mut train_only_seconds = 0.0f64;
    let run_start = Instant::now();
    for epoch in start_epoch..cfg.epochs {
        let t0 = Instant::now();
        let batcher = Batcher::new(
            &train_set,
            BatcherConfig {
                batch_size: cfg.batch_size,
                shuffle: true,
                seed: cfg.seed,
                epoch: epoch as u64,
                augment,
                normalize,
                limit: cfg.train_limit,
                drop_last: false,
            },
            &device,
        )?;
        let bar = progress_bar(
            show_progress,
            batcher.num_batches() as u64,
            epoch + 1,
            cfg.epochs,
        );
        let mut loss_sum = 0.0f64;
        let mut seen = 0usize;
        for (step, batch) in batcher.enumerate() {
            crate::guard::test_hang(out_dir, || format!("step:{}:{}", epoch + 1, step + 1));
            let batch = batch?;
            let logits = net.logits(&batch.x, autocast.as_ref())?;
            let loss = bce_with_logits(&logits, &batch.y)?;
            let loss_value = loss.to_scalar::<f32>()? as f64;
            if let Some(what) = crate::guard::bad_loss(loss_value) {
                let err = TrainError::Diverged {
                    epoch: epoch + 1,
                    step: step + 1,
                    what,
                };
                return Err(record_divergence(&files, &mut config_json, &history, err));
            }
            let mut grads = scaler.scale_loss(&loss)?.backward()?;
            if cfg.precision != crate::Precision::F16
                && let Some(name) = crate::guard::non_finite_gradient(&grads, &params)?
            {
                let err = TrainError::Diverged {
                    epoch: epoch + 1,
                    step: step + 1,
                    what: format!("the gradient of `{name}` is not finite"),
                };
                return Err(record_divergence(&files, &mut config_json, &history, err));
            }
            if scaler.unscale(&mut grads, &params)? {
                opt.step(&grads)?;
            } else {
                warn!(
                    epoch = epoch + 1,
                    step = step + 1,
                    scale = scaler.scale(),
                    "f16 gradient overflow: step skipped, loss scale halved"
                );
            }
            let n = batch.indices.len();
            loss_sum += loss_value * n as f64;
            seen += n;
            bar.inc(1);
            bar.set_message(format!("loss {:.4}", loss_sum / seen as f64));
        }
        bar.finish_and_clear();
        train_only_seconds += t0.elapsed().as_secs_f64();
        train_images += seen;
        let train_loss = loss_sum / seen.max(1) as f64;
        if !weights_finite(&varmap)? {
            let err = TrainError::Diverged {
                epoch: epoch + 1,
                step: seen.div_ceil(cfg.batch_size),
                what: "a weight is not finite after the optimizer step".into(),
            };
            return Err(record_divergence(&files, &mut config_json, &history, err));
        }

        let val_logits = predict_logits(&net, autocast.as_ref(), &val_set, cfg, &device)?;
        let (val_loss, val_auc) = loss_and_auc(&val_set.labels, &val_logits)?;
        let rec = EpochRecord {
            epoch: epoch + 1,
            train_loss,
            val_loss,
            val_auc,
            seconds: t0.elapsed().as_secs_f64(),
        };
        info!(
            epoch = rec.epoch,
            train_loss = format!("{train_loss:.4}"),
            val_loss = format!("{val_loss:.4}"),
            val_auc = format!("{val_auc:.4}"),
            seconds = format!("{:.1}", rec.seconds),
            "epoch done"
        );
        history.push(rec);
        if best.is_none_or(|(_, b)| val_auc > b) {
            best = Some((epoch + 1, val_auc));
            files.write_safetensors("best.safetensors", &weights(&varmap)?)?;
        }
        let (opt_state, step) = opt.state();
        save_checkpoint(
            &ckpt_path,
            &weights(&varmap)?,
            &opt_state,
            &CheckpointMeta {
                epoch: epoch + 1,
                step,
                history: history.clone(),
                best_epoch: best.map(|b| b.0),
                best_val_auc: best.map(|b| b.1),
                config: cfg.clone(),
                data_sha256: data.sha256.clone(),
            },
        )?;
        files.write_history(&history)?;
    }
    let train_seconds = run_start.elapsed().as_secs_f64();

    // Final evaluation with the best epoch's weights.
    let (best_epoch, _) = best.ok_or_else(|| TrainError::Config {
        field: "epochs".into(),
        reason: "no epoch was run".into(),
    })?;
    let best_path = files.path("best.safetensors");
    let best_weights = candle_core::safetensors::load(&best_path, &device).map_err(|e| {
        TrainError::Checkpoint {
            path: best_path.clone(),
            reason: e.to_string(),
        }
    })?;
    set_weights(&varmap, &best_weights, &best_path)?;
    let val_logits = predict_logits(&net, autocast.as_ref(), &val_set, cfg, &device)?;
    let test_logits = predict_logits(&net, autocast.as_ref(), &test_set, cfg, &device)?;
    let val_scores = SplitScores::new("val", &val_set.labels, &val_logits);
    let test_scores = SplitScores::new("test", &test_set.labels, &test_logits);
    let eval = evaluate(&val_scores, &test_scores, cfg.threshold, cfg.seed)?;
    let val = report(&val_set.labels, &val_logits, cfg.threshold, "val")?;
    let test = report(&test_set.labels, &test_logits, cfg.threshold, "test")?;

    let mut preds = Vec::with_capacity(val_logits.len() + test_logits.len());
    for (split, set, logits) in [
        ("val", &val_set, &val_logits),
        ("test", &test_set, &test_logits),
    ] {
        for (i, (&label, &logit)) in set.labels.iter().zip(logits.iter()).enumerate() {
            preds.push(Prediction {
                split,
                index: i,
                label,
                logit,
            });
        }
    }
    files.write_predictions(&preds, eval.temperature)?;
    files.write_history(&history)?;
    files.write_safetensors("model.safetensors", &best_weights)?;
    files.write_text("roc.csv", &eval.roc_csv)?;
    files.write_text("pr.csv", &eval.pr_csv)?;
    files.write_text("reliability.csv", &eval.reliability_csv)?;
    let images_per_second = if train_only_seconds > 0.0 {
        train_images as f64 / train_only_seconds
    } else {
        0.0
    };
    let mut metrics = eval.metrics;
    metrics["best_epoch"] = best_epoch.into();
    metrics["model"] = cfg.model.as_str().into();
    metrics["timing"] = serde_json::json!({
        "train_seconds": train_seconds,
        "train_images_per_second": images_per_second,
    });
    files.write_json("metrics.json", &metrics)?;
    config_json["status"] = "finished".into();
    files.write_json("config.json", &config_json)?;
    if !opts.skip_audit {
        crate::audit::audit_run_locked(out_dir, data, &opts.audit)?;
    }
    info!(
        best_epoch,
        test_auc = format!("{:.4}", test.auc),
        test_accuracy = format!("{:.4}", test.accuracy),
        "run written to {}",
        out_dir.display()
    );
    Ok(RunSummary {
        out_dir: out_dir.to_path_buf(),
        best_epoch,
        val,
        test,
        train_seconds,
        train_images_per_second: images_per_second,
    })
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

fn sized_splits(data: &Dataset, size: usize) -> Result<(ImageSet, ImageSet, ImageSet)> {
    let fit = |s: &ImageSet| -> Result<ImageSet> {
        if s.height == size && s.width == size {
            Ok(s.clone())
        } else {
            Ok(s.resized(size)?)
        }
    };
    Ok((fit(&data.train)?, fit(&data.val)?, fit(&data.test)?))
}

fn sorted_params(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
    let mut params: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(params)
}

/// Current weights by name.
fn weights(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    Ok(sorted_params(varmap)?
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().clone()))
        .collect())
}

fn weights_finite(varmap: &VarMap) -> Result<bool> {
    for (_, v) in sorted_params(varmap)? {
        let s = v
            .as_tensor()
            .abs()?
            .sum_all()?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()?;
        if !s.is_finite() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies `tensors` into the model's variables; every variable must be present with
/// its shape, and no extra tensor may be present.
pub(crate) fn set_weights(
    varmap: &VarMap,
    tensors: &HashMap<String, Tensor>,
    source: &Path,
) -> Result<()> {
    let params = sorted_params(varmap)?;
    for (name, var) in &params {
        let t = tensors
            .get(name)
            .ok_or_else(|| cxr_models::ModelError::MissingTensor {
                path: source.to_path_buf(),
                key: name.clone(),
            })?;
        if t.dims() != var.dims() {
            return Err(cxr_models::ModelError::ShapeMismatch {
                path: source.to_path_buf(),
                key: name.clone(),
                expected: var.dims().to_vec(),
                actual: t.dims().to_vec(),
            }
            .into());
        }
        var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
    }
    if let Some(extra) = tensors
        .keys()
        .find(|k| !params.iter().any(|(n, _)| n == *k))
    {
        return Err(TrainError::Checkpoint {
            path: source.to_path_buf(),
            reason: format!(
                "tensor `{extra}` does not belong to this model (another model's weights?)"
            ),
        });
    }
    Ok(())
}

fn check_resumable(meta: &CheckpointMeta, cfg: &TrainConfig, sha: &str, path: &Path) -> Result<()> {
    let mut a = meta.config.clone();
    a.epochs = cfg.epochs;
    if a != *cfg {
        return Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason: "it was written with different settings (only --epochs may change on resume)"
                .into(),
        });
    }
    if meta.data_sha256 != sha {
        return Err(TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason: format!(
                "it was trained on other data (sha256 {}, now {sha})",
                meta.data_sha256
            ),
        });
    }
    Ok(())
}

fn progress_bar(show: bool, len: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if !show {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} batches {msg} ({elapsed}<{eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}

/// Logits for every image of `set`, in order (no shuffling, no augmentation).
fn predict_logits(
    net: &Net,
    autocast: Option<&Autocast>,
    set: &ImageSet,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<Vec<f32>> {
    let batcher = Batcher::new(
        set,
        BatcherConfig {
            batch_size: cfg.eval_batch_size,
            shuffle: false,
            seed: cfg.seed,
            epoch: 0,
            augment: None,
            normalize: Normalize {
                mean: cfg.normalize_mean,
                std: cfg.normalize_std,
            },
            limit: None,
            drop_last: false,
        },
        device,
    )?;
    let mut out = Vec::with_capacity(set.len());
    for batch in batcher {
        let batch = batch?;
        let logits = net.logits(&batch.x, autocast)?.detach();
        out.extend(logits.to_dtype(DType::F32)?.to_vec1::<f32>()?);
    }
    Ok(out)
}

fn sigmoid(z: f32) -> f64 {
    1.0 / (1.0 + (-(z as f64)).exp())
}

fn loss_and_auc(labels: &[u8], logits: &[f32]) -> Result<(f64, f64)> {
    let loss = labels
        .iter()
        .zip(logits)
        .map(|(&y, &z)| bce_with_logits_host(z as f64, y as f64))
        .sum::<f64>()
        / labels.len().max(1) as f64;
    let probs: Vec<f64> = logits.iter().map(|&z| sigmoid(z)).collect();
    let auc = cxr_metrics::roc_auc(labels, &probs).map_err(|source| TrainError::Metrics {
        split: "val".into(),
        source,
    })?;
    Ok((loss, auc))
}

fn report(labels: &[u8], logits: &[f32], threshold: f64, split: &str) -> Result<BinaryReport> {
    let probs: Vec<f64> = logits.iter().map(|&z| sigmoid(z)).collect();
    cxr_metrics::binary_report(labels, &probs, threshold).map_err(|source| TrainError::Metrics {
        split: split.into(),
        source,
    })
}
