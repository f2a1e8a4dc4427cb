//! Applies a trained cxr model to new chest X-rays: image files, DICOM files and
//! folders of them.
//!
//! Key items: [`predict`] with [`PredictOptions`] ([`OperatingPointChoice`],
//! [`DicomWindow`], [`Shard`]; [`merge_shards`] joins a sharded prediction) writes a
//! prediction folder — `predictions.csv` (one row per frame,
//! a row with the reason for each input that could not be read), `summary.json` with
//! the label-free site check (the set's pneumonia prevalence estimated by EM prior
//! adjustment, against the training prevalence), and, with `explain`, Grad-CAM and
//! occlusion overlays of the highest-probability images.
//!
//! The parts, for other tools (`cxr-evaluate` uses them): [`Scorer`] (a run's model,
//! scoring images as the run did), [`choose_threshold`] ([`ChosenPoint`]),
//! [`site_check`], [`adapted_threshold`].
//!
//! The model is taken from the run folder's `model.json` (the model card: network,
//! preprocessing, temperature, operating points chosen on validation) and
//! `model.safetensors` alone, so a run folder copied to another machine predicts the
//! same. Runs written before model cards existed get one derived from `config.json`
//! and `metrics.json` (the summary says so).
//!
//! What this crate does not do: train, audit, or render reports (`cxr-report` turns a
//! prediction folder into `report.html` and `predictions.parquet`). The files' format
//! is `cxr-runfolder`'s.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod error;
mod scorer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Tensor;
use cxr_audit::{TargetClass, grad_cam, occlusion_map, write_gray_png, write_overlay_png};
use cxr_data::ImageSet;
use cxr_metrics::{
    BiasCorrectedScaling, PrevalenceConfig, adapt_probability, adapt_threshold,
    estimate_prevalence, label_shift_test,
};
use cxr_runfolder::{
    ErrorCount, Explained, LabelShiftCheck, ModelCard, PredictRow, PredictSummary, SiteCheck,
    names, write_predict_rows,
};
use rayon::prelude::*;
use tracing::{info, warn};
use tracing_indicatif::span_ext::IndicatifSpanExt;

pub use cxr_data::DicomWindow;
pub use error::{PredictError, Result};
pub use scorer::Scorer;

/// Which decision threshold to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatingPointChoice {
    /// The model card's default (the validation-chosen Youden point).
    Default,
    /// An operating point of the model card by name (`youden`, `sensitivity_0.95`,
    /// `default_0.5`).
    Named(String),
    /// A fixed threshold on P(pneumonia).
    Threshold(f64),
}

impl std::str::FromStr for OperatingPointChoice {
    type Err = String;

    /// `default`, a number in [0, 1], or an operating point's name.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s == "default" {
            return Ok(Self::Default);
        }
        if let Ok(t) = s.parse::<f64>() {
            return if (0.0..=1.0).contains(&t) {
                Ok(Self::Threshold(t))
            } else {
                Err(format!("threshold {t} is not in [0, 1]"))
            };
        }
        Ok(Self::Named(s.to_string()))
    }
}

/// Settings of [`predict`].
#[derive(Debug, Clone, PartialEq)]
pub struct PredictOptions {
    /// The prediction folder; `None`: `RUN/predictions/<UTC timestamp>/`.
    pub out: Option<PathBuf>,
    /// The decision threshold.
    pub operating_point: OperatingPointChoice,
    /// Any unreadable input is an error (the folder is written all the same).
    pub strict: bool,
    /// Write Grad-CAM and occlusion overlays.
    pub explain: bool,
    /// With `explain`: only the `explain_top` highest-probability frames (0: all).
    pub explain_top: usize,
    /// Adapt probabilities and the threshold to the prevalence the site check
    /// estimates (Saerens et al. 2002). Off by default: a deployed threshold should
    /// not move with each batch unless asked to.
    pub adapt_prior: bool,
    /// How DICOM values map to 8-bit gray.
    pub dicom_window: DicomWindow,
    /// Device spec (`cpu`, `cuda[:N]`, `metal`, `auto`).
    pub device: String,
    /// Inference batch size; `None`: the model card's (which reproduces the run's own
    /// probabilities bit for bit).
    pub batch_size: Option<usize>,
    /// Bootstrap resamples of the site check's interval.
    pub site_resamples: usize,
    /// Seed of the site check's bootstrap.
    pub seed: u64,
    /// Side of the explanation PNGs in pixels.
    pub tile_size: usize,
    /// The command line, for the summary.
    pub inputs_as_given: Vec<String>,
    /// Predict only this shard of the input files (see [`Shard`]); needs `out`, and
    /// writes to `out/shard-K-of-N/`. [`merge_shards`] joins the shards.
    pub shard: Option<Shard>,
}

