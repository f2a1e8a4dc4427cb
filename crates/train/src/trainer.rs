//! The training loop: [`train`] in named phases — prepare (settings, lock, data,
//! `config.json`, model, optimizer), resume (checkpoint), lr-find (the optional range
//! test), one epoch at a time (steps, divergence checks, validation, checkpoint) and
//! finish (best weights scored, the run folder's result files written).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cxr_data::{Augment, Batcher, BatcherConfig, Dataset, ImageSet, Normalize, Split};
use cxr_metrics::BinaryReport;
use cxr_models::{
    Classifier, HubOptions, ResNetConfig, WeightsSource, build_classifier, init_resnet18,
    init_seed_cnn, load_resnet18_weights,
};
use cxr_runfolder::{
    CROP_RESIZE, CardData, CardScaling, DataRecord, EnsembleMember, EpochRecord,
    ExcludedDuplicates, MODEL_CARD_FORMAT, MemberScore, Metrics, ModelCard, PredictionRow,
    Preprocess, Provenance, RESIZE, ReferenceLogits, RunConfig, RunLock, RunStatus, Timing,
    WeightsLoaded, names,
};
use indicatif::ProgressStyle;
use serde::Serialize;
use tracing::{info, warn};
use tracing_indicatif::span_ext::IndicatifSpanExt;

use crate::checkpoint::{CheckpointMeta, load_checkpoint, save_checkpoint};
use crate::distill::SelfDistillation;
use crate::ema::Ema;
use crate::evaluation::{SplitScores, evaluate};
use crate::guard::{BadStep, PendingChecks, record_divergence};
use crate::lr_find::{LrFindSettings, lr_range_test};
use crate::mixing::training_pair;
use crate::schedule::{OneCycle, even_mults};
use crate::{
    Adam, AugmentPreset, Autocast, KeepEpoch, LossScaler, ModelKind, Precision, Result, Schedule,
    TrainConfig, TrainError, apply_matmul_precision, bce_with_logits, bce_with_logits_host,
    check_precision_device, device_name, parse_device,
};

/// How a run is carried out (not part of the model's recipe).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from `<out>/checkpoint.safetensors` if it exists.
    pub resume: bool,
    /// How the run came about (git commit, command line, skipped files, a fall-back
    /// from pretrained weights), recorded in `config.json`.
    pub provenance: Provenance,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run folder.
    pub out_dir: PathBuf,
    /// The kept epoch (1-based; the best by validation AUC, or the last — see
    /// [`TrainConfig::keep`]); its weights are `model.safetensors`. 0 for an
    /// [`crate::ensemble`], which trains no epochs.
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

/// The network being trained, by name so that autocast can rebuild it over
/// half-precision casts of its weights.
pub(crate) struct Net {
    pub(crate) model: Box<dyn Classifier>,
    pub(crate) name: &'static str,
}

impl Net {
    /// f32 logits `[N]`; `train` selects BatchNorm's training mode (batch statistics,
    /// running statistics updated). Under autocast the network is rebuilt from
    /// half-precision casts of the current f32 weights and runs in that type (but for
    /// what [`Classifier::keeps_f32`] names, handed over as the f32 variables).
    fn logits(&self, x: &Tensor, autocast: Option<&Autocast>, train: bool) -> Result<Tensor> {
        match autocast {
            None => Ok(self.model.logits_t(x, train)?),
            Some(ac) => {
                let half = build_classifier(self.name, ac.var_builder(x.device())?)?;
                ac.output(&half.logits_t(&ac.input(x)?, train)?)
            }
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

    /// Applies the phase to `opt` for `model`'s parameters: the body frozen in a frozen
    /// phase, each layer group at its rate.
    fn configure(&self, opt: &mut Adam, model: &dyn Classifier) {
        let frozen = self.frozen;
        opt.set_frozen(|n| frozen && model.is_frozen_when_fine_tuning(n));
        let scale = self.group_scale;
        opt.set_lr_scales(|n| scale[model.lr_group(n).min(2)]);
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

/// Trains per `cfg` on `data`, writing the run folder into `out_dir` (`config.json`
/// first, then per epoch `history.csv`, `best.safetensors` and
/// `checkpoint.safetensors`, and at the end `metrics.json`, `predictions.csv`,
/// `model.safetensors` and the curves). Does not audit or report: `cxr` chains those.
///
/// The host reads the steps' losses and divergence checks once per window of steps
/// (every step on the CPU, every 16 on a GPU; `CXR_SYNC_EVERY=N` overrides) and at the
/// end of each epoch, and a producer thread builds the next batches while a step runs
/// (`CXR_PREFETCH=0` turns it off). Neither changes the results; an invalid value is a
/// [`TrainError::Config`] naming the variable.
pub fn train(
    cfg: &TrainConfig,
    data: &Dataset,
    out_dir: &Path,
    opts: &RunOptions,
) -> Result<RunSummary> {
    train_with(cfg, data, out_dir, opts, None)
}

/// [`train`] with the step loop set explicitly (`None`: [`StepLoop::for_device`]).
fn train_with(
    cfg: &TrainConfig,
    data: &Dataset,
    out_dir: &Path,
    opts: &RunOptions,
    step_loop: Option<StepLoop>,
) -> Result<RunSummary> {
    let mut run = Run::prepare(cfg, data, out_dir, opts, step_loop)?;
    if opts.resume {
        run.resume()?;
    }
    if cfg.lr_find && run.start_epoch == 0 {
        run.lr_find()?;
    }
    for epoch in run.start_epoch..cfg.total_epochs() {
        run.epoch(epoch)?;
    }
    run.finish()
}

/// How the training steps are driven; the results (weights, optimizer state, losses,
/// the step a divergence is reported at) do not depend on it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StepLoop {
    /// Steps between the host's reads of the losses and divergence checks, which
    /// otherwise stay on the device (see [`crate::guard`]); the last step of an epoch
    /// is always read.
    sync_every: usize,
    /// Build (augment, upload) the next batches on a producer thread while the current
    /// step runs.
    prefetch: bool,
    /// A NaN put into one step's loss or gradient (tests of the divergence guard).
    #[cfg(test)]
    poison: Poison,
}

impl StepLoop {
    /// Steps per read on a GPU: a read waits for the device to finish the queued work,
    /// so fewer reads keep the host ahead of the device; 16 keeps a window's wasted
    /// work after a divergence small.
    const GPU_SYNC_EVERY: usize = 16;

    /// The defaults for `device`, overridden by `CXR_SYNC_EVERY` (a positive integer)
    /// and `CXR_PREFETCH` (`0` or `1`). On the CPU every step is read (a read costs
    /// nothing there: the work is already done) and batches are built ahead; on a GPU
    /// every [`Self::GPU_SYNC_EVERY`] steps, with batches built ahead.
    fn for_device(device: &Device) -> Result<Self> {
        Self::resolve(device, env_setting)
    }

    /// [`Self::for_device`] with the variables looked up by `var`.
    fn resolve(device: &Device, var: impl Fn(&str) -> Result<Option<String>>) -> Result<Self> {
        let sync_every =
            match var("CXR_SYNC_EVERY")? {
                Some(v) => v.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
                    TrainError::Config {
                        field: "CXR_SYNC_EVERY".into(),
                        reason: format!("{v:?}: must be a positive number of steps"),
                    }
                })?,
                None if device.is_cpu() => 1,
                None => Self::GPU_SYNC_EVERY,
            };
        let prefetch = match var("CXR_PREFETCH")?.as_deref() {
            Some("1") => true,
            Some("0") => false,
            Some(v) => {
                return Err(TrainError::Config {
                    field: "CXR_PREFETCH".into(),
                    reason: format!("{v:?}: must be 0 or 1"),
                });
            }
            None => true,
        };
        Ok(Self {
            sync_every,
            prefetch,
            #[cfg(test)]
            poison: Poison::None,
        })
    }
}

/// A NaN multiplied into one step's loss or one parameter's gradient (0-based epoch
/// and step), for the tests of the divergence guard.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq)]
enum Poison {
    None,
    Loss {
        epoch: usize,
        step: usize,
    },
    Gradient {
        epoch: usize,
        step: usize,
        param: usize,
    },
}

#[cfg(test)]
impl Poison {
    fn poison_loss(self, epoch: usize, step: usize, loss: Tensor) -> Result<Tensor> {
        match self {
            Self::Loss { epoch: e, step: s } if (e, s) == (epoch, step) => Ok((loss * f64::NAN)?),
            _ => Ok(loss),
        }
    }

