//! The user commands: train (then audit and report), pipeline, audit, report, predict,
//! evaluate, ensemble.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Instant;

use cxr_audit::{AuditOptions, AuditSummary};
use cxr_data::{DataLocator, Dataset, PatientSource, Split};
use cxr_runfolder::{
    PatientIdsRecord, Provenance, RunConfig, SkippedFile, ValFromTrainRecord, names,
};
use cxr_train::{ModelKind, RunOptions, RunSummary, TrainConfig};
use tracing::{info, warn};

use crate::cli::{
    AblationArgs, AuditArgs, Command, DataArgs, DicomWindowArg, EnsembleArgs, EvaluateArgs,
    ModelArg, PipelineArgs, PredictArgs, RecipeArgs, TrainArgs,
};
use crate::error::Context as _;
use crate::recipe::{self, train_config};
use crate::{CxrError, Result};

/// Runs one user command, printing its results on stdout.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Train(a) => {
            let (summary, out) = train(&a)?;
            let report = out.join(names::REPORT_HTML);
            println!(
                "test AUC {:.4}, accuracy {:.4}, F1 {:.4} (kept epoch {}); run folder {}; report {}",
                summary.test.auc,
                summary.test.accuracy,
                summary.test.f1,
                summary.best_epoch,
                out.display(),
                report.display()
            );
            Ok(())
        }
        Command::Pipeline(a) => pipeline(&a).map(|_| ()),
        Command::Report { run } => report(&run),
        Command::Audit(a) => {
            let s = audit(&a)?;
            print_audit(&s);
            Ok(())
        }
        Command::Predict(a) => predict(&a).map(|_| ()),
        Command::Evaluate(a) => evaluate(&a).map(|_| ()),
        Command::Ablation(a) => ablation(&a).map(|_| ()),
        Command::Ensemble(a) => {
            let (summary, out) = ensemble(&a)?;
            println!(
                "ensemble of {} runs: test AUC {:.4}, accuracy {:.4}, F1 {:.4}; run folder {}; report {}",
                a.runs.len(),
                summary.test.auc,
                summary.test.accuracy,
                summary.test.f1,
                out.display(),
                out.join(names::REPORT_HTML).display()
            );
            Ok(())
        }
    }
}

/// `--split` of `evaluate` and `ablation`.
fn parse_split(split: Option<&str>) -> Result<Option<cxr_data::Split>> {
    match split {
        None => Ok(None),
        Some("train") => Ok(Some(cxr_data::Split::Train)),
        Some("val") => Ok(Some(cxr_data::Split::Val)),
        Some("test") => Ok(Some(cxr_data::Split::Test)),
        Some(other) => Err(CxrError::Setting(format!(
            "--split: `{other}`: expected train, val or test"
        ))),
    }
}

/// The ablation.json at `path`, if given; an error names `flag` and the file.
fn read_ablation(path: Option<&Path>, flag: &str) -> Result<Option<cxr_runfolder::Ablation>> {
    path.map(|p| {
        cxr_runfolder::Ablation::read(p).step(|| format!("{flag}: reading {}", p.display()))
    })
    .transpose()
}

/// `cxr ablation`: each pair scored, `ablation.json` and `ablation.md` written, the
/// table printed.
pub fn ablation(a: &AblationArgs) -> Result<cxr_runfolder::Ablation> {
    // clap takes exactly three values per `--pair`, in order.
    let pairs: Vec<cxr_evaluate::AblationInput> = a
        .pair
        .chunks(3)
        .map(|p| match p {
            [change, before, after] => Ok(cxr_evaluate::AblationInput {
                change: change.clone(),
                before: PathBuf::from(before),
                after: PathBuf::from(after),
            }),
            other => Err(CxrError::Setting(format!(
                "--pair takes CHANGE BEFORE AFTER, got {} values: {other:?}",
                other.len()
            ))),
        })
        .collect::<Result<_>>()?;
    let opts = cxr_evaluate::EvaluateOptions {
        split: parse_split(a.split.as_deref())?,
        resamples: a.resamples,
        device: a.device.clone(),
        ..cxr_evaluate::EvaluateOptions::default()
    };
    let previous = read_ablation(a.extend.as_deref(), "--extend")?;
    let ablation = cxr_evaluate::ablation(&pairs, &a.data, &opts, &a.out, previous.as_ref())
        .step(|| format!("measuring the ablation into {}", a.out.display()))?;
    let md = cxr_report::render_ablation_markdown(&ablation);
    let path = a.out.join(names::ABLATION_MD);
    cxr_runfolder::write_atomic(&path, md.as_bytes())
        .step(|| format!("writing {}", path.display()))?;
    print!("{md}");
    Ok(ablation)
}