/// One of `count` shards of a job (1-based `index`): the files (or runs) whose position
/// `i` (0-based, in the deterministic input order) has `i % count == index − 1`. Written
/// `K/N` on the command line, so that a Slurm job array (`$((SLURM_ARRAY_TASK_ID + 1))/N`
/// with `--array=0-(N−1)`) or a Kubernetes Indexed Job (`$((JOB_COMPLETION_INDEX + 1))/N`)
/// runs one shard per task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based shard number.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Whether the item at 0-based position `i` belongs to this shard.
    pub fn holds(&self, i: usize) -> bool {
        i % self.count == self.index - 1
    }

    /// The shard's folder name, `shard-K-of-N`.
    pub fn folder(&self) -> String {
        format!("shard-{}-of-{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `K/N` with 1 ≤ K ≤ N.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not K/N (e.g. 2/8)"))?;
        let num = |v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{s}` is not K/N with whole numbers"))
        };
        let (index, count) = (num(k)?, num(n)?);
        if count == 0 || index == 0 || index > count {
            return Err(format!("`{s}`: need 1 ≤ K ≤ N"));
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            out: None,
            operating_point: OperatingPointChoice::Default,
            strict: false,
            explain: false,
            explain_top: 16,
            adapt_prior: false,
            dicom_window: DicomWindow::Auto,
            device: "cpu".into(),
            batch_size: None,
            site_resamples: 1000,
            seed: 0,
            tile_size: 224,
            inputs_as_given: Vec::new(),
            shard: None,
        }
    }
}

/// What [`predict`] wrote.
#[derive(Debug, Clone)]
pub struct PredictOutcome {
    /// The prediction folder.
    pub dir: PathBuf,
    /// Its `summary.json`.
    pub summary: PredictSummary,
    /// Its `predictions.csv` rows, in input order.
    pub rows: Vec<PredictRow>,
}

/// Files read and decoded at a time (bounds memory on large archives; a multiple of
/// common batch sizes so that batches match the run's own evaluation).
const CHUNK_FILES: usize = 2048;
/// Significance of the site check's interval.
const SITE_CONFIDENCE: f64 = 0.95;

/// Applies the model of `run_dir` to `inputs` (files and folders, see
/// [`cxr_data::collect_inputs`]) and writes the prediction folder.
///
/// Each input file gives one row per frame, in the order given (folders sorted by
/// path): `prob` = σ(logit), `prob_calibrated` = σ(logit / T) with the card's
/// temperature, the decision `prob ≥ threshold`. A file that cannot be read gives a
/// row with the reason and the run goes on.
///
/// Errors: an unusable run folder (no model, a diverged run, unreadable weights), an
/// unknown operating point, an existing prediction in `out`; after writing the folder,
/// [`PredictError::Unreadable`] when nothing could be read, or anything could not and
/// `strict` is set.
pub fn predict(
    run_dir: &Path,
    inputs: &[PathBuf],
    opts: &PredictOptions,
) -> Result<PredictOutcome> {
    let start = Instant::now();
    let card = ModelCard::of_run(run_dir)?;
    if let Some(why) = &card.derived {
        warn!("{}: {why}", run_dir.display());
    }
    let ChosenPoint {
        name: op_name,
        threshold,
        source: threshold_source,
    } = choose_threshold(&card, &opts.operating_point)?;
    let out = match (&opts.out, opts.shard) {
        (Some(o), Some(shard)) => o.join(shard.folder()),
        (Some(o), None) => o.clone(),
        (None, Some(_)) => {
            return Err(PredictError::Setting {
                field: "shard".into(),
                reason: "needs --out: every shard writes into the same folder".into(),
            });
        }
        (None, None) => new_output_dir(&run_dir.join(names::PREDICT_DIR)),
    };
    std::fs::create_dir_all(&out).map_err(|e| PredictError::io(&out, e))?;
    if out.join(names::PREDICT_SUMMARY).exists() {
        return Err(PredictError::Setting {
            field: "out".into(),
            reason: format!(
                "{} already holds a prediction; choose another folder",
                out.display()
            ),
        });
    }
    let scorer = Scorer::with_card(run_dir, card.clone(), &opts.device, opts.batch_size)?;
    info!(
        run = %run_dir.display(),
        network = card.network.as_str(),
        operating_point = op_name.as_str(),
        threshold,
        "predicting"
    );

    let mut files = cxr_data::collect_inputs(inputs);
    if let Some(shard) = opts.shard {
        files = files
            .into_iter()
            .enumerate()
            .filter(|(i, _)| shard.holds(*i))
            .map(|(_, f)| f)
            .collect();
    }
    let pre = card.preprocess.clone();
    let mut rows: Vec<PredictRow> = Vec::new();
    // Logits of the predicted rows, in row order (the site check works on them).
    let mut row_logits: Vec<f64> = Vec::new();
    let bar = progress_span(files.len() as u64);
    let _shown = bar.enter();
    for chunk in files.chunks(CHUNK_FILES) {
        let read: Vec<std::result::Result<Vec<Vec<u8>>, String>> = chunk
            .par_iter()
            .map(|p| cxr_data::read_input(p, pre.source_size, opts.dicom_window))
            .collect();
        let mut set = ImageSet {
            images: Vec::new(),
            labels: Vec::new(),
            height: pre.source_size,
            width: pre.source_size,
        };
        let mut chunk_rows = Vec::new();
        for (path, r) in chunk.iter().zip(read) {
            let name = path.display().to_string();
            match r {
                Ok(frames) => {
                    for (frame, px) in frames.into_iter().enumerate() {
                        set.images.extend(px);
                        set.labels.push(0);
                        chunk_rows.push(row(&name, frame, &op_name, String::new()));
                    }
                }
                Err(reason) => chunk_rows.push(row(&name, 0, &op_name, reason)),
            }
        }
        if !set.is_empty() {
            let logits = scorer.logits(&set)?;
            let mut z = logits.into_iter();
            for r in chunk_rows.iter_mut().filter(|r| r.error.is_empty()) {
                let logit = z.next().map(f64::from).unwrap_or(f64::NAN);
                row_logits.push(logit);
                r.logit = Some(logit);
                r.prob = Some(sigmoid(logit));
                r.prob_calibrated = Some(sigmoid(logit / card.temperature));
            }
        }
        rows.extend(chunk_rows);
        bar.pb_inc(chunk.len() as u64);
    }
    drop(_shown);
    let predict_seconds = start.elapsed().as_secs_f64();

    // Site check, then the decisions.
    let calibration = SiteCalibration::of(&card);
    let site_check = site_check(&card, &row_logits, opts.site_resamples, opts.seed)?;
    let mut applied = threshold;
    let adapted_prior = match (&site_check, opts.adapt_prior) {
        (Some(s), true) => Some((s.reference_prevalence, s.estimate)),
        (None, true) => {
            warn!(
                "--adapt-prior: no site check (see summary.json), probabilities left as they are"
            );
            None
        }
        _ => None,
    };
    if let Some((reference, new)) = adapted_prior {
        // The threshold is on the uncalibrated probability: move it to the calibrated
        // scale, adapt it there, and move it back.
        applied = calibration.adapt_threshold(threshold, reference, new);
    }
    let mut positives = 0;
    let mut positives_unadapted = 0;
    let mut z = row_logits.iter();
    for r in rows.iter_mut() {
        let Some(p) = r.prob else { continue };
        let logit = z.next().copied().unwrap_or(f64::NAN);
        if let Some((reference, new)) = adapted_prior {
            r.prob_adapted = Some(adapt_probability(calibration.apply(logit), reference, new));
        }
        r.threshold = Some(applied);
        let positive = p >= applied;
        positives += usize::from(positive);
        positives_unadapted += usize::from(p >= threshold);
        r.decision = Some(if positive { "pneumonia" } else { "normal" }.into());
    }

    let explained = if opts.explain {
        explain(&scorer, &rows, opts, &out)?
    } else {
        Vec::new()
    };

    let predicted = rows.iter().filter(|r| r.is_ok()).count();
    let unreadable = rows.iter().filter(|r| !r.error.is_empty()).count();
    let summary = PredictSummary {
        run: run_dir.display().to_string(),
        network: card.network.as_str().into(),
        card_derived: card.derived.is_some(),
        inputs: opts.inputs_as_given.clone(),
        shard: opts.shard.map(|s| s.to_string()),
        files: files.len(),
        rows: rows.len(),
        predicted,
        unreadable,
        errors: error_counts(&rows),
        operating_point: op_name,
        threshold: applied,
        threshold_source: if adapted_prior.is_some() {
            format!("{threshold_source}, adapted to the estimated prevalence (--adapt-prior)")
        } else {
            threshold_source
        },
        threshold_unadapted: threshold,
        positives,
        positives_unadapted,
        adapt_prior: adapted_prior.is_some(),
        site_check,
        explained,
        seconds: predict_seconds,
        images_per_second: if predict_seconds > 0.0 {
            predicted as f64 / predict_seconds
        } else {
            0.0
        },
        device: scorer.device_name(),
        cxr_version: env!("CARGO_PKG_VERSION").into(),
    };
    let csv = out.join(names::PREDICTIONS);
    write_predict_rows(&csv, &rows)?;
    summary.write(&out.join(names::PREDICT_SUMMARY))?;
    info!(
        files = summary.files,
        predicted,
        unreadable,
        positives,
        images_per_second = format!("{:.1}", summary.images_per_second),
        "predictions written to {}",
        out.display()
    );
    let first_error = || {
        rows.iter()
            .find(|r| !r.error.is_empty())
            .map(|r| format!("{}: {}", r.path, r.error))
            .unwrap_or_default()
    };
    if predicted == 0 {
        let reason = if files.is_empty() {
            "no input files were found".to_string()
        } else {
            format!(
                "none of the {} input files could be read; first: {}",
                files.len(),
                first_error()
            )
        };
        return Err(PredictError::Unreadable { reason, csv });
    }
    if opts.strict && unreadable > 0 {
        return Err(PredictError::Unreadable {
            reason: format!(
                "--strict: {unreadable} of {} input files could not be read; first: {}",
                files.len(),
                first_error()
            ),
            csv,
        });
    }
    Ok(PredictOutcome {
        dir: out,
        summary,
        rows,
    })
}

/// Joins the shard folders `dir/shard-K-of-N/` of a sharded prediction (see
/// [`PredictOptions::shard`]) into `dir`: `predictions.csv` with every shard's rows in
/// the order of the unsharded input list, and `summary.json` with the counts summed and
/// the site check recomputed over all rows from their logits and the run's model card
/// (`seed` and `resamples` for its bootstrap). Every shard 1..=N must be there, all of
/// one run and one operating point; shards made with `--adapt-prior` are refused (each
/// adapted to its own estimate).
pub fn merge_shards(dir: &Path, seed: u64, resamples: usize) -> Result<PredictOutcome> {
    let entries = std::fs::read_dir(dir).map_err(|e| PredictError::io(dir, e))?;
    let mut shards: Vec<(Shard, PathBuf)> = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("shard-") else {
            continue;
        };
        if let Some((k, n)) = rest.split_once("-of-")
            && let Ok(shard) = format!("{k}/{n}").parse::<Shard>()
        {
            shards.push((shard, entry.path()));
        }
    }
    let bad = |reason: String| PredictError::Setting {
        field: "run".into(),
        reason: format!("{}: {reason}", dir.display()),
    };
    let Some(count) = shards.first().map(|(s, _)| s.count) else {
        return Err(bad("no shard-K-of-N folders to merge".into()));
    };
    if shards.iter().any(|(s, _)| s.count != count) {
        return Err(bad("shard folders of different shard counts".into()));
    }
    shards.sort_by_key(|(s, _)| s.index);
    let missing: Vec<String> = (1..=count)
        .filter(|k| !shards.iter().any(|(s, _)| s.index == *k))
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!(
            "shards {} of {count} are missing (has every task finished?)",
            missing.join(", ")
        )));
    }
    let mut summaries = Vec::with_capacity(count);
    let mut files_per_shard: Vec<Vec<Vec<PredictRow>>> = Vec::with_capacity(count);
    for (shard, path) in &shards {
        let summary = PredictSummary::read(&path.join(names::PREDICT_SUMMARY))?;
        let rows = cxr_runfolder::read_predict_rows(&path.join(names::PREDICTIONS))?;
        if summary.adapt_prior {
            return Err(bad(format!(
                "shard {shard} was made with --adapt-prior; predict the shards without it and merge"
            )));
        }
        // A file's rows are consecutive and start at frame 0.
        let mut files: Vec<Vec<PredictRow>> = Vec::new();
        for r in rows {
            match files.last_mut() {
                Some(f) if r.frame > 0 && f[0].path == r.path => f.push(r),
                _ => files.push(vec![r]),
            }
        }
        files_per_shard.push(files);
        summaries.push((shard.folder(), summary));
    }
    let first = &summaries[0].1;
    for (name, s) in &summaries {
        if s.run != first.run
            || s.operating_point != first.operating_point
            || s.threshold != first.threshold
        {
            return Err(bad(format!(
                "{name} applied another model or operating point ({} at {}) than shard 1 ({} at {})",
                s.run, s.operating_point, first.run, first.operating_point
            )));
        }
    }
    let total: usize = files_per_shard.iter().map(Vec::len).sum();
    let mut rows = Vec::new();
    let mut cursors = vec![0usize; count];
    for i in 0..total {
        // Position i of the unsharded list went to shard i % N as its (i / N)-th file.
        let k = i % count;
        if let Some(f) = files_per_shard[k].get(cursors[k]) {
            rows.extend(f.iter().cloned());
            cursors[k] += 1;
        }
    }
    for (k, files) in files_per_shard.iter().enumerate() {
        if cursors[k] != files.len() {
            return Err(bad(format!(
                "{} holds more files than its place in the input order allows: were the shards made from the same inputs?",
                summaries[k].0
            )));
        }
    }
    let logits: Vec<f64> = rows
        .iter()
        .filter(|r| r.is_ok())
        .filter_map(|r| r.logit)
        .collect();
    let run = PathBuf::from(&first.run);
    let site_check = match ModelCard::of_run(&run) {
        Ok(card) => site_check(&card, &logits, resamples, seed)?,
        Err(e) => {
            warn!("merged without a site check: the run's model card cannot be read: {e}");
            None
        }
    };
    let sum = |f: fn(&PredictSummary) -> usize| summaries.iter().map(|(_, s)| f(s)).sum::<usize>();
    let seconds: f64 = summaries.iter().map(|(_, s)| s.seconds).sum();
    let predicted = sum(|s| s.predicted);
    let summary = PredictSummary {
        run: first.run.clone(),
        network: first.network.clone(),
        card_derived: first.card_derived,
        inputs: first.inputs.clone(),
        shard: Some(format!("{count} shards merged")),
        files: sum(|s| s.files),
        rows: rows.len(),
        predicted,
        unreadable: sum(|s| s.unreadable),
        errors: error_counts(&rows),
        operating_point: first.operating_point.clone(),
        threshold: first.threshold,
        threshold_source: first.threshold_source.clone(),
        threshold_unadapted: first.threshold_unadapted,
        positives: sum(|s| s.positives),
        positives_unadapted: sum(|s| s.positives_unadapted),
        adapt_prior: false,
        site_check,
        explained: summaries
            .iter()
            .flat_map(|(folder, s)| {
                s.explained.iter().map(move |e| Explained {
                    image: format!("{folder}/{}", e.image),
                    gradcam: format!("{folder}/{}", e.gradcam),
                    occlusion: format!("{folder}/{}", e.occlusion),
                    ..e.clone()
                })
            })
            .collect(),
        seconds,
        images_per_second: if seconds > 0.0 {
            predicted as f64 / seconds
        } else {
            0.0
        },
        device: first.device.clone(),
        cxr_version: env!("CARGO_PKG_VERSION").into(),
    };
    write_predict_rows(&dir.join(names::PREDICTIONS), &rows)?;
    summary.write(&dir.join(names::PREDICT_SUMMARY))?;
    info!(
        shards = count,
        rows = rows.len(),
        "shards merged into {}",
        dir.display()
    );
    Ok(PredictOutcome {
        dir: dir.to_path_buf(),
        summary,
        rows,
    })
}

/// The unreadable rows counted by reason, reasons sorted.
fn error_counts(rows: &[PredictRow]) -> Vec<ErrorCount> {
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rows.iter().filter(|r| !r.error.is_empty()) {
        *by_reason.entry(r.error.as_str()).or_default() += 1;
    }
    by_reason
        .into_iter()
        .map(|(reason, count)| ErrorCount {
            reason: reason.to_string(),
            count,
        })
        .collect()
}

fn row(path: &str, frame: usize, op: &str, error: String) -> PredictRow {
    PredictRow {
        path: path.to_string(),
        frame,
        logit: None,
        prob: None,
        prob_calibrated: None,
        prob_adapted: None,
        decision: None,
        threshold: None,
        operating_point: op.to_string(),
        error,
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The logit of `p`, finite for `p` in [0, 1] (clamped away from 0 and 1).
fn logit_of(p: f64) -> f64 {
    let p = p.clamp(1e-15, 1.0 - 1e-15);
    (p / (1.0 - p)).ln()
}

/// A decision threshold picked from a model card.
#[derive(Debug, Clone, PartialEq)]
pub struct ChosenPoint {
    /// The operating point's name (`youden`, …, or `threshold_<t>` for a fixed one).
    pub name: String,
    /// Predict pneumonia iff P ≥ threshold.
    pub threshold: f64,
    /// Where the threshold comes from, in words.
    pub source: String,
}

/// The threshold `choice` names on `card`; an unknown name is an error listing the
/// card's points.
pub fn choose_threshold(card: &ModelCard, choice: &OperatingPointChoice) -> Result<ChosenPoint> {
    let named = |name: &str, default: bool| -> Result<ChosenPoint> {
        let p = card.operating_point(name).ok_or_else(|| PredictError::Setting {
            field: "operating-point".into(),
            reason: format!(
                "the model card has no operating point `{name}` (it has: {}; or give a number in [0, 1])",
                card.operating_points
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        let mut source = format!("operating point {name} chosen on the validation split");
        if let (Some(se), Some(sp)) = (p.val_sensitivity, p.val_specificity) {
            source.push_str(&format!(
                " (validation sensitivity {se:.3}, specificity {sp:.3})"
            ));
        }
        if default {
            source.push_str(", the model's default");
        }
        Ok(ChosenPoint {
            name: name.to_string(),
            threshold: p.threshold,
            source,
        })
    };
    match choice {
        OperatingPointChoice::Default => named(&card.default_operating_point, true),
        OperatingPointChoice::Named(n) => named(n, false),
        OperatingPointChoice::Threshold(t) => Ok(ChosenPoint {
            name: format!("threshold_{t}"),
            threshold: *t,
            source: format!("fixed threshold {t} given on the command line"),
        }),
    }
}

/// The calibration behind the site check: the card's bias-corrected temperature
/// scaling when it has one (its probabilities average to the validation prevalence, as
/// EM needs), else its temperature with the training prevalence as the reference.
struct SiteCalibration {
    scale: f64,
    bias: f64,
    reference_prevalence: Option<f64>,
    words: &'static str,
}

impl SiteCalibration {
    fn of(card: &ModelCard) -> Self {
        match card.scaling {
            Some(s) => Self {
                scale: s.scale,
                bias: s.bias,
                reference_prevalence: Some(s.reference_prevalence),
                words: "bias-corrected temperature scaling fitted on validation",
            },
            None => Self {
                scale: 1.0 / card.temperature,
                bias: 0.0,
                reference_prevalence: card.data.prevalence_train,
                words: "temperature scaling (the model card has no bias-corrected scaling)",
            },
        }
    }

    /// The calibrated probability of `logit`.
    fn apply(&self, logit: f64) -> f64 {
        sigmoid(self.scale * logit + self.bias)
    }

    /// The logit whose calibrated probability is `p`.
    fn invert(&self, p: f64) -> f64 {
        (logit_of(p) - self.bias) / self.scale
    }

    /// `threshold` on σ(logit) moved from prevalence `from` to `to` through the
    /// calibrated scale (where Saerens et al.'s adjustment holds).
    fn adapt_threshold(&self, threshold: f64, from: f64, to: f64) -> f64 {
        let cal = self.apply(logit_of(threshold));
        sigmoid(self.invert(adapt_threshold(cal, from, to)))
    }

    fn scaling(&self) -> BiasCorrectedScaling {
        BiasCorrectedScaling {
            scale: self.scale,
            bias: self.bias,
        }
    }
}

/// `threshold` (on σ(logit), as the card's operating points) re-derived for a set
/// whose pneumonia prevalence is `prevalence`: moved to the card's calibrated scale,
/// adjusted from the prevalence that scale reflects to `prevalence` (Saerens,
/// Latinne & Decaestecker 2002), and moved back. `None` when the card records no
/// reference prevalence (older runs) or `prevalence` is not in (0, 1).
pub fn adapted_threshold(card: &ModelCard, threshold: f64, prevalence: f64) -> Option<f64> {
    let calibration = SiteCalibration::of(card);
    let from = calibration.reference_prevalence?;
    (0.0 < prevalence && prevalence < 1.0 && 0.0 < from && from < 1.0)
        .then(|| calibration.adapt_threshold(threshold, from, prevalence))
}

/// Significance level at which the label-shift test rejects (the estimate is then
/// called unreliable).
const SHIFT_ALPHA: f64 = 0.01;
/// Below this p-value (and above [`SHIFT_ALPHA`]) the verdict reports weak evidence.
const WEAK_SHIFT_ALPHA: f64 = 0.05;

/// The label-free site check of `logits` (the model's logits on new images): the
/// images' pneumonia prevalence estimated by EM prior adjustment on calibrated
/// probabilities, with a percentile bootstrap interval (`resamples`, `seed`), and the
/// test of EM's label-shift assumption. `None` when the card records no training
/// prevalence or `logits` is empty.
pub fn site_check(
    card: &ModelCard,
    logits: &[f64],
    resamples: usize,
    seed: u64,
) -> Result<Option<SiteCheck>> {
    let calibration = &SiteCalibration::of(card);
    let (Some(reference), Some(train)) =
        (calibration.reference_prevalence, card.data.prevalence_train)
    else {
        warn!("site check skipped: the model card records no training prevalence");
        return Ok(None);
    };
    if logits.is_empty() || !(0.0 < reference && reference < 1.0) {
        return Ok(None);
    }
    let calibrated: Vec<f64> = logits.iter().map(|&z| calibration.apply(z)).collect();
    let cfg = PrevalenceConfig {
        resamples: resamples.max(2),
        seed,
        confidence: SITE_CONFIDENCE,
        ..PrevalenceConfig::default()
    };
    let est = estimate_prevalence(&calibrated, reference, cfg)?;
    let differs = !(est.ci_low..=est.ci_high).contains(&train);
    let shift = match &card.reference_logits {
        Some(r) if !r.normal.is_empty() && !r.pneumonia.is_empty() => {
            let widen = |v: &[f32]| v.iter().map(|&z| f64::from(z)).collect::<Vec<f64>>();
            let t = label_shift_test(
                logits,
                &widen(&r.normal),
                &widen(&r.pneumonia),
                calibration.scaling(),
                reference,
                cfg,
            )?;
            Some(LabelShiftCheck {
                statistic: t.statistic,
                p_value: t.p_value,
                resamples: t.resamples,
                rejected: t.p_value < SHIFT_ALPHA,
            })
        }
        _ => None,
    };
    let mean = calibrated.iter().sum::<f64>() / calibrated.len() as f64;
    let mut verdict = if differs {
        format!(
            "The estimated pneumonia prevalence of these images, {:.3} (95% CI {:.3}–{:.3}), \
             differs from the training prevalence {train:.3}: this site's case mix differs \
             from the training data's, so predictive values (and a probability threshold) \
             do not carry over unchanged.",
            est.estimate, est.ci_low, est.ci_high
        )
    } else {
        format!(
            "The estimated pneumonia prevalence of these images, {:.3} (95% CI {:.3}–{:.3}), \
             is consistent with the training prevalence {train:.3}.",
            est.estimate, est.ci_low, est.ci_high
        )
    };
    match &shift {
        Some(s) if s.rejected => verdict.push_str(&format!(
            " But the model's scores on these images are not a prevalence-shifted mix of its \
             validation scores (KS distance {:.3}, bootstrap p = {:.3}): the images differ \
             from the training data in more than prevalence (scanner, population, \
             labelling), so this estimate is unreliable and the validation operating points \
             may not hold here — validate on labelled images from this site.",
            s.statistic, s.p_value
        )),
        Some(s) if s.p_value < WEAK_SHIFT_ALPHA => verdict.push_str(&format!(
            " The model's scores fit a prevalence-shifted mix of its validation scores only \
             loosely (KS distance {:.3}, bootstrap p = {:.3}): weak evidence that these images \
             differ from the training data in more than prevalence; treat the estimate with \
             caution.",
            s.statistic, s.p_value
        )),
        Some(s) => verdict.push_str(&format!(
            " The model's scores fit a prevalence-shifted mix of its validation scores (KS \
             distance {:.3}, bootstrap p = {:.3}), as the estimate assumes.",
            s.statistic, s.p_value
        )),
        None => verdict.push_str(
            " (No validation scores in the model card: the label-shift assumption is untested.)",
        ),
    }
    Ok(Some(SiteCheck {
        method: "EM prior adjustment (Saerens, Latinne & Decaestecker 2002) on calibrated \
                 probabilities (Alexandari, Kundaje & Shrikumar 2020), percentile bootstrap \
                 interval; label-shift test: Kolmogorov–Smirnov distance of the logits to the \
                 fitted mixture of validation logits, bootstrap p-value (Lipton et al. 2018; \
                 Rabanser et al. 2019)"
            .into(),
        estimate: est.estimate,
        ci_low: est.ci_low,
        ci_high: est.ci_high,
        level: SITE_CONFIDENCE,
        resamples: cfg.resamples,
        train_prevalence: train,
        reference_prevalence: reference,
        calibration: calibration.words.into(),
        label_shift_test: shift,
        differs,
        iterations: est.iterations,
        converged: est.converged,
        mean_probability: mean,
        verdict,
    }))
}

/// Grad-CAM and occlusion overlays (for the pneumonia class) of the highest-probability
/// frames, written under `out/explain/`.
fn explain(
    scorer: &Scorer,
    rows: &[PredictRow],
    opts: &PredictOptions,
    out: &Path,
) -> Result<Vec<Explained>> {
    let (model, device, normalize) = (scorer.model.as_ref(), &scorer.device, scorer.normalize());
    let mut order: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].is_ok()).collect();
    order.sort_by(|&a, &b| {
        let (pa, pb) = (rows[a].prob.unwrap_or(0.0), rows[b].prob.unwrap_or(0.0));
        pb.total_cmp(&pa).then(a.cmp(&b))
    });
    if opts.explain_top > 0 {
        order.truncate(opts.explain_top);
    }
    let dir = out.join(names::PREDICT_EXPLAIN_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| PredictError::io(&dir, e))?;
    let pre = &scorer.card.preprocess;
    let size = pre.input_size;
    let patch = size.div_ceil(4).max(1);
    let stride = patch.div_ceil(2);
    let mut done = Vec::with_capacity(order.len());
    let bar = progress_span(order.len() as u64);
    let _shown = bar.enter();
    for (rank, &i) in order.iter().enumerate() {
        bar.pb_inc(1);
        let r = &rows[i];
        // Read again rather than keep every image of a large set in memory.
        let frames = cxr_data::read_input(Path::new(&r.path), pre.source_size, opts.dicom_window)
            .map_err(|reason| PredictError::Setting {
            field: "explain".into(),
            reason: format!("{}: {reason} (it was readable moments ago)", r.path),
        })?;
        let Some(px) = frames.into_iter().nth(r.frame) else {
            continue;
        };
        let set = ImageSet {
            images: px,
            labels: vec![0],
            height: pre.source_size,
            width: pre.source_size,
        };
        let sized = if size == pre.source_size {
            set
        } else {
            set.resized(size)?
        };
        let img: Vec<f32> = sized.images.iter().map(|&p| p as f32 / 255.0).collect();
        let x: Vec<f32> = img
            .iter()
            .map(|&v| (v - normalize.mean) / normalize.std)
            .collect();
        let x = Tensor::from_vec(x, (1, 1, size, size), device)?;
        let cam = grad_cam(model, &x, &[TargetClass::Pneumonia])?;
        let occ = occlusion_map(
            model,
            &img,
            size,
            size,
            TargetClass::Pneumonia,
            normalize,
            patch,
            stride,
            device,
        )?;
        let stem = format!("{:03}", rank + 1);
        let rel = |suffix: &str| format!("{}/{stem}{suffix}.png", names::PREDICT_EXPLAIN_DIR);
        let tile = opts.tile_size.max(size);
        write_gray_png(&out.join(rel("")), &img, size, size, tile)?;
        if let Some(c) = cam.first() {
            write_overlay_png(
                &out.join(rel("_gradcam")),
                &img,
                &c.values,
                size,
                size,
                tile,
            )?;
        }
        write_overlay_png(
            &out.join(rel("_occlusion")),
            &img,
            &occ.values,
            size,
            size,
            tile,
        )?;
        done.push(Explained {
            path: r.path.clone(),
            frame: r.frame,
            prob: r.prob.unwrap_or(0.0),
            image: rel(""),
            gradcam: rel("_gradcam"),
            occlusion: rel("_occlusion"),
        });
    }
    Ok(done)
}

fn progress_span(len: u64) -> tracing::Span {
    let span = tracing::info_span!("predict", indicatif.pb_show = tracing::field::Empty);
    span.pb_set_length(len);
    span
}

/// A folder under `parent` named by the UTC time, `YYYYMMDD-HHMMSS` (with `-2`, `-3`, …
/// appended when taken); not created.
pub fn new_output_dir(parent: &Path) -> PathBuf {
    unique_dir(&parent.join(timestamp()))
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn timestamp() -> String {
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "prediction".into())
}

/// `base`, or `base-2`, `base-3`, … when it exists already.
fn unique_dir(base: &Path) -> PathBuf {
    if !base.exists() {
        return base.to_path_buf();
    }
    (2..)
        .map(|k| PathBuf::from(format!("{}-{k}", base.display())))
        .find(|p| !p.exists())
        .unwrap_or_else(|| base.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operating_points_parse() {
        assert_eq!("".parse(), Ok(OperatingPointChoice::Default));
        assert_eq!("0.3".parse(), Ok(OperatingPointChoice::Threshold(0.3)));
        assert_eq!(
            "youden".parse(),
            Ok(OperatingPointChoice::Named("youden".into()))
        );
        assert!("1.5".parse::<OperatingPointChoice>().is_err());
    }

    #[test]
    fn logit_inverts_sigmoid() {
        for p in [0.01, 0.3, 0.5, 0.97] {
            assert!((sigmoid(logit_of(p)) - p).abs() < 1e-12);
        }
        assert!(logit_of(0.0).is_finite() && logit_of(1.0).is_finite());
    }
}

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