    fn poison_gradient(
        self,
        epoch: usize,
        step: usize,
        grads: &mut candle_core::backprop::GradStore,
        params: &[(String, Var)],
    ) -> Result<()> {
        if let Self::Gradient {
            epoch: e,
            step: s,
            param,
        } = self
            && (e, s) == (epoch, step)
        {
            let p = params[param].1.as_tensor();
            let g = grads.get(p).expect("the poisoned parameter has a gradient");
            let bad = (g * f64::NAN)?;
            grads.insert(p, bad);
        }
        Ok(())
    }
}

/// The value of environment variable `name`, if set and not empty.
fn env_setting(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_string())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(TrainError::Config {
            field: name.into(),
            reason: format!("{v:?}: not valid text"),
        }),
    }
}

/// Batches a producer thread keeps ready beyond the one it is building.
const PREFETCH_DEPTH: usize = 1;

/// Runs `f` over `batches`. With `prefetch` a producer thread pulls them (for the
/// [`Batcher`]: augmentation, tensor creation and upload) up to [`PREFETCH_DEPTH`] + 1
/// ahead of `f`, through a bounded channel, and stops when `f` returns; the items are
/// the same, in the same order. Without it, or when no thread can be started, `f` pulls
/// them itself.
fn prefetched<I, R>(
    mut batches: I,
    prefetch: bool,
    f: impl FnOnce(&mut dyn Iterator<Item = I::Item>) -> R,
) -> R
where
    I: Iterator + Send,
    I::Item: Send,
{
    if !prefetch {
        return f(&mut batches);
    }
    let ran = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(PREFETCH_DEPTH);
        let source = &mut batches;
        let producer = std::thread::Builder::new()
            .name("cxr-batches".into())
            .spawn_scoped(s, move || {
                for b in source {
                    // The receiver is gone: `f` has returned.
                    if tx.send(b).is_err() {
                        break;
                    }
                }
            });
        match producer {
            // The receiver is dropped before the scope joins the producer, which then
            // stops at its next send.
            Ok(_) => Ok(f(&mut rx.into_iter())),
            Err(e) => Err((f, e)),
        }
    });
    match ran {
        Ok(r) => r,
        Err((f, e)) => {
            warn!("building batches on the training thread (no producer thread: {e})");
            f(&mut batches)
        }
    }
}

/// A training run's state between its phases.
struct Run<'a> {
    cfg: &'a TrainConfig,
    data: &'a Dataset,
    data_sha256: &'a str,
    dir: &'a Path,
    _lock: RunLock,
    device: Device,
    train_set: ImageSet,
    val_set: ImageSet,
    test_set: ImageSet,
    config: RunConfig,
    varmap: VarMap,
    net: Net,
    params: Vec<(String, Var)>,
    autocast: Option<Autocast>,
    scaler: LossScaler,
    opt: Adam,
    /// The weights' moving average, when the run keeps one.
    ema: Option<Ema>,
    /// The training images' past predictions, when the run distils itself.
    distill: Option<SelfDistillation>,
    step_loop: StepLoop,
    history: Vec<EpochRecord>,
    /// Best epoch (1-based) and its validation AUC.
    best: Option<(usize, f64)>,
    start_epoch: usize,
    train_images: usize,
    train_only_seconds: f64,
    started: Instant,
}

impl<'a> Run<'a> {
    /// Checks the settings, claims the folder, sizes the data, writes `config.json`,
    /// builds the model (pretrained weights where asked) and its optimizer.
    fn prepare(
        cfg: &'a TrainConfig,
        data: &'a Dataset,
        dir: &'a Path,
        opts: &RunOptions,
        step_loop: Option<StepLoop>,
    ) -> Result<Self> {
        cfg.validate()?;
        cfg.weights.parse::<WeightsSource>()?;
        cxr_runfolder::ensure_writable_dir(dir)?;
        let lock = RunLock::acquire(dir)?;
        lock.remove_stale_temps();
        let device = parse_device(&cfg.device)?;
        check_precision_device(cfg.precision, &device)?;
        let tf32 = apply_matmul_precision(cfg.precision, &device);
        let step_loop = match step_loop {
            Some(s) => s,
            None => StepLoop::for_device(&device)?,
        };
        info!(
            device = device_name(&device),
            requested = cfg.device.as_str(),
            precision = cfg.precision.as_str(),
            tf32,
            sync_every = step_loop.sync_every,
            prefetch = step_loop.prefetch,
            "device"
        );

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
            let excluded = ExcludedDuplicates {
                train_removed: plan.removed.len(),
                duplicating_val_or_test: plan.across,
                repeated_within_train: plan.within,
                removed_indices: plan.removed,
            };
            (train_set.subset(&keep)?, Some(excluded))
        } else {
            (train_set, None)
        };
        info!(
            train = train_set.len(),
            val = val_set.len(),
            test = test_set.len(),
            size = cfg.image_size,
            device = device_name(&device),
            "data ready"
        );