/// `evaluate`: scores a run's model on a labelled set and writes the evaluation folder
/// and its report.
pub fn evaluate(a: &EvaluateArgs) -> Result<cxr_evaluate::EvaluateOutcome> {
    let operating_point = match &a.operating_point {
        Some(s) => s
            .parse()
            .map_err(|e: String| CxrError::Setting(format!("--operating-point: {e}")))?,
        None => cxr_predict::OperatingPointChoice::Default,
    };
    let split = parse_split(a.split.as_deref())?;
    let opts = cxr_evaluate::EvaluateOptions {
        out: a.out.clone(),
        split,
        metadata: a.metadata.clone(),
        join_on: a.join_on.clone(),
        join_key: a.join_key,
        group_by: a.group_by.clone(),
        min_group_size: a.min_group_size,
        bins: a.bins,
        operating_point,
        compare: a.compare.clone(),
        resamples: a.resamples,
        seed: a.seed,
        device: a.device.clone(),
        batch_size: a.batch_size,
        dicom_window: match a.dicom_window {
            DicomWindowArg::Auto => cxr_predict::DicomWindow::Auto,
            DicomWindowArg::Minmax => cxr_predict::DicomWindow::MinMax,
        },
    };
    let outcome = cxr_evaluate::evaluate(&a.run, &a.data, &opts).step(|| {
        format!(
            "evaluating the model of {} on {}",
            a.run.display(),
            a.data.display()
        )
    })?;
    let files = cxr_report::write_evaluate_report(&outcome.dir)
        .step(|| format!("building the report of {}", outcome.dir.display()))?;
    let e = &outcome.evaluation;
    match e.auc {
        Some(auc) => println!(
            "{} images ({} pneumonia): AUC {:.4} (95% CI {:.4}–{:.4})",
            e.set.images, e.set.positives, auc.estimate, auc.low, auc.high
        ),
        None => println!(
            "{} images ({} pneumonia): one class only, no AUC",
            e.set.images, e.set.positives
        ),
    }
    for p in &e.operating_points {
        let fmt = |x: Option<cxr_runfolder::ProportionEstimate>| {
            x.map_or("—".to_string(), |v| {
                format!(
                    "{:.3} [{:.3}–{:.3}]",
                    v.estimate, v.wilson_low, v.wilson_high
                )
            })
        };
        println!(
            "{} (threshold {:.4}): sensitivity {}, specificity {}",
            p.name,
            p.threshold,
            fmt(p.sensitivity),
            fmt(p.specificity)
        );
    }
    if let Some(c) = &e.prevalence.site_check {
        println!(
            "prevalence {:.3}; label-free estimate {:.3} (95% CI {:.3}–{:.3})",
            e.prevalence.true_prevalence, c.estimate, c.ci_low, c.ci_high
        );
    }
    if let Some(c) = &e.comparison {
        println!(
            "vs {}: AUC {:.4} vs {:.4}, DeLong p = {:.4}; McNemar p = {:.4}",
            c.run_b, c.auc_a, c.auc_b, c.delong_p, c.mcnemar_p
        );
    }
    println!("{}", outcome.dir.join(names::EVALUATION).display());
    println!("{}", files.html.display());
    Ok(outcome)
}

/// `predict`: applies a run's model to new images and writes the prediction folder
/// and its report. The folder and report are written even when the command fails
/// because inputs could not be read (`--strict`, or none readable).
pub fn predict(a: &PredictArgs) -> Result<cxr_predict::PredictOutcome> {
    let operating_point = match &a.operating_point {
        Some(s) => s
            .parse()
            .map_err(|e: String| CxrError::Setting(format!("--operating-point: {e}")))?,
        None => cxr_predict::OperatingPointChoice::Default,
    };
    let opts = cxr_predict::PredictOptions {
        out: a.out.clone(),
        operating_point,
        strict: a.strict,
        explain: a.explain,
        explain_top: a.explain_top,
        adapt_prior: a.adapt_prior,
        dicom_window: match a.dicom_window {
            DicomWindowArg::Auto => cxr_predict::DicomWindow::Auto,
            DicomWindowArg::Minmax => cxr_predict::DicomWindow::MinMax,
        },
        device: a.device.clone(),
        batch_size: a.batch_size,
        seed: a.seed,
        inputs_as_given: a.inputs.iter().map(|p| p.display().to_string()).collect(),
        shard: a.shard,
        ..cxr_predict::PredictOptions::default()
    };
    let what = || format!("predicting with the model of {}", a.run.display());
    match cxr_predict::predict(&a.run, &a.inputs, &opts) {
        Ok(outcome) => {
            let files = cxr_report::write_predict_report(&outcome.dir)
                .step(|| format!("building the report of {}", outcome.dir.display()))?;
            let s = &outcome.summary;
            println!(
                "{} frames predicted ({} files unreadable), {} called pneumonia at {} = {:.4}",
                s.predicted, s.unreadable, s.positives, s.operating_point, s.threshold
            );
            if let Some(c) = &s.site_check {
                println!("site check: {}", c.verdict);
            }
            println!("{}", outcome.dir.join(names::PREDICTIONS).display());
            println!("{}", files.html.display());
            Ok(outcome)
        }
        Err(e @ cxr_predict::PredictError::Unreadable { .. }) => {
            if let cxr_predict::PredictError::Unreadable { csv, .. } = &e
                && let Some(dir) = csv.parent()
                && let Ok(files) = cxr_report::write_predict_report(dir)
            {
                eprintln!("report: {}", files.html.display());
            }
            Err(CxrError::step(what(), e))
        }
        Err(e) => Err(CxrError::step(what(), e)),
    }
}

/// `runs/` under the current folder: where run folders go by default.
pub fn runs_dir() -> PathBuf {
    PathBuf::from("runs")
}

