use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cxr_data::{Augment, Batcher, BatcherConfig, Dataset, ImageSet, Normalize};
use cxr_metrics::BinaryReport;
use cxr_models::{
    CnnConfig, HubOptions, ResNet18, ResNetConfig, SeedCnn, TensorRole, WeightsSource,
    imagenet_input, init_resnet18, init_seed_cnn, load_resnet18_weights,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tracing::{info, warn};

use crate::checkpoint::{CheckpointMeta, EpochRecord, load_checkpoint, save_checkpoint};
use crate::evaluation::{SplitScores, evaluate};
use crate::guard::record_divergence;
use crate::lr_find::{LrFindSettings, lr_range_test};
use crate::runfolder::{Prediction, RunFiles};
use crate::schedule::{OneCycle, even_mults};
use crate::{
    Adam, AugmentPreset, Autocast, LossScaler, ModelKind, Result, RunLock, Schedule, TrainConfig,
    TrainError, bce_with_logits, bce_with_logits_host, device_name, ensure_writable_dir,
    parse_device,
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

/// A model being trained; the enum keeps the loop model-agnostic.
enum Net {
    Cnn(SeedCnn, CnnConfig),
    /// Takes `[N, 1, H, W]` pixels in [0, 1] and maps them with [`imagenet_input`].
    Resnet(ResNet18),
}

impl Net {
    /// f32 logits `[N]`; `train` selects BatchNorm's training mode (batch statistics,
    /// running statistics updated). Under autocast the network is rebuilt from
    /// half-precision casts of the current f32 weights and runs in that type
    /// (the CNN only: [`TrainConfig::validate`] keeps ResNet18 in f32).
    fn logits(&self, x: &Tensor, autocast: Option<&Autocast>, train: bool) -> Result<Tensor> {
        match (self, autocast) {
            (Net::Cnn(m, _), None) => Ok(m.forward(x)?),
            (Net::Cnn(_, mcfg), Some(ac)) => {
                let half = SeedCnn::new(ac.var_builder(x.device())?, mcfg)?;
                ac.output(&half.forward(&ac.input(x)?)?)
            }
            (Net::Resnet(m), _) => Ok(m.forward_t(&imagenet_input(x)?, train)?),
        }
    }
}

/// Optimizer settings of one epoch: which parameters train and at what rate.
#[derive(Debug, Clone, Copy)]
struct Phase {
    /// The body's convolutions are frozen (fastai's frozen `fine_tune` epochs).
    frozen: bool,
    /// First epoch (0-based) of this phase and its length.
    start: usize,
    epochs: usize,
    /// Peak (or constant) learning rate of the head.
    lr: f64,
    /// Multipliers of the three layer groups (stem..layer2, layer3..layer4, head).
    group_scale: [f64; 3],
    /// One-cycle parameters `(pct_start, div, div_final)`, or a constant rate.
    cycle: Option<(f64, f64, f64)>,
}

impl Phase {
    /// The phase `epoch` (0-based) belongs to, as fastai's `fine_tune` sets it up:
    /// frozen epochs train the head (and BatchNorm) with `slice(lr)` and a one-cycle
    /// with `pct_start` 0.99; then everything trains with `slice(lr/2/lr_mult, lr/2)`
    /// (no halving without frozen epochs).
    fn of(cfg: &TrainConfig, epoch: usize) -> Self {
        let lr = cfg.optimizer.lr;
        let cycle = match cfg.schedule {
            Schedule::Constant => None,
            Schedule::OneCycle {
                pct_start,
                div,
                div_final,
            } => Some((pct_start, div, div_final)),
        };
        if epoch < cfg.freeze_epochs {
            Self {
                frozen: true,
                start: 0,
                epochs: cfg.freeze_epochs,
                lr,
                group_scale: [0.1, 0.1, 1.0],
                cycle: cycle.map(|(_, _, div_final)| (0.99, 25.0, div_final)),
            }
        } else {
            let m = even_mults(1.0 / cfg.lr_mult, 1.0, 3);
            Self {
                frozen: false,
                start: cfg.freeze_epochs,
                epochs: cfg.epochs,
                lr: if cfg.freeze_epochs > 0 { lr / 2.0 } else { lr },
                group_scale: [m[0], m[1], m[2]],
                cycle,
            }
        }
    }

    /// Applies the phase to `opt` for a model of `kind`.
    fn configure(&self, opt: &mut Adam, kind: ModelKind, groups: &HashMap<String, usize>) {
        match kind {
            ModelKind::Cnn => {
                opt.set_frozen(|_| false);
                opt.set_lr_scales(|_| 1.0);
            }
            ModelKind::Resnet18 => {
                let frozen = self.frozen;
                opt.set_frozen(|n| {
                    frozen && ResNet18::tensor_role(n) == Some(TensorRole::BodyConv)
                });
                let scale = self.group_scale;
                opt.set_lr_scales(|n| scale[groups.get(n).copied().unwrap_or(2).min(2)]);
            }
        }
    }

    /// Sets the rate (and one-cycle β₁) for step `step` of the phase, of `total`.
    fn schedule(&self, opt: &mut Adam, step: usize, total: usize, beta1: f64) {
        match self.cycle {
            None => {
                opt.set_lr(self.lr);
                opt.set_beta1(beta1);
            }
            Some((pct_start, div, div_final)) => {
                let c = OneCycle {
                    lr_max: self.lr,
                    pct_start,
                    div,
                    div_final,
                    total_steps: total,
                };
                opt.set_lr(c.lr(step));
                opt.set_beta1(c.beta1(step));
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
    let (train_set, excluded) = if cfg.exclude_duplicates {
        let plan = cxr_data::plan_duplicate_exclusion(
            &data.train,
            &[&data.val, &data.test],
            cxr_data::NEAR_DUPLICATE_HAMMING,
            cxr_data::NEAR_DUPLICATE_CORRELATION,
        );
        let keep: Vec<usize> = (0..train_set.len())
            .filter(|i| plan.removed.binary_search(i).is_err())
            .collect();
        info!(
            removed = plan.removed.len(),
            duplicating_val_or_test = plan.across,
            repeated_within_train = plan.within,
            "--exclude-duplicates: training images left out"
        );
        let json = serde_json::json!({
            "train_removed": plan.removed.len(),
            "duplicating_val_or_test": plan.across,
            "repeated_within_train": plan.within,
            "removed_indices": plan.removed,
        });
        (train_set.subset(&keep)?, json)
    } else {
        (train_set, serde_json::Value::Null)
    };
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
            "excluded_duplicates": excluded,
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
    let mut lr_groups: HashMap<String, usize> = HashMap::new();
    let (net, params) = match cfg.model {
        ModelKind::Cnn => {
            let mcfg = CnnConfig::default();
            init_seed_cnn(&varmap, &mcfg, cfg.seed, &device)?;
            let net = Net::Cnn(
                SeedCnn::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), &mcfg)?,
                mcfg,
            );
            config_json["pretrained"] = false.into();
            (net, sorted_params(&varmap)?)
        }
        ModelKind::Resnet18 => {
            let rcfg = ResNetConfig::default();
            init_resnet18(&varmap, &rcfg, cfg.seed, &device)?;
            let source: WeightsSource = cfg.weights.parse()?;
            let loaded = match source.resolve(&HubOptions::from_env())? {
                Some(path) => {
                    let r = load_resnet18_weights(&varmap, &rcfg, &path)?;
                    info!(
                        weights = %source,
                        file = %path.display(),
                        tensors = r.loaded,
                        head_loaded = r.head_loaded,
                        "pretrained weights loaded"
                    );
                    serde_json::json!({
                        "source": source.to_string(),
                        "file": path.display().to_string(),
                        "tensors": r.loaded,
                        "head_loaded": r.head_loaded,
                        "skipped": r.skipped,
                    })
                }
                None => serde_json::Value::Null,
            };
            config_json["pretrained"] = (!loaded.is_null()).into();
            config_json["weights_loaded"] = loaded;
            for spec in ResNet18::tensor_specs(&rcfg) {
                lr_groups.insert(spec.name, spec.lr_group);
            }
            let groups = ResNet18::param_groups(&varmap, &rcfg)?;
            let net = Net::Resnet(ResNet18::new(
                VarBuilder::from_varmap(&varmap, DType::F32, &device),
                &rcfg,
            )?);
            (net, groups.trainable())
        }
    };
    files.write_json("config.json", &config_json)?;
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
    let drop_last = cfg.model == ModelKind::Resnet18;
    let train_batches = |epoch: u64| {
        Batcher::new(
            &train_set,
            BatcherConfig {
                batch_size: cfg.batch_size,
                shuffle: true,
                seed: cfg.seed,
                epoch,
                augment,
                normalize,
                limit: cfg.train_limit,
                drop_last,
            },
            &device,
        )
    };

    if cfg.lr_find && start_epoch == 0 {
        let t0 = Instant::now();
        let snapshot: HashMap<String, Tensor> = weights(&varmap)?
            .into_iter()
            .map(|(k, t)| Ok((k, t.copy()?)))
            .collect::<Result<_>>()?;
        let mut probe = Adam::new(params.clone(), cfg.optimizer)?;
        let phase = Phase::of(cfg, 0);
        phase.configure(&mut probe, cfg.model, &lr_groups);
        // Batches from epochs no training run uses, reshuffled as needed.
        let mut round = u64::MAX;
        let mut batches = train_batches(round)?;
        let result = lr_range_test(LrFindSettings::default(), |lr| {
            let batch = match batches.next() {
                Some(b) => b?,
                None => {
                    round -= 1;
                    batches = train_batches(round)?;
                    batches.next().ok_or_else(|| TrainError::Config {
                        field: "data".into(),
                        reason: "no training batch for the learning-rate range test".into(),
                    })??
                }
            };
            probe.set_lr(lr);
            let loss = bce_with_logits(&net.logits(&batch.x, autocast.as_ref(), true)?, &batch.y)?;
            let value = loss.to_scalar::<f32>()? as f64;
            if value.is_finite() {
                probe.step(&loss.backward()?)?;
            }
            Ok(value)
        })?;
        set_weights(&varmap, &snapshot, &files.path("lr_find.csv"))?;
        files.write_text("lr_find.csv", &result.csv())?;
        files.write_json(
            "lr_find.json",
            &serde_json::json!({
                "settings": result.settings,
                "steps": result.points.len(),
                "stopped_early": result.stopped_early,
                "suggested_lr_min_div_10": result.suggested_min_div_10,
                "suggested_lr_steepest": result.suggested_steepest,
                "lr_used": cfg.optimizer.lr,
                "seconds": t0.elapsed().as_secs_f64(),
            }),
        )?;
        info!(
            steps = result.points.len(),
            minimum_div_10 = format!("{:.2e}", result.suggested_min_div_10),
            steepest = format!("{:.2e}", result.suggested_steepest),
            lr = cfg.optimizer.lr,
            "learning-rate range test written to lr_find.csv (weights restored; training uses --lr)"
        );
    }

    let mut train_images = 0usize;
    let mut train_only_seconds = 0.0f64;
    let run_start = Instant::now();
    let total_epochs = cfg.total_epochs();
    for epoch in start_epoch..total_epochs {
        let t0 = Instant::now();
        let batcher = train_batches(epoch as u64)?;
        let per_epoch = batcher.num_batches();
        if per_epoch == 0 {
            return Err(TrainError::Config {
                field: "batch-size".into(),
                reason: format!(
                    "{} training images make no full batch of {}",
                    train_set.len(),
                    cfg.batch_size
                ),
            });
        }
        let phase = Phase::of(cfg, epoch);
        phase.configure(&mut opt, cfg.model, &lr_groups);
        let bar = progress_bar(show_progress, per_epoch as u64, epoch + 1, total_epochs);
        let mut loss_sum = 0.0f64;
        let mut seen = 0usize;
        for (step, batch) in batcher.enumerate() {
            crate::guard::test_hang(out_dir, || format!("step:{}:{}", epoch + 1, step + 1));
            let batch = batch?;
            phase.schedule(
                &mut opt,
                (epoch - phase.start) * per_epoch + step,
                phase.epochs * per_epoch,
                cfg.optimizer.beta1,
            );
            let logits = net.logits(&batch.x, autocast.as_ref(), true)?;
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
        let (opt_state, step) = opt.state()?;
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
        let logits = net.logits(&batch.x, autocast, false)?.detach();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// fastai's `fine_tune(epochs=2, base_lr=2e-3, freeze_epochs=1)`: the frozen epoch
    /// uses `slice(2e-3)` (body groups at a tenth) and `pct_start` 0.99; then the rate
    /// is halved and spread over `slice(1e-3 / 100, 1e-3)`.
    #[test]
    fn phases_follow_fastai_fine_tune() {
        let cfg = TrainConfig {
            epochs: 2,
            ..TrainConfig::resnet18("hub:timm/resnet18.a1_in1k")
        };
        assert_eq!(cfg.total_epochs(), 3);
        let p0 = Phase::of(&cfg, 0);
        assert!(p0.frozen);
        assert_eq!((p0.start, p0.epochs), (0, 1));
        assert_eq!(p0.lr, 2e-3);
        assert_eq!(p0.group_scale, [0.1, 0.1, 1.0]);
        assert_eq!(p0.cycle, Some((0.99, 25.0, 1e5)));
        for e in [1, 2] {
            let p = Phase::of(&cfg, e);
            assert!(!p.frozen);
            assert_eq!((p.start, p.epochs), (1, 2));
            assert_eq!(p.lr, 1e-3);
            assert!((p.group_scale[0] - 0.01).abs() < 1e-15);
            assert!((p.group_scale[1] - 0.1).abs() < 1e-15);
            assert_eq!(p.group_scale[2], 1.0);
            assert_eq!(p.cycle, Some((0.3, 5.0, 1e5)));
        }
        // from scratch: one phase, no halving, one rate for every group
        let scratch = TrainConfig::resnet18("none");
        let p = Phase::of(&scratch, 0);
        assert!(!p.frozen);
        assert_eq!((p.lr, p.group_scale), (1e-3, [1.0, 1.0, 1.0]));
        // the seed recipe: constant rate
        let cnn = Phase::of(&TrainConfig::default(), 3);
        assert_eq!((cnn.lr, cnn.cycle, cnn.frozen), (1e-3, None, false));
    }
}