        let mut config = RunConfig {
            train: cfg.clone(),
            data: DataRecord {
                source: data.source.display().to_string(),
                sha256: data.sha256.clone(),
                train: train_set.len(),
                val: val_set.len(),
                test: test_set.len(),
                excluded_duplicates: excluded,
            },
            device_resolved: device_name(&device),
            precision: cfg.precision,
            threads: rayon_threads(),
            cxr_version: env!("CARGO_PKG_VERSION").into(),
            status: RunStatus::Running,
            provenance: opts.provenance.clone(),
            ..RunConfig::default()
        };
        config.write(&dir.join(names::CONFIG))?;

        let varmap = VarMap::new();
        match cfg.model {
            ModelKind::Cnn => {
                init_seed_cnn(&varmap, &Default::default(), cfg.seed, &device)?;
                config.pretrained = Some(false);
            }
            ModelKind::Resnet18 => {
                let rcfg = ResNetConfig::default();
                init_resnet18(&varmap, &rcfg, cfg.seed, &device)?;
                let source: WeightsSource = cfg.weights.parse()?;
                config.weights_loaded = match source.resolve(&HubOptions::from_env())? {
                    Some(path) => {
                        let r = load_resnet18_weights(&varmap, &rcfg, &path)?;
                        info!(
                            weights = %source,
                            file = %path.display(),
                            tensors = r.loaded,
                            head_loaded = r.head_loaded,
                            "pretrained weights loaded"
                        );
                        Some(WeightsLoaded {
                            source: source.to_string(),
                            file: path.display().to_string(),
                            tensors: r.loaded,
                            head_loaded: r.head_loaded,
                            skipped: r.skipped,
                        })
                    }
                    None => None,
                };
                config.pretrained = Some(config.weights_loaded.is_some());
            }
        }
        let name = cfg.model.as_str();
        let model = build_classifier(name, VarBuilder::from_varmap(&varmap, DType::F32, &device))?;
        let params: Vec<(String, Var)> = sorted_params(&varmap)?
            .into_iter()
            .filter(|(n, _)| model.is_trainable(n))
            .collect();
        config.write(&dir.join(names::CONFIG))?;
        let autocast = autocast_for(cfg.precision, model.as_ref(), &varmap, &params)?;
        let scaler = LossScaler::new(cfg.precision);
        let opt = Adam::new(params.clone(), cfg.optimizer)?;
        let ema = Ema::new(cfg, sorted_params(&varmap)?)?;
        let distill = SelfDistillation::new(cfg, train_set.len());
        Ok(Self {
            cfg,
            data,
            data_sha256: &data.sha256,
            dir,
            _lock: lock,
            device,
            train_set,
            val_set,
            test_set,
            config,
            varmap,
            net: Net { model, name },
            params,
            autocast,
            scaler,
            opt,
            ema,
            distill,
            step_loop,
            history: Vec::new(),
            best: None,
            start_epoch: 0,
            train_images: 0,
            train_only_seconds: 0.0,
            started: Instant::now(),
        })
    }

    /// Continues from the folder's checkpoint (weights, optimizer state, history), which
    /// must have been written with these settings and data; without one, starts fresh.
    fn resume(&mut self) -> Result<()> {
        let path = self.dir.join(names::CHECKPOINT);
        if !path.is_file() {
            warn!(
                "--resume: no checkpoint at {}, starting fresh",
                path.display()
            );
            return Ok(());
        }
        let ck = load_checkpoint(&path)?;
        check_resumable(&ck.meta, self.cfg, self.data_sha256, &path)?;
        set_weights(&self.varmap, &ck.weights, &path)?;
        self.opt.load_state(&ck.opt_state, ck.meta.step, &path)?;
        if let Some(ema) = &mut self.ema {
            ema.restore(&ck.ema, &path)?;
        }
        if let Some(distill) = &mut self.distill {
            distill.restore(ck.past.as_deref(), &path)?;
        }
        self.history = ck.meta.history;
        self.best = ck.meta.best_epoch.zip(ck.meta.best_val_auc);
        self.start_epoch = ck.meta.epoch;
        info!(epoch = self.start_epoch, "resumed from {}", path.display());
        Ok(())
    }

    /// Training batches of `epoch` (seeded shuffling and augmentation).
    fn batches(&self, epoch: u64) -> Result<Batcher<'_>> {
        train_batches(&self.train_set, self.cfg, &self.device, epoch)
    }

    /// The learning-rate range test: `lr_find.csv` and `lr_find.json`, the weights
    /// restored afterwards (training uses the configured rate).
    fn lr_find(&mut self) -> Result<()> {
        let t0 = Instant::now();
        let snapshot = weights_copy(&self.varmap)?;
        let mut probe = Adam::new(self.params.clone(), self.cfg.optimizer)?;
        Phase::of(self.cfg, 0).configure(&mut probe, self.net.model.as_ref());
        // Batches from epochs no training run uses, reshuffled as needed.
        let mut round = u64::MAX;
        let mut batches = self.batches(round)?;
        let (net, autocast) = (&self.net, self.autocast.as_ref());
        let result = lr_range_test(LrFindSettings::default(), |lr| {
            let batch = match batches.next() {
                Some(b) => b?,
                None => {
                    round -= 1;
                    batches = self.batches(round)?;
                    batches.next().ok_or_else(|| TrainError::Config {
                        field: "data".into(),
                        reason: "no training batch for the learning-rate range test".into(),
                    })??
                }
            };
            probe.set_lr(lr);
            let loss = bce_with_logits(&net.logits(&batch.x, autocast, true)?, &batch.y)?;
            let value = loss.to_scalar::<f32>()? as f64;
            if value.is_finite() {
                probe.step(&loss.backward()?)?;
            }
            Ok(value)
        })?;
        drop(batches);
        let csv = self.dir.join(names::LR_FIND);
        set_weights(&self.varmap, &snapshot, &csv)?;
        cxr_runfolder::write_atomic(&csv, result.csv().as_bytes())?;
        cxr_runfolder::write_json(
            &self.dir.join(names::LR_FIND_JSON),
            &LrFindRecord {
                settings: result.settings,
                steps: result.points.len(),
                stopped_early: result.stopped_early,
                suggested_lr_min_div_10: result.suggested_min_div_10,
                suggested_lr_steepest: result.suggested_steepest,
                lr_used: self.cfg.optimizer.lr,
                seconds: t0.elapsed().as_secs_f64(),
            },
        )?;
        info!(
            steps = result.points.len(),
            minimum_div_10 = format!("{:.2e}", result.suggested_min_div_10),
            steepest = format!("{:.2e}", result.suggested_steepest),
            lr = self.cfg.optimizer.lr,
            "learning-rate range test written to lr_find.csv (weights restored; training uses --lr)"
        );
        Ok(())
    }

    /// One epoch (0-based `epoch`): the optimizer steps with their divergence checks,
    /// validation, `best.safetensors` when validation AUC improved, the checkpoint and
    /// `history.csv`.
    fn epoch(&mut self, epoch: usize) -> Result<()> {
        let cfg = self.cfg;
        let total_epochs = cfg.total_epochs();
        let t0 = Instant::now();
        let batcher = train_batches(&self.train_set, cfg, &self.device, epoch as u64)?;
        let per_epoch = batcher.num_batches();
        if per_epoch == 0 {
            return Err(TrainError::Config {
                field: "batch-size".into(),
                reason: format!(
                    "{} training images make no full batch of {}",
                    self.train_set.len(),
                    cfg.batch_size
                ),
            });
        }
        let phase = Phase::of(cfg, epoch);
        phase.configure(&mut self.opt, self.net.model.as_ref());
        // A progress bar where the program draws them (`tracing-indicatif`).
        let bar = progress_span(per_epoch as u64, epoch + 1, total_epochs);
        let _shown = bar.enter();
        let mut loss_sum = 0.0f64;
        let mut seen = 0usize;
        let mut checks = PendingChecks::default();
        let sync_every = self.step_loop.sync_every;
        #[cfg(test)]
        let poison = self.step_loop.poison;
        let (net, autocast, params) = (&self.net, self.autocast.as_ref(), &self.params);
        let (opt, scaler, ema) = (&mut self.opt, &mut self.scaler, &mut self.ema);
        let distill = &mut self.distill;
        // The batches borrow the training set alone: the steps update the other fields.
        let bad = prefetched(batcher, self.step_loop.prefetch, |batches| -> Result<_> {
            // One read of the pending checks: losses summed in step order, the progress
            // message updated, the first bad step returned.
            let mut read = |checks: &mut PendingChecks| {
                let bad = checks.read(params, |loss, n| {
                    loss_sum += loss * n as f64;
                    seen += n;
                })?;
                bar.pb_set_message(&format!("loss {:.4}", loss_sum / seen.max(1) as f64));
                Ok::<_, TrainError>(bad)
            };
            for (step, batch) in batches.enumerate() {
                crate::guard::test_hang(self.dir, || format!("step:{}:{}", epoch + 1, step + 1));
                let stepped = (|| -> Result<Option<BadStep>> {
                    let batch = batch?;
                    phase.schedule(
                        opt,
                        (epoch - phase.start) * per_epoch + step,
                        phase.epochs * per_epoch,
                        cfg.optimizer.beta1,
                    );
                    let (x, mut y) = training_pair(&batch.x, &batch.y, cfg, epoch, step)?;
                    if let Some(d) = distill.as_ref() {
                        y = d.targets(&y, &batch.indices, epoch)?;
                    }
                    let logits = net.logits(&x, autocast, true)?;
                    if let Some(d) = distill.as_mut() {
                        d.record(&logits, &batch.indices)?;
                    }
                    let loss = bce_with_logits(&logits, &y)?;
                    #[cfg(test)]
                    let loss = poison.poison_loss(epoch, step, loss)?;
                    let mut grads = scaler.scale_loss(&loss)?.backward()?;
                    #[cfg(test)]
                    poison.poison_gradient(epoch, step, &mut grads, params)?;
                    // f16 checks its gradients itself (the loss scaler skips a step that
                    // overflows).
                    let checked = (cfg.precision != Precision::F16).then_some(&grads);
                    checks.push(step, batch.indices.len(), &loss, checked, params)?;
                    // Read before this step's update, so that a window found bad is
                    // not followed by its last step's update.
                    if (checks.len() >= sync_every || step + 1 == per_epoch)
                        && let Some(bad) = read(&mut checks)?
                    {
                        return Ok(Some(bad));
                    }
                    if scaler.unscale(&mut grads, params)? {
                        opt.step(&grads)?;
                        if let Some(ema) = ema.as_mut() {
                            ema.update(opt.steps() - 1)?;
                        }
                    } else {
                        warn!(
                            epoch = epoch + 1,
                            step = step + 1,
                            scale = scaler.scale(),
                            "f16 gradient overflow: step skipped, loss scale halved"
                        );
                    }
                    Ok(None)
                })();
                match stepped {
                    Ok(None) => bar.pb_inc(1),
                    Ok(Some(bad)) => return Ok(Some(bad)),
                    // A bad step earlier in the window explains a failure better.
                    Err(e) => return read(&mut checks).ok().flatten().map(Some).ok_or(e),
                }
            }
            read(&mut checks)
        })?;
        if let Some((step, what)) = bad {
            let err = TrainError::Diverged {
                epoch: epoch + 1,
                step,
                what,
            };
            return Err(record_divergence(
                self.dir,
                &mut self.config,
                &self.history,
                err,
            ));
        }
        drop(_shown);
        drop(bar);
        if let Some(d) = &mut self.distill {
            d.end_epoch()?;
        }
        self.train_only_seconds += t0.elapsed().as_secs_f64();
        self.train_images += seen;
        let train_loss = loss_sum / seen.max(1) as f64;
        if !weights_finite(&self.varmap)? {
            let err = TrainError::Diverged {
                epoch: epoch + 1,
                step: seen.div_ceil(cfg.batch_size),
                what: "a weight is not finite after the optimizer step".into(),
            };
            return Err(record_divergence(
                self.dir,
                &mut self.config,
                &self.history,
                err,
            ));
        }

        // With a moving average, validation and the kept weights are the average's;
        // training goes on from the raw weights, put back below.
        let raw = match &self.ema {
            None => None,
            Some(ema) => {
                let raw = weights_copy(&self.varmap)?;
                set_weights(
                    &self.varmap,
                    ema.weights(),
                    &self.dir.join(names::CHECKPOINT),
                )?;
                Some(raw)
            }
        };
        let val_logits = self.predict(&self.val_set)?;
        let (val_loss, val_auc) = loss_and_auc(&self.val_set.labels, &val_logits)?;
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
        self.history.push(rec);
        if cfg.keep == KeepEpoch::Last || self.best.is_none_or(|(_, b)| val_auc > b) {
            self.best = Some((epoch + 1, val_auc));
            write_safetensors(&self.dir.join(names::BEST), &weights(&self.varmap)?)?;
        }
        if let Some(raw) = &raw {
            set_weights(&self.varmap, raw, &self.dir.join(names::CHECKPOINT))?;
        }
        let (opt_state, step) = self.opt.state()?;
        save_checkpoint(
            &self.dir.join(names::CHECKPOINT),
            &weights(&self.varmap)?,
            &opt_state,
            self.ema.as_ref().map(Ema::weights),
            self.distill.as_ref().map(SelfDistillation::past),
            &CheckpointMeta {
                epoch: epoch + 1,
                step,
                history: self.history.clone(),
                best_epoch: self.best.map(|b| b.0),
                best_val_auc: self.best.map(|b| b.1),
                config: cfg.clone(),
                data_sha256: self.data_sha256.to_string(),
            },
        )?;
        cxr_runfolder::write_history(self.dir, &self.history)?;
        Ok(())
    }

    /// Logits of every image of `set` with the current weights.
    fn predict(&self, set: &ImageSet) -> Result<Vec<f32>> {
        predict_logits(
            &self.net,
            self.autocast.as_ref(),
            set,
            self.cfg,
            &self.device,
        )
    }

    /// Optimizer steps (training batches) per epoch.
    fn train_batches_per_epoch(&self) -> usize {
        let n = self
            .cfg
            .train_limit
            .map_or(self.train_set.len(), |l| l.min(self.train_set.len()));
        let bs = self.cfg.batch_size.max(1);
        if self.cfg.model == ModelKind::Resnet18 {
            n / bs
        } else {
            n.div_ceil(bs)
        }
    }

    /// Scores the best epoch's weights on validation and test and writes the result
    /// files: `predictions.csv`, `history.csv`, `model.safetensors`, the curves,
    /// `metrics.json`, `model.json`, and `config.json` with status `finished`.
    fn finish(mut self) -> Result<RunSummary> {
        let cfg = self.cfg;
        let train_seconds = self.started.elapsed().as_secs_f64();
        let (best_epoch, _) = self.best.ok_or_else(|| TrainError::Config {
            field: "epochs".into(),
            reason: "no epoch was run".into(),
        })?;
        let best_path = self.dir.join(names::BEST);
        let best_weights =
            candle_core::safetensors::load(&best_path, &self.device).map_err(|e| {
                TrainError::Checkpoint {
                    path: best_path.clone(),
                    reason: e.to_string(),
                }
            })?;
        set_weights(&self.varmap, &best_weights, &best_path)?;
        let val_logits = self.predict(&self.val_set)?;
        let test_logits = self.predict(&self.test_set)?;
        let dir = self.dir;
        cxr_runfolder::write_history(dir, &self.history)?;
        let mut exported = best_weights.clone();
        add_batches_tracked(&mut exported, best_epoch * self.train_batches_per_epoch())?;
        write_safetensors(&dir.join(names::MODEL), &exported)?;
        let images_per_second = if self.train_only_seconds > 0.0 {
            self.train_images as f64 / self.train_only_seconds
        } else {
            0.0
        };
        let (val, test) = write_outcome(
            Outcome {
                cfg,
                data: self.data,
                sets: [&self.train_set, &self.val_set, &self.test_set],
                val_logits: &val_logits,
                test_logits: &test_logits,
                best_epoch: Some(best_epoch),
                timing: Timing {
                    train_seconds,
                    train_images_per_second: Some(images_per_second),
                },
                members: None,
                member_scores: Vec::new(),
            },
            dir,
            &mut self.config,
        )?;
        Ok(RunSummary {
            out_dir: dir.to_path_buf(),
            best_epoch,
            val,
            test,
            train_seconds,
            train_images_per_second: images_per_second,
        })
    }
}