/// `YYYYmmdd-HHMMSS` (UTC), the default run folder name.
pub fn timestamp() -> String {
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "run".into())
}

/// A dataset plus the files skipped while loading it.
pub struct LoadedData {
    /// The splits.
    pub dataset: Dataset,
    /// Files left out (`--skip-bad`) with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// The npz file the splits came from (`None` for image folders).
    pub npz: Option<PathBuf>,
}

impl std::ops::Deref for LoadedData {
    type Target = Dataset;
    fn deref(&self) -> &Dataset {
        &self.dataset
    }
}

/// `--data PATH` (npz file, folder with the npz, or Kaggle folder), else
/// `CXR_DATA_DIR`, else `data/`, else the official download. Folder data is decoded at
/// `size` pixels (npz data keeps its own size; training resizes it).
pub fn load_data(args: &DataArgs, size: usize) -> Result<LoadedData> {
    if let Some(p) = &args.data
        && p.join("train").is_dir()
    {
        info!("loading image folders from {} at {size} px", p.display());
        // A spinner where progress bars are drawn: decoding thousands of files takes a while.
        let decoding = tracing::info_span!("decoding", indicatif.pb_show = tracing::field::Empty);
        let _shown = decoding.enter();
        let (dataset, skipped) = cxr_data::load_folder(p, size, args.skip_bad)
            .step(|| format!("loading the image folders under {}", p.display()))?;
        if !skipped.is_empty() {
            warn!(
                "skipped {} unreadable files (listed in config.json)",
                skipped.len()
            );
        }
        return Ok(LoadedData {
            dataset,
            skipped,
            npz: None,
        });
    }
    let locator = DataLocator {
        explicit: args.data.clone(),
        env_dir: std::env::var_os("CXR_DATA_DIR").map(PathBuf::from),
        default_dir: PathBuf::from("data"),
        allow_download: !args.offline,
        ..DataLocator::default()
    };
    let path = locator
        .locate(cxr_data::PNEUMONIAMNIST_FILE)
        .step(|| "locating the data".into())?;
    info!("loading {}", path.display());
    let dataset = cxr_data::load_npz(&path).step(|| format!("loading {}", path.display()))?;
    Ok(LoadedData {
        dataset,
        skipped: Vec::new(),
        npz: Some(path),
    })
}

fn git_commit() -> Option<String> {
    let out = Process::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = Process::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    if dirty {
        commit.push_str("-dirty");
    }
    Some(commit)
}

/// How a run of this process came about: the git commit of the current folder, the
/// command line, the files skipped while loading `data`, and why a ResNet18 that
/// wanted pretrained weights has none (`fallback`).
pub fn run_options(resume: bool, data: &LoadedData, fallback: Option<&str>) -> RunOptions {
    RunOptions {
        resume,
        provenance: Provenance {
            git_commit: git_commit(),
            command: Some(std::env::args().skip(1).collect::<Vec<_>>().join(" ")),
            skipped_files: data
                .skipped
                .iter()
                .map(|(p, why)| SkippedFile {
                    path: p.display().to_string(),
                    error: why.clone(),
                })
                .collect(),
            pretrained_fallback: fallback.map(str::to_string),
            ..Provenance::default()
        },
    }
}

/// Validation splits smaller than this get a warning: choices made on them are noise.
const SMALL_VAL: usize = 100;
/// Most examples of unmatched files and unused table rows kept in `config.json`.
const EXAMPLES: usize = 20;