/// A model's scores on validation and test, and what its run folder records of it.
pub(crate) struct Outcome<'a> {
    pub cfg: &'a TrainConfig,
    pub data: &'a Dataset,
    /// Train, validation and test at the model's input size.
    pub sets: [&'a ImageSet; 3],
    pub val_logits: &'a [f32],
    pub test_logits: &'a [f32],
    pub best_epoch: Option<usize>,
    pub timing: Timing,
    pub members: Option<Vec<EnsembleMember>>,
    /// An ensemble's members scored alone (`metrics.json` → `members`).
    pub member_scores: Vec<MemberScore>,
}

impl Outcome<'_> {
    /// `metrics.json`'s model name: the network, or `ensemble of N <network>`.
    fn model_name(&self) -> String {
        match &self.members {
            Some(m) => format!("ensemble of {} {}", m.len(), self.cfg.model.as_str()),
            None => self.cfg.model.as_str().into(),
        }
    }
}

/// Writes a scored model's result files into `dir` — `predictions.csv`, the curves,
/// `metrics.json`, `model.json` — and `config` with status `finished`; returns the
/// validation and test reports at the configured threshold. The weights file is the
/// caller's.
pub(crate) fn write_outcome(
    o: Outcome<'_>,
    dir: &Path,
    config: &mut RunConfig,
) -> Result<(BinaryReport, BinaryReport)> {
    let cfg = o.cfg;
    let model_name = o.model_name();
    let [train_set, val_set, test_set] = o.sets;
    let val_scores = SplitScores::new("val", &val_set.labels, o.val_logits);
    let test_scores = SplitScores::new("test", &test_set.labels, o.test_logits);
    let eval = evaluate(&val_scores, &test_scores, cfg.threshold, cfg.seed)?;
    let val = report(&val_set.labels, o.val_logits, cfg.threshold, "val")?;
    let test = report(&test_set.labels, o.test_logits, cfg.threshold, "test")?;

    let mut preds = Vec::with_capacity(o.val_logits.len() + o.test_logits.len());
    for (split, set, logits) in [
        (Split::Val, val_set, o.val_logits),
        (Split::Test, test_set, o.test_logits),
    ] {
        let files = o.data.files.split(split);
        for (i, (&label, &logit)) in set.labels.iter().zip(logits.iter()).enumerate() {
            let z = logit as f64;
            preds.push(PredictionRow {
                split: split.as_str().into(),
                index: i,
                label,
                prob: 1.0 / (1.0 + (-z).exp()),
                logit: Some(z),
                prob_calibrated: Some(1.0 / (1.0 + (-z / eval.temperature).exp())),
                path: files.get(i).map(|p| p.display().to_string()),
            });
        }
    }
    cxr_runfolder::write_predictions(dir, &preds)?;
    cxr_runfolder::write_atomic(&dir.join(names::ROC), eval.roc_csv.as_bytes())?;
    cxr_runfolder::write_atomic(&dir.join(names::PR), eval.pr_csv.as_bytes())?;
    cxr_runfolder::write_atomic(
        &dir.join(names::RELIABILITY),
        eval.reliability_csv.as_bytes(),
    )?;
    let metrics = Metrics {
        best_epoch: o.best_epoch,
        model: Some(model_name),
        timing: Some(o.timing),
        members: o.member_scores,
        ..eval.metrics
    };
    metrics.write(&dir.join(names::METRICS))?;

    // Bias-corrected temperature scaling for the site check of `cxr predict`; a
    // validation split with one class has none (the card then says nothing).
    let scaling =
        match cxr_metrics::fit_bias_corrected_scaling(&val_scores.logits, &val_scores.labels) {
            Ok(s) => Some(CardScaling {
                scale: s.scale,
                bias: s.bias,
                reference_prevalence: val_set.labels.iter().filter(|&&l| l == 1).count() as f64
                    / val_set.labels.len() as f64,
            }),
            Err(e) => {
                warn!("model.json without bias-corrected scaling: {e}");
                None
            }
        };
    let by_class = |class: u8| -> Vec<f32> {
        val_set
            .labels
            .iter()
            .zip(o.val_logits)
            .filter(|(l, _)| **l == class)
            .map(|(_, &z)| z)
            .collect()
    };
    let prevalence =
        |s: &ImageSet| (!s.is_empty()).then(|| s.class_counts()[1] as f64 / s.len() as f64);
    ModelCard {
        format: MODEL_CARD_FORMAT,
        network: cfg.model,
        weights: names::MODEL.into(),
        preprocess: Preprocess {
            source_size: o.data.train.height,
            input_size: cfg.image_size,
            channels: 1,
            normalize_mean: cfg.normalize_mean,
            normalize_std: cfg.normalize_std,
            crop_resize: CROP_RESIZE.into(),
            resize: RESIZE.into(),
        },
        batch_size: cfg.eval_batch_size,
        temperature: eval.temperature,
        scaling,
        reference_logits: Some(ReferenceLogits {
            split: "val".into(),
            normal: by_class(0),
            pneumonia: by_class(1),
        }),
        operating_points: eval.val_points,
        default_operating_point: "youden".into(),
        data: CardData {
            source: config.data.source.clone(),
            sha256: config.data.sha256.clone(),
            train: train_set.len(),
            val: val_set.len(),
            test: test_set.len(),
            prevalence_train: prevalence(train_set),
            prevalence_val: prevalence(val_set),
        },
        best_epoch: metrics.best_epoch,
        val_auc: Some(metrics.val.auc),
        cxr_version: env!("CARGO_PKG_VERSION").into(),
        members: o.members,
        derived: None,
    }
    .write(&dir.join(names::MODEL_CARD))?;
    config.status = RunStatus::Finished;
    config.write(&dir.join(names::CONFIG))?;
    info!(
        best_epoch = o
            .best_epoch
            .map_or_else(|| "none".to_string(), |e| e.to_string()),
        test_auc = format!("{:.4}", test.auc),
        test_accuracy = format!("{:.4}", test.accuracy),
        "run written to {}",
        dir.display()
    );
    Ok((val, test))
}