/// Gives folder data its patient ids from `source` and returns what they matched (the
/// per-split counts are filled in by [`run_data`]). npz data has no patient ids: nothing
/// to assign, and asking for them (`cfg`'s pattern, table or `--val-from-train`) is an
/// error.
fn assign_patients(
    data: &mut LoadedData,
    cfg: &TrainConfig,
    source: &PatientSource,
) -> Result<Option<PatientIdsRecord>> {
    if data.dataset.files.train.is_empty() {
        let asked: Vec<&str> = [
            cfg.group_pattern.as_ref().map(|_| "--group-pattern"),
            cfg.patients.as_ref().map(|_| "--patients"),
            cfg.val_from_train.map(|_| "--val-from-train"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !asked.is_empty() {
            return Err(CxrError::Setting(format!(
                "{} need(s) image-folder data: {} is npz data, which has no patient ids",
                asked.join(", "),
                data.dataset.source.display()
            )));
        }
        return Ok(None);
    }
    let root = data.dataset.source.clone();
    let a = data
        .dataset
        .assign_patients(source)
        .step(|| format!("giving the images under {} patient ids", root.display()))?;
    let rel = |p: &PathBuf| {
        p.strip_prefix(&root)
            .unwrap_or(p)
            .to_string_lossy()
            .replace('\\', "/")
    };
    Ok(Some(PatientIdsRecord {
        source: source.to_string(),
        table_sha256: match source {
            PatientSource::Table(t) => Some(t.sha256().to_string()),
            PatientSource::Pattern(_) => None,
        },
        unmatched_images: a.unmatched.len() as u64,
        unmatched_examples: a.unmatched.iter().take(EXAMPLES).map(rel).collect(),
        unused_table_rows: a.unused_rows.len() as u64,
        unused_examples: a.unused_rows.iter().take(EXAMPLES).cloned().collect(),
        ..PatientIdsRecord::default()
    }))
}

/// The data one run uses, and what `config.json` records about its patients.
struct RunData<'a> {
    dataset: Cow<'a, Dataset>,
    patient_ids: Option<PatientIdsRecord>,
    val_from_train: Option<ValFromTrainRecord>,
}

/// The splits a run with `cfg` uses: the given ones, or (`--val-from-train`) a
/// validation split drawn from train by patient with the run's seed. A small given
/// validation split gets a warning. Patients in more than one split stop training
/// (`for_training`) unless `--allow-patient-overlap`; otherwise they are logged.
fn run_data<'a>(
    cfg: &TrainConfig,
    data: &'a LoadedData,
    ids: Option<&PatientIdsRecord>,
    for_training: bool,
) -> Result<RunData<'a>> {
    let mut dataset = Cow::Borrowed(&data.dataset);
    let mut val_from_train = None;
    match cfg.val_from_train {
        Some(fraction) => {
            let (split, r) = data
                .dataset
                .val_from_train(fraction, cfg.seed)
                .step(|| "--val-from-train: drawing the validation split from train".into())?;
            let note = format!(
                "validation drawn from train by patient ({} of {} patients, {} images, seed {}); \
                 the given val split ({} images) is not used for any choice",
                r.val_patients,
                r.val_patients + r.train_patients,
                r.val_images,
                cfg.seed,
                r.given_val_images
            );
            info!("--val-from-train {fraction}: {note}");
            val_from_train = Some(ValFromTrainRecord {
                fraction,
                seed: cfg.seed,
                patient_label: "any pneumonia: a patient is pneumonia when any of their \
                                training images is"
                    .into(),
                given_val_images: r.given_val_images as u64,
                train_patients: r.train_patients as u64,
                train_images: r.train_images as u64,
                val_patients: r.val_patients as u64,
                val_images: r.val_images as u64,
                val_normal: r.val_class_counts[0] as u64,
                val_pneumonia: r.val_class_counts[1] as u64,
                note,
            });
            dataset = Cow::Owned(split);
        }
        None if data.dataset.val.len() < SMALL_VAL => {
            let hint = if data.dataset.patients.is_some() {
                "; --val-from-train 0.1 draws a validation split from train by patient"
            } else {
                ""
            };
            warn!(
                "the validation split has only {} images: the best epoch and the operating \
                 points chosen on it are noise{hint}",
                data.dataset.val.len()
            );
        }
        None => {}
    }
    let mut patient_ids = ids.cloned();
    if let (Some(rec), Some(p)) = (patient_ids.as_mut(), dataset.patients.as_ref()) {
        let overlap = p.overlap();
        rec.patients = Split::ALL
            .iter()
            .map(|&s| (s.as_str().to_string(), p.patients_in(s) as u64))
            .collect();
        rec.overlapping_patients = overlap.len() as u64;
        rec.overlap_allowed = cfg.allow_patient_overlap;
        if !overlap.is_empty() {
            let err = cxr_data::DataError::PatientOverlap {
                overlap: overlap.iter().map(ToString::to_string).collect(),
            };
            if for_training && !cfg.allow_patient_overlap {
                return Err(CxrError::step(
                    format!(
                        "patients leak between splits under {} (patient ids from the {}); \
                         pass --allow-patient-overlap to train anyway",
                        data.dataset.source.display(),
                        rec.source
                    ),
                    err,
                ));
            }
            warn!("{err}");
        }
    }
    Ok(RunData {
        dataset,
        patient_ids,
        val_from_train,
    })
}

/// The settings of `train`: the recorded ones on `--resume` (with `--epochs` applied;
/// other flags must agree), else the model's recipe with the flags on top. Returns the
/// settings, why pretrained weights fell back (if they did) and the data recorded by
/// the run being resumed.
fn train_settings(a: &TrainArgs) -> Result<(TrainConfig, Option<String>, Option<PathBuf>)> {
    if a.resume
        && let Some(out) = &a.out
        && out.join(names::CONFIG).is_file()
    {
        let path = out.join(names::CONFIG);
        let recorded =
            RunConfig::read(&path).step(|| format!("--resume: reading {}", path.display()))?;
        let mut given =
            recipe::apply_data(recipe::apply(recorded.train.clone(), &a.recipe), &a.data);
        if let Some(m) = a.model {
            given.model = recipe::model_kind(m);
        }
        if let Some(s) = a.seed {
            given.seed = s;
        }
        let cfg = TrainConfig {
            epochs: given.epochs,
            ..recorded.train.clone()
        };
        let differ = recipe::differing_settings(
            &TrainConfig {
                epochs: cfg.epochs,
                ..given
            },
            &cfg,
        );
        if !differ.is_empty() {
            return Err(CxrError::Setting(format!(
                "--resume continues {} with its recorded settings; these flags disagree with them \
                 (only --epochs may change): {}",
                out.display(),
                differ.join(", ")
            )));
        }
        let data = (!recorded.data.source.is_empty()).then(|| PathBuf::from(&recorded.data.source));
        // The re-split follows the patients table: it must be the one recorded.
        if let (Some(rec), Some(table)) = (&recorded.provenance.patient_ids, &cfg.patients)
            && let Some(sha) = &rec.table_sha256
            && let PatientSource::Table(t) = recipe::patient_source(&cfg)?
            && t.sha256() != sha
        {
            return Err(CxrError::Setting(format!(
                "--resume: the patients table {table} changed since {} started (sha256 {sha}, \
                 now {})",
                out.display(),
                t.sha256()
            )));
        }
        return Ok((cfg, recorded.provenance.pretrained_fallback, data));
    }
    let model = a.model.unwrap_or(ModelArg::Cnn);
    let (weights, fallback) = match model {
        ModelArg::Cnn => ("none".to_string(), None),
        ModelArg::Resnet18 => {
            // Check the cheap things before asking the hub.
            recipe::validate(&train_config(model, a.seed.unwrap_or(0), &a.recipe, "none"))?;
            recipe::resnet_weights(a.recipe.weights.as_deref())?
        }
    };
    let cfg = recipe::apply_data(
        train_config(model, a.seed.unwrap_or(0), &a.recipe, &weights),
        &a.data,
    );
    Ok((cfg, fallback, None))
}