/// Training batches of `epoch` of `set` (seeded shuffling and augmentation).
fn train_batches<'s>(
    set: &'s ImageSet,
    cfg: &TrainConfig,
    device: &Device,
    epoch: u64,
) -> Result<Batcher<'s>> {
    Ok(Batcher::new(
        set,
        BatcherConfig {
            batch_size: cfg.batch_size,
            shuffle: true,
            seed: cfg.seed,
            epoch,
            augment: match cfg.augment {
                AugmentPreset::None => None,
                AugmentPreset::Light => Some(Augment::light()),
                AugmentPreset::Strong => Some(Augment::strong()),
            },
            normalize: Normalize {
                mean: cfg.normalize_mean,
                std: cfg.normalize_std,
            },
            limit: cfg.train_limit,
            drop_last: cfg.model == ModelKind::Resnet18,
        },
        device,
    )?)
}

/// `lr_find.json`: the range test's settings, suggestions and the rate used.
#[derive(Debug, Serialize)]
struct LrFindRecord {
    settings: LrFindSettings,
    steps: usize,
    stopped_early: bool,
    suggested_lr_min_div_10: f64,
    suggested_lr_steepest: f64,
    lr_used: f64,
    seconds: f64,
}

/// PyTorch's `num_batches_tracked` buffer (an int64 scalar) beside every BatchNorm's
/// running statistics, so that `model.safetensors` loads into the PyTorch module with
/// `load_state_dict(strict=True)`. cxr's BatchNorm uses a fixed momentum and keeps no
/// such count; the value written is the training batches up to the kept epoch.
fn add_batches_tracked(tensors: &mut HashMap<String, Tensor>, batches: usize) -> Result<()> {
    let prefixes: Vec<String> = tensors
        .keys()
        .filter_map(|k| k.strip_suffix(".running_mean").map(str::to_string))
        .collect();
    for p in prefixes {
        let count = Tensor::new(batches as i64, &Device::Cpu)?;
        tensors.insert(format!("{p}.num_batches_tracked"), count);
    }
    Ok(())
}