/// `train`: one run into its folder, then its audit and report. Every setting is
/// checked before the data is read; a diverged run gets its partial report.
pub fn train(a: &TrainArgs) -> Result<(RunSummary, PathBuf)> {
    let (cfg, fallback, recorded_data) = train_settings(a)?;
    recipe::validate(&cfg)?;
    let source = recipe::patient_source(&cfg)?;
    let data_args = DataArgs {
        data: a.data.data.clone().or(recorded_data),
        ..a.data.clone()
    };
    let mut data = load_data(&data_args, cfg.image_size)?;
    let ids = assign_patients(&mut data, &cfg, &source)?;
    let run = run_data(&cfg, &data, ids.as_ref(), true)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| runs_dir().join(format!("{}-{}", timestamp(), cfg.model.as_str())));
    let mut opts = run_options(a.resume, &data, fallback.as_deref());
    opts.provenance.patient_ids = run.patient_ids;
    opts.provenance.val_from_train = run.val_from_train;
    let summary = train_audit_report(&cfg, &run.dataset, &out, &opts)?;
    Ok((summary, out))
}

/// One run: training, the audit of its best weights, its report.
fn train_audit_report(
    cfg: &TrainConfig,
    data: &Dataset,
    out: &Path,
    opts: &RunOptions,
) -> Result<RunSummary> {
    let summary = cxr_train::train(cfg, data, out, opts)
        .inspect_err(|_| report_if_diverged(out))
        .step(|| format!("training into {}", out.display()))?;
    cxr_audit::audit_run(out, data, &AuditOptions::default())
        .step(|| format!("auditing the run in {}", out.display()))?;
    cxr_report::write_report(out).step(|| format!("building the report of {}", out.display()))?;
    Ok(summary)
}