/// `tensors` as safetensors (sorted by name, on the CPU), written atomically.
pub(crate) fn write_safetensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let mut all: Vec<(&String, Tensor)> = Vec::new();
    for (k, v) in tensors {
        all.push((k, v.to_device(&Device::Cpu)?));
    }
    all.sort_by(|a, b| a.0.cmp(b.0));
    let bytes = safetensors::serialize(all.iter().map(|(k, v)| (k.as_str(), v)), None)
        .map_err(|e| TrainError::io(path, std::io::Error::other(e)))?;
    Ok(cxr_runfolder::write_atomic(path, &bytes)?)
}

pub(crate) fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

pub(crate) fn sized_splits(data: &Dataset, size: usize) -> Result<(ImageSet, ImageSet, ImageSet)> {
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

/// The autocast of a run in a half `precision` (`None` in f32): the trainable `params`
/// cast, what `model` keeps f32 (ResNet18's BatchNorm tensors) handed over as the
/// variables of `varmap` themselves.
fn autocast_for(
    precision: Precision,
    model: &dyn Classifier,
    varmap: &VarMap,
    params: &[(String, Var)],
) -> Result<Option<Autocast>> {
    let kept: Vec<(String, Var)> = sorted_params(varmap)?
        .into_iter()
        .filter(|(n, _)| model.keeps_f32(n))
        .collect();
    Ok(Autocast::new(precision, params.to_vec()).map(|ac| ac.keeping_f32(kept)))
}

/// Current weights by name.
fn weights(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    Ok(sorted_params(varmap)?
        .into_iter()
        .map(|(k, v)| (k, v.as_tensor().clone()))
        .collect())
}

/// A copy of the model's variables, which later updates of the variables leave as
/// they are.
fn weights_copy(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    weights(varmap)?
        .into_iter()
        .map(|(k, t)| Ok((k, t.copy()?)))
        .collect()
}

fn weights_finite(varmap: &VarMap) -> Result<bool> {
    let params = sorted_params(varmap)?;
    crate::guard::all_finite(params.iter().map(|(_, v)| v.as_tensor()))
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

/// A span that asks for a progress bar (`indicatif.pb_show`) over an epoch's batches.
fn progress_span(len: u64, epoch: usize, epochs: usize) -> tracing::Span {
    let span = tracing::info_span!(
        "train",
        epoch = %format!("{epoch}/{epochs}"),
        indicatif.pb_show = tracing::field::Empty
    );
    if let Ok(style) = ProgressStyle::with_template(
        "{span_fields} [{bar:30}] {pos}/{len} batches {msg} ({elapsed}<{eta})",
    ) {
        span.pb_set_style(&style.progress_chars("=> "));
    }
    span.pb_set_length(len);
    span
}

/// Logits for every image of `set`, in order (no shuffling, no augmentation).
pub(crate) fn predict_logits(
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

    /// ResNet18 under f16 autocast as training builds it (on candle's CPU f16 kernels;
    /// training itself refuses half precision on the CPU): f32 logits within f16's
    /// rounding of the f32 network's, running statistics updated in the `VarMap` in f32
    /// like the f32 network's, and an f32 gradient for every trainable master.
    #[test]
    fn resnet18_autocast_keeps_batchnorm_in_f32() {
        let dev = Device::Cpu;
        let cfg = ResNetConfig::default();
        let run = |precision: Precision| -> (Vec<f32>, Vec<f32>, usize) {
            let varmap = VarMap::new();
            init_resnet18(&varmap, &cfg, 7, &dev).unwrap();
            let model = build_classifier(
                "resnet18",
                VarBuilder::from_varmap(&varmap, DType::F32, &dev),
            )
            .unwrap();
            let params: Vec<(String, Var)> = sorted_params(&varmap)
                .unwrap()
                .into_iter()
                .filter(|(n, _)| model.is_trainable(n))
                .collect();
            let ac = autocast_for(precision, model.as_ref(), &varmap, &params).unwrap();
            assert_eq!(ac.is_some(), precision.is_half());
            let net = Net {
                model,
                name: "resnet18",
            };
            let x: Vec<f32> = (0..8 * 64 * 64)
                .map(|i| (i as f32 * 0.37).sin() * 0.5 + 0.5)
                .collect();
            let x = Tensor::from_vec(x, (8, 1, 64, 64), &dev).unwrap();
            let logits = net.logits(&x, ac.as_ref(), true).unwrap();
            assert_eq!(logits.dtype(), DType::F32);
            let grads = logits.sum_all().unwrap().backward().unwrap();
            let with_grad = params
                .iter()
                .filter(|(n, v)| {
                    let g = grads.get(v.as_tensor());
                    g.is_some_and(|g| g.dtype() == DType::F32) && !n.contains("running_")
                })
                .count();
            let data = varmap.data().lock().unwrap();
            let rm = &data["layer1.0.bn1.running_mean"];
            assert_eq!(rm.dtype(), DType::F32);
            (
                logits.to_vec1().unwrap(),
                rm.as_tensor().to_vec1().unwrap(),
                with_grad,
            )
        };
        let (l32, rm32, g32) = run(Precision::F32);
        let (l16, rm16, g16) = run(Precision::F16);
        assert_eq!(g16, g32, "every trainable master gets an f32 gradient");
        assert!(
            rm32.iter().any(|&v| v != 0.0),
            "the f32 step updates the statistics"
        );
        // Rounding, not precision, is checked here (resnet_step.rs holds the step to
        // PyTorch's): a random network on a batch of 8 amplifies f16's rounding through
        // twenty BatchNorms (1.4e-2 of the logits' scale measured), while a lost statistic
        // or a wrong cast moves a tensor by its whole scale.
        let scale = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
        let err = |a: &[f32], b: &[f32]| {
            a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale(b)
        };
        assert!(err(&l16, &l32) < 5e-2, "logits {l16:?} vs {l32:?}");
        assert!(
            err(&rm16, &rm32) < 1e-2,
            "running mean {rm16:?} vs {rm32:?}"
        );
    }

    /// A synthetic 28×28 dataset: 24 training images (6 steps of 4), 8 for validation
    /// and test, both classes in each.
    fn dataset() -> Dataset {
        let set = |n: usize, salt: usize| ImageSet {
            images: (0..n * 28 * 28)
                .map(|i| ((i * 7 + i / 784 * 31 + salt) % 251) as u8)
                .collect(),
            labels: (0..n).map(|i| (i % 2) as u8).collect(),
            height: 28,
            width: 28,
        };
        Dataset {
            train: set(24, 0),
            val: set(8, 5),
            test: set(8, 9),
            source: "synthetic".into(),
            sha256: "0".repeat(64),
            files: Default::default(),
            patients: None,
        }
    }

    /// The seed CNN, 2 epochs of 6 steps, with augmentation (built on rayon, so the
    /// producer thread's batches share the pool with the steps).
    fn config() -> TrainConfig {
        TrainConfig {
            epochs: 2,
            batch_size: 4,
            eval_batch_size: 8,
            augment: AugmentPreset::Light,
            ..TrainConfig::default()
        }
    }

    fn step_loop(sync_every: usize, prefetch: bool, poison: Poison) -> StepLoop {
        StepLoop {
            sync_every,
            prefetch,
            poison,
        }
    }

    /// Weights and optimizer state of a run's checkpoint, as exact f64 values by name.
    fn checkpoint_values(dir: &Path) -> (usize, Vec<(String, Vec<f64>)>) {
        let ck = load_checkpoint(&dir.join(names::CHECKPOINT)).unwrap();
        let mut all: Vec<(String, Vec<f64>)> = ck
            .weights
            .iter()
            .map(|(k, v)| (format!("model.{k}"), v))
            .chain(ck.opt_state.iter().map(|(k, v)| (format!("opt.{k}"), v)))
            .map(|(k, v)| {
                // f32 weights and moments, u32 step counts: all exact in f64
                let v = v.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
                (k, v.to_vec1().unwrap())
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        (ck.meta.epoch, all)
    }

    fn read(dir: &Path, file: &str) -> Vec<u8> {
        std::fs::read(dir.join(file)).unwrap()
    }

    /// `keep: last` keeps the final epoch's weights whatever validation says; `best`
    /// keeps the first epoch of highest validation AUC.
    #[test]
    fn the_kept_epoch_follows_the_setting() {
        let mut kept = Vec::new();
        for keep in [KeepEpoch::Best, KeepEpoch::Last] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = TrainConfig {
                epochs: 4,
                keep,
                ..config()
            };
            let data = dataset();
            let s = train(&cfg, &data, dir.path(), &RunOptions::default()).unwrap();
            let aucs = val_aucs(dir.path());
            let want = match keep {
                KeepEpoch::Last => 4,
                KeepEpoch::Best => {
                    let max = aucs.iter().cloned().fold(f64::MIN, f64::max);
                    aucs.iter().position(|&a| a == max).unwrap() + 1
                }
            };
            assert_eq!(s.best_epoch, want, "{keep:?}: {aucs:?}");
            kept.push(s.best_epoch);
            if keep == KeepEpoch::Last {
                // The kept weights are the final checkpoint's, bit for bit.
                let ck = load_checkpoint(&dir.path().join(names::CHECKPOINT)).unwrap();
                let kept =
                    candle_core::safetensors::load(dir.path().join(names::BEST), &Device::Cpu)
                        .unwrap();
                for (k, v) in &ck.weights {
                    let a: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
                    let b: Vec<f32> = kept[k].flatten_all().unwrap().to_vec1().unwrap();
                    assert!(a == b, "keep last: `{k}` is not the last epoch's");
                }
            }
        }
        // On this data validation AUC peaks before the end, so the settings differ.
        assert_ne!(kept[0], kept[1], "{kept:?}");
    }

    /// Validation AUC per epoch from a run folder's `history.csv`.
    fn val_aucs(dir: &Path) -> Vec<f64> {
        std::fs::read_to_string(dir.join(names::HISTORY))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
            .collect()
    }

    /// Reading the checks every step or once per window (shorter than an epoch, or
    /// longer), with batches built on the training thread or ahead of it, gives the same
    /// run bit for bit: weights, optimizer state, losses, predictions.
    #[test]
    fn step_loop_settings_do_not_change_results() {
        let data = dataset();
        let mut runs = Vec::new();
        for (sync_every, prefetch) in [(1, false), (4, true), (64, true), (1, true)] {
            let dir = tempfile::tempdir().unwrap();
            let sl = step_loop(sync_every, prefetch, Poison::None);
            train_with(
                &config(),
                &data,
                dir.path(),
                &RunOptions::default(),
                Some(sl),
            )
            .unwrap();
            runs.push((sl, dir));
        }
        let (base, base_dir) = &runs[0];
        let (epoch, values) = checkpoint_values(base_dir.path());
        assert_eq!(epoch, 2);
        for (sl, dir) in &runs[1..] {
            assert!(
                checkpoint_values(dir.path()) == (epoch, values.clone()),
                "{sl:?}: checkpoint differs from {base:?}"
            );
            for file in [
                names::HISTORY,
                names::PREDICTIONS,
                names::MODEL,
                names::BEST,
            ] {
                assert!(
                    read(dir.path(), file) == read(base_dir.path(), file),
                    "{sl:?}: {file} differs from {base:?}"
                );
            }
        }
    }

    /// A NaN in one gradient in the middle of epoch 2 stops the run at that step, naming
    /// the parameter, with the epoch-1 checkpoint kept, whatever the window: one read per
    /// step, a window that holds the bad step and the steps after it, a window of the
    /// whole epoch. A NaN loss in epoch 1 is reported at its step, before any checkpoint.
    #[test]
    fn a_bad_step_inside_a_window_is_reported_as_the_first() {
        let data = dataset();
        let param = 3;
        let gradient = Poison::Gradient {
            epoch: 1,
            step: 2,
            param,
        };
        let mut kept = None;
        for (sync_every, prefetch) in [(1, false), (2, true), (4, true), (64, true)] {
            let dir = tempfile::tempdir().unwrap();
            let sl = step_loop(sync_every, prefetch, gradient);
            let err = train_with(
                &config(),
                &data,
                dir.path(),
                &RunOptions::default(),
                Some(sl),
            )
            .unwrap_err();
            let TrainError::Diverged { epoch, step, what } = &err else {
                panic!("{sl:?}: {err}");
            };
            assert_eq!((*epoch, *step), (2, 3), "{sl:?}: {err}");
            let names: Vec<String> = {
                let varmap = VarMap::new();
                init_seed_cnn(&varmap, &Default::default(), 0, &Device::Cpu).unwrap();
                sorted_params(&varmap)
                    .unwrap()
                    .into_iter()
                    .map(|p| p.0)
                    .collect()
            };
            assert_eq!(
                what,
                &format!("the gradient of `{}` is not finite", names[param]),
                "{sl:?}"
            );
            let record = cxr_runfolder::Divergence::read(dir.path()).unwrap();
            assert_eq!((record.epoch, record.step), (2, 3));
            assert_eq!(record.last_good_checkpoint.map(|c| c.epoch), Some(1));
            assert_eq!(record.history.len(), 1);
            assert!(!dir.path().join(names::MODEL).exists());
            // The checkpoint is epoch 1's, the same for every window.
            let (ck_epoch, values) = checkpoint_values(dir.path());
            assert_eq!(ck_epoch, 1, "{sl:?}");
            assert!(values.iter().all(|(_, v)| v.iter().all(|x| x.is_finite())));
            let best = read(dir.path(), names::BEST);
            match &kept {
                None => kept = Some((values, best)),
                Some((v, b)) => {
                    assert!(*v == values, "{sl:?}: the kept checkpoint differs");
                    assert!(*b == best, "{sl:?}: best.safetensors differs");
                }
            }
        }

        let loss = Poison::Loss { epoch: 0, step: 1 };
        for (sync_every, prefetch) in [(1, false), (64, true)] {
            let dir = tempfile::tempdir().unwrap();
            let sl = step_loop(sync_every, prefetch, loss);
            let err = train_with(
                &config(),
                &data,
                dir.path(),
                &RunOptions::default(),
                Some(sl),
            )
            .unwrap_err();
            assert!(
                matches!(&err, TrainError::Diverged { epoch: 1, step: 2, what }
                    if what == "the training loss is not finite"),
                "{sl:?}: {err}"
            );
            assert!(!dir.path().join(names::CHECKPOINT).exists());
        }
    }

    /// Defaults by device; the overrides are parsed, and a bad value is an error naming
    /// the variable and the value.
    #[test]
    fn step_loop_defaults_and_overrides() {
        let lookup = |pairs: Vec<(&'static str, &'static str)>| {
            move |name: &str| {
                Ok(pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string()))
            }
        };
        let cpu = StepLoop::resolve(&Device::Cpu, lookup(vec![])).unwrap();
        assert_eq!((cpu.sync_every, cpu.prefetch), (1, true));
        let set = vec![("CXR_SYNC_EVERY", "8"), ("CXR_PREFETCH", "0")];
        let s = StepLoop::resolve(&Device::Cpu, lookup(set)).unwrap();
        assert_eq!((s.sync_every, s.prefetch), (8, false));
        for (var, value) in [
            ("CXR_SYNC_EVERY", "0"),
            ("CXR_SYNC_EVERY", "-3"),
            ("CXR_SYNC_EVERY", "many"),
            ("CXR_PREFETCH", "yes"),
        ] {
            let err = StepLoop::resolve(&Device::Cpu, lookup(vec![(var, value)])).unwrap_err();
            assert!(
                matches!(&err, TrainError::Config { field, .. } if field == var),
                "{var}={value}: {err}"
            );
            assert!(err.to_string().contains(value), "{err}");
        }
    }

    /// The producer thread hands over every item in order and stops early when the
    /// consumer does.
    #[test]
    fn prefetched_keeps_the_order_and_stops_with_the_consumer() {
        let all: Vec<usize> = prefetched(0..100, true, |it| it.collect());
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        let produced = std::sync::atomic::AtomicUsize::new(0);
        let source = (0..1_000_000).inspect(|_| {
            produced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let first: Vec<usize> = prefetched(source, true, |it| it.take(3).collect());
        assert_eq!(first, vec![0, 1, 2]);
        // 3 taken, at most PREFETCH_DEPTH waiting and one more built before the send
        // that found the receiver gone.
        assert!(produced.into_inner() <= 3 + PREFETCH_DEPTH + 2);
        let inline: Vec<usize> = prefetched(0..5, false, |it| it.collect());
        assert_eq!(inline, vec![0, 1, 2, 3, 4]);
    }

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