/// `pipeline`: the CNN over its seeds and ResNet18 over its seeds, each run trained,
/// audited and reported, then `summary.csv`, `summary.md` and the comparison report.
/// Returns the pipeline folder.
pub fn pipeline(a: &PipelineArgs) -> Result<PathBuf> {
    if a.models.is_empty() {
        return Err(CxrError::Setting(
            "--models: give at least one model".into(),
        ));
    }
    let start = Instant::now();
    let mut plan: Vec<(ModelArg, u64)> = Vec::new();
    for &model in &a.models {
        let seeds = match model {
            ModelArg::Cnn => &a.seeds,
            ModelArg::Resnet18 => &a.resnet_seeds,
        };
        if seeds.is_empty() {
            return Err(CxrError::Setting(format!("no seeds given for {model:?}")));
        }
        plan.extend(seeds.iter().map(|&s| (model, s)));
    }
    // ResNet-only flags do not apply to the CNN runs of a pipeline.
    let cnn_recipe = RecipeArgs {
        weights: None,
        freeze_epochs: None,
        lr_mult: None,
        ..a.recipe.clone()
    };
    let configs = |weights: &str| -> Vec<TrainConfig> {
        plan.iter()
            .map(|&(model, seed)| match model {
                ModelArg::Resnet18 => train_config(model, seed, &a.recipe, weights),
                ModelArg::Cnn => train_config(model, seed, &cnn_recipe, "none"),
            })
            .map(|c| recipe::apply_data(c, &a.data))
            .collect()
    };
    // Check the cheap things before asking the hub or reading data.
    for cfg in configs("none") {
        recipe::validate(&cfg)?;
    }
    let ablation = read_ablation(a.ablation.as_deref(), "--ablation")?;
    let (weights, fallback) = if a.models.contains(&ModelArg::Resnet18) {
        recipe::resnet_weights(a.recipe.weights.as_deref())?
    } else {
        ("none".to_string(), None)
    };
    let mut configs = configs(&weights);
    if let Some(shard) = a.shard {
        if a.out.is_none() {
            return Err(CxrError::Setting(
                "--shard needs --out: every shard writes into the same pipeline folder".into(),
            ));
        }
        configs = configs
            .into_iter()
            .enumerate()
            .filter(|(i, _)| shard.holds(*i))
            .map(|(_, c)| c)
            .collect();
        if configs.is_empty() {
            info!("shard {shard}: no run falls to this shard");
            return Ok(a.out.clone().unwrap_or_default());
        }
    }
    // Every run shares the patient flags: one source, one assignment.
    let first = configs.first().cloned().unwrap_or_default();
    let source = recipe::patient_source(&first)?;
    let decode = configs.iter().map(|c| c.image_size).max().unwrap_or(28);
    let mut data = load_data(&a.data, decode)?;
    let ids = assign_patients(&mut data, &first, &source)?;
    // Leakage stops the pipeline before its first run, not after some.
    for cfg in &configs {
        run_data(cfg, &data, ids.as_ref(), true)?;
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| runs_dir().join(timestamp()));
    std::fs::create_dir_all(&out)
        .map_err(|e| CxrError::step(format!("creating {}", out.display()), e))?;
    if let Some(ablation) = &ablation {
        let path = out.join(names::ABLATION);
        ablation
            .write(&path)
            .step(|| format!("writing {}", path.display()))?;
    }
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
        let fallback = fallback
            .as_deref()
            .filter(|_| cfg.model == ModelKind::Resnet18);
        let run = run_data(cfg, &data, ids.as_ref(), true)?;
        let mut opts = run_options(false, &data, fallback);
        opts.provenance.patient_ids = run.patient_ids;
        opts.provenance.val_from_train = run.val_from_train;
        train_audit_report(cfg, &run.dataset, &dir, &opts)?;
        runs.push(
            cxr_runfolder::RunFolder::open(&dir)
                .step(|| format!("reading the run folder {}", dir.display()))?,
        );
    }
    let base = configs.iter().find(|c| c.model == ModelKind::Resnet18);
    let mut headline_dir = base.map(|b| out.join(format!("resnet18-seed{}", b.seed)));
    if a.headline_members >= 2 && base.is_some_and(|b| b.val_from_train.is_some()) {
        warn!(
            "no headline ensemble with --val-from-train: each member would draw its \
             validation split with its own seed, so the ensemble's validation images would \
             be some member's training images"
        );
    } else if a.shard.is_none()
        && a.headline_members >= 2
        && let Some(base) = base
    {
        let dir = headline(a, base, &out, &data, ids.as_ref(), fallback.as_deref())?;
        runs.push(
            cxr_runfolder::RunFolder::open(&dir)
                .step(|| format!("reading the run folder {}", dir.display()))?,
        );
        headline_dir = Some(dir);
    }
    if let Some(shard) = a.shard {
        if a.headline_members >= 2 {
            info!(
                "shard {shard}: the headline ensemble is not built in sharded pipelines; \
                 `cxr ensemble` builds it from the resnet18 runs"
            );
        }
        println!(
            "shard {shard}: {} runs written to {} in {:.0} s; when every shard is done, \
             `cxr report --run {}` writes the comparison",
            runs.len(),
            out.display(),
            start.elapsed().as_secs_f64(),
            out.display()
        );
        return Ok(out);
    }
    if let (Some(dir), Some(npz)) = (&headline_dir, &data.npz) {
        evaluate_headline(a, dir, npz, &out)?;
    }
    write_comparison(&out, &runs)?;
    if let Some(reason) = &fallback {
        println!("NOTE: resnet18 was not pretrained: {reason}");
    }
    println!(
        "pipeline written to {} in {:.0} s",
        out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// `cxr evaluate` of the headline model `dir` on the test split of `npz`, into
/// `out/headline-evaluation` (replaced if there): the operating points moved to the test
/// split's prevalence, which the pipeline report shows beside the run's own figures.
fn evaluate_headline(a: &PipelineArgs, dir: &Path, npz: &Path, out: &Path) -> Result<()> {
    let eval_dir = out.join(names::HEADLINE_EVALUATION);
    if eval_dir.exists() {
        std::fs::remove_dir_all(&eval_dir)
            .map_err(|e| CxrError::step(format!("replacing {}", eval_dir.display()), e))?;
    }
    info!(
        "evaluating the headline model {} on the test split",
        dir.display()
    );
    let opts = cxr_evaluate::EvaluateOptions {
        out: Some(eval_dir.clone()),
        split: Some(Split::Test),
        device: a.recipe.device.clone().unwrap_or_else(|| "cpu".into()),
        ..cxr_evaluate::EvaluateOptions::default()
    };
    cxr_evaluate::evaluate(dir, npz, &opts).step(|| {
        format!(
            "evaluating the headline model {} on {}",
            dir.display(),
            npz.display()
        )
    })?;
    Ok(())
}

/// Seed of the headline's `j`-th extra member (j ≥ 1) next to the pipeline's ResNet18
/// seed `seed`: far from the seeds a pipeline runs itself (0, 1, 2, …).
fn headline_seed(seed: u64, j: usize) -> u64 {
    seed.wrapping_add(1000 * j as u64)
}

/// The headline model: an ensemble of the pipeline's first ResNet18 run (`base`, in
/// `out/resnet18-seed{seed}`) and `headline_members − 1` more ResNet18 runs with the
/// same recipe and other seeds (`out/headline-members/`, trained, not audited), built,
/// audited and reported in `out/headline/`. Returns that folder.
fn headline(
    a: &PipelineArgs,
    base: &TrainConfig,
    out: &Path,
    data: &LoadedData,
    ids: Option<&PatientIdsRecord>,
    fallback: Option<&str>,
) -> Result<PathBuf> {
    let mut members = vec![out.join(format!("resnet18-seed{}", base.seed))];
    for j in 1..a.headline_members {
        let cfg = TrainConfig {
            seed: headline_seed(base.seed, j),
            ..base.clone()
        };
        let dir = out
            .join(HEADLINE_MEMBERS_DIR)
            .join(format!("resnet18-seed{}", cfg.seed));
        info!(
            "headline member {}/{}: resnet18 seed {} into {}",
            j + 1,
            a.headline_members,
            cfg.seed,
            dir.display()
        );
        let run = run_data(&cfg, data, ids, true)?;
        let mut opts = run_options(false, data, fallback);
        opts.provenance.patient_ids = run.patient_ids;
        opts.provenance.val_from_train = run.val_from_train;
        cxr_train::train(&cfg, &run.dataset, &dir, &opts)
            .inspect_err(|_| report_if_diverged(&dir))
            .step(|| format!("training into {}", dir.display()))?;
        members.push(dir);
    }
    let dir = out.join(HEADLINE_DIR);
    info!(
        "headline model: ensemble of {} resnet18 runs into {}",
        members.len(),
        dir.display()
    );
    let run = run_data(base, data, ids, false)?;
    let mut opts = run_options(false, data, fallback);
    opts.provenance.patient_ids = run.patient_ids;
    opts.provenance.val_from_train = run.val_from_train;
    ensemble_audit_report(&members, &run.dataset, &dir, &opts)?;
    Ok(dir)
}

/// The pipeline's headline model's run folder.
const HEADLINE_DIR: &str = "headline";
/// Where the headline's extra members are trained.
const HEADLINE_MEMBERS_DIR: &str = "headline-members";

/// `summary.csv`, `summary.md` and the comparison report of the pipeline folder `out`
/// over `runs`; prints the table and the report's path.
fn write_comparison(out: &Path, runs: &[cxr_runfolder::RunFolder]) -> Result<()> {
    let rows = cxr_report::compare_runs(runs);
    let csv = cxr_report::render_summary_csv(&rows);
    let md = cxr_report::render_summary_markdown(&rows);
    for (name, text) in [(names::SUMMARY_CSV, &csv), (names::SUMMARY_MD, &md)] {
        let path = out.join(name);
        cxr_runfolder::write_atomic(&path, text.as_bytes())
            .step(|| format!("writing {}", path.display()))?;
    }
    let report = cxr_report::write_pipeline_report(out, runs)
        .step(|| format!("building the comparison report of {}", out.display()))?;
    println!("{md}");
    println!("comparison report {}", report.html.display());
    Ok(())
}

/// The run folders directly under `dir` (those with a `metrics.json`), sorted by name.
fn run_folders_under(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(names::METRICS).is_file())
        .collect();
    found.sort();
    found
}

/// Whether `dir` holds the shard folders of a sharded prediction.
fn has_predict_shards(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            e.file_name().to_string_lossy().starts_with("shard-")
                && e.path().join(names::PREDICT_SUMMARY).is_file()
        })
}

/// `audit`: recomputes a run folder's `audit/` from its `model.safetensors`, on the
/// data given or else the data its `config.json` records.
pub fn audit(a: &AuditArgs) -> Result<AuditSummary> {
    let path = a.run.join(names::CONFIG);
    let recorded = if path.is_file() {
        Some(RunConfig::read(&path).step(|| format!("reading {}", path.display()))?)
    } else {
        None
    };
    let size = recorded.as_ref().map_or(28, |c| c.train.image_size);
    let recorded_cfg = recorded
        .as_ref()
        .map(|c| c.train.clone())
        .unwrap_or_default();
    let cfg = recipe::apply_data(recorded_cfg.clone(), &a.data);
    if recorded_cfg.val_from_train.is_some()
        && (cfg.group_pattern != recorded_cfg.group_pattern
            || cfg.patients != recorded_cfg.patients)
    {
        return Err(CxrError::Setting(format!(
            "{} drew its validation split by the recorded patient ids; --group-pattern and \
             --patients must agree with its config.json (or be left out)",
            a.run.display()
        )));
    }
    recipe::validate(&cfg)?;
    let source = recipe::patient_source(&cfg)?;
    let data_args = DataArgs {
        data: a.data.data.clone().or_else(|| {
            recorded
                .as_ref()
                .filter(|c| !c.data.source.is_empty())
                .map(|c| PathBuf::from(&c.data.source))
        }),
        ..a.data.clone()
    };
    let mut data = load_data(&data_args, size)?;
    let ids = assign_patients(&mut data, &cfg, &source)?;
    let run = run_data(&cfg, &data, ids.as_ref(), false)?;
    let opts = AuditOptions {
        gallery_k: a.gallery_k,
        robustness: !a.no_robustness,
        seed: a.seed,
        ..AuditOptions::default()
    };
    cxr_audit::audit_run(&a.run, &run.dataset, &opts)
        .step(|| format!("auditing the run in {}", a.run.display()))
}

/// `ensemble`: the members' data (as the first member recorded it, patient ids and
/// a validation split drawn from train included), the ensemble run folder, its audit
/// and report.
pub fn ensemble(a: &EnsembleArgs) -> Result<(RunSummary, PathBuf)> {
    let first = a
        .runs
        .first()
        .ok_or_else(|| CxrError::Setting("ensemble: give at least two run folders".into()))?;
    let path = first.join(names::CONFIG);
    let recorded = RunConfig::read(&path).step(|| format!("reading {}", path.display()))?;
    let cfg = recipe::apply_data(recorded.train.clone(), &a.data);
    let source = recipe::patient_source(&cfg)?;
    let data_args = DataArgs {
        data: a.data.data.clone().or_else(|| {
            (!recorded.data.source.is_empty()).then(|| PathBuf::from(&recorded.data.source))
        }),
        ..a.data.clone()
    };
    let mut data = load_data(&data_args, cfg.image_size)?;
    let ids = assign_patients(&mut data, &cfg, &source)?;
    let run = run_data(&cfg, &data, ids.as_ref(), false)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| runs_dir().join(format!("{}-ensemble", timestamp())));
    let mut opts = run_options(false, &data, None);
    opts.provenance.patient_ids = run.patient_ids;
    opts.provenance.val_from_train = run.val_from_train;
    let summary = ensemble_audit_report(&a.runs, &run.dataset, &out, &opts)?;
    Ok((summary, out))
}

/// An ensemble run folder built from `members`, audited and reported.
fn ensemble_audit_report(
    members: &[PathBuf],
    data: &Dataset,
    out: &Path,
    opts: &RunOptions,
) -> Result<RunSummary> {
    let summary = cxr_train::ensemble(members, data, out, opts)
        .step(|| format!("building the ensemble in {}", out.display()))?;
    cxr_audit::audit_run(out, data, &AuditOptions::default())
        .step(|| format!("auditing the ensemble in {}", out.display()))?;
    cxr_report::write_report(out).step(|| format!("building the report of {}", out.display()))?;
    Ok(summary)
}

fn print_audit(s: &AuditSummary) {
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
}

fn is_pipeline(dir: &Path) -> bool {
    dir.join(names::SUMMARY_CSV).is_file() && !dir.join(names::METRICS).is_file()
}

/// `report`: rebuilds the report of a run folder, of a diverged run, or of a pipeline
/// folder and each of its runs (never trains).
pub fn report(dir: &Path) -> Result<()> {
    let start = Instant::now();
    let built = |what: &Path| format!("building the report of {}", what.display());
    // A pipeline trained in shards: the comparison over every run folder, once.
    if !is_pipeline(dir) && !dir.join(names::METRICS).is_file() {
        let found = run_folders_under(dir);
        if !found.is_empty() {
            let runs = found
                .iter()
                .map(|r| {
                    cxr_runfolder::RunFolder::open(r)
                        .step(|| format!("reading the run folder {}", r.display()))
                })
                .collect::<Result<Vec<_>>>()?;
            write_comparison(dir, &runs)?;
        }
    }
    // A prediction made in shards: merged first.
    if has_predict_shards(dir) {
        cxr_predict::merge_shards(dir, 0, 1000)
            .step(|| format!("merging the prediction shards in {}", dir.display()))?;
    }
    if dir.join(names::EVALUATION).is_file() {
        let files = cxr_report::write_evaluate_report(dir).step(|| built(dir))?;
        println!("{}", files.html.display());
    } else if is_pipeline(dir) {
        let runs = cxr_report::open_pipeline(dir)
            .step(|| format!("reading the pipeline folder {}", dir.display()))?;
        for r in &runs {
            let files = cxr_report::write_report(&r.dir).step(|| built(&r.dir))?;
            println!("{}", files.html.display());
        }
        let runs = cxr_report::open_pipeline(dir)
            .step(|| format!("reading the pipeline folder {}", dir.display()))?;
        let files = cxr_report::write_pipeline_report(dir, &runs)
            .step(|| format!("building the comparison report of {}", dir.display()))?;
        println!("{}", files.html.display());
    } else if dir.join(names::PREDICT_SUMMARY).is_file() {
        let files = cxr_report::write_predict_report(dir).step(|| built(dir))?;
        println!("{}", files.markdown.display());
        println!("{}", files.html.display());
        println!("{}", files.parquet.display());
    } else if cxr_runfolder::is_diverged_run(dir) {
        let d = cxr_runfolder::Divergence::read(dir).step(|| built(dir))?;
        let files = cxr_report::write_divergence_report(dir).step(|| built(dir))?;
        println!("{}", files.markdown.display());
        println!("{}", files.html.display());
        eprintln!("this run did not finish: {}", d.error);
    } else {
        let files = cxr_report::write_report(dir).step(|| built(dir))?;
        println!("{}", files.markdown.display());
        println!("{}", files.html.display());
        println!("{}", files.parquet.display());
        println!(
            "{} figures in {}",
            files.figures.len(),
            dir.join(names::FIGURES_DIR).display()
        );
    }
    eprintln!("report built in {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// After a failed training run: if it diverged, writes its partial report (what
/// happened, the last good checkpoint, the history so far) and says where.
pub fn report_if_diverged(dir: &Path) {
    if !cxr_runfolder::is_diverged_run(dir) {
        return;
    }
    match cxr_report::write_divergence_report(dir) {
        Ok(files) => eprintln!(
            "partial report of the diverged run: {}",
            files.html.display()
        ),
        Err(e) => warn!("could not write the partial report: {e}"),
    }
}
