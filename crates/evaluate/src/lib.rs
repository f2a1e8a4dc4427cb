//! External validation of a trained cxr model: its run folder's model applied to a
//! labelled set from elsewhere (another hospital's images, a public set), with the
//! figures a clinical evaluation asks for.
//!
//! Key items: [`evaluate`] with [`EvaluateOptions`] ([`JoinKey`]) writes an evaluation
//! folder:
//! - `evaluation.json` ([`cxr_runfolder::Evaluation`]): the model card's operating
//!   points applied unchanged (chosen on the run's own validation split), each with
//!   sensitivity, specificity, PPV, NPV and accuracy with Wilson and stratified
//!   bootstrap 95 % intervals, F1 with its bootstrap interval; the AUC with its DeLong
//!   interval; calibration before and after the card's temperature; the set's true
//!   prevalence against the label-free EM estimate of `cxr predict`'s site check, and
//!   the operating points re-derived for the true prevalence; subgroup tables; with
//!   `compare`, a paired DeLong test and McNemar's test against a second model.
//! - [`ablation`] ([`AblationInput`]): pairs of runs (one recipe without and with a
//!   change) evaluated that way, one evaluation folder each, summed up in
//!   `ablation.json` ([`cxr_runfolder::Ablation`]) with per-change medians.
//! - `metrics.json`: the set's [`cxr_runfolder::SplitMetrics`] at the run's own
//!   threshold — the shape of a run's `test` block, and on a run's own test split the
//!   same figures.
//! - `predictions.parquet` (one row per image, with the metadata columns),
//!   `subgroups.csv` and `subgroups.parquet`.
//!
//! Metadata (CSV or parquet) is read, joined to the images and grouped with polars:
//! by the image's path, file name or npz index; a numeric column with more than ten
//! values is cut into quantile bins. Rows that match no image and images without a
//! row are counted and listed, never dropped silently; duplicated keys and unknown
//! columns are errors naming the table and the columns it has.
//!
//! What this crate does not do: train, predict on unlabelled images (`cxr-predict`),
//! or render the report (`cxr-report` turns `evaluation.json` into `report.html`).
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod ablation;
mod error;
mod metadata;
mod score;
mod set;
mod tables;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cxr_metrics as m;
use cxr_predict::{OperatingPointChoice, Scorer, adapted_threshold, choose_threshold, site_check};
use cxr_runfolder::{
    ErrorCount, EstimateCi, EvaluatedCalibration, EvaluatedSet, Evaluation, ModelCard,
    ReliabilityPoint, RocPoint, SetPrevalence, SplitMetrics, names,
};
use tracing::{info, warn};

pub use ablation::{AblationInput, ablation};
pub use cxr_data::{DicomWindow, Split};
pub use error::{EvaluateError, Result};
pub use metadata::JoinKey;

/// Settings of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluateOptions {
    /// The evaluation folder; `None`: `RUN/evaluations/<UTC timestamp>/`.
    pub out: Option<PathBuf>,
    /// The split of a set that has splits (an npz file, a folder with `train/`, `val/`,
    /// `test/`); `None`: `test`.
    pub split: Option<Split>,
    /// A metadata table (`.csv` or `.parquet`) to join to the images.
    pub metadata: Option<PathBuf>,
    /// The table's column holding each image's key.
    pub join_on: Option<String>,
    /// What the key is; `None`: `index` for npz sets, `path` for folders.
    pub join_key: Option<JoinKey>,
    /// Metadata columns to report subgroups of.
    pub group_by: Vec<String>,
    /// Groups with fewer images are reported as too small, without figures.
    pub min_group_size: usize,
    /// Quantile bins of a numeric column.
    pub bins: usize,
    /// The operating point of the subgroup tables and the comparison.
    pub operating_point: OperatingPointChoice,
    /// A second run to compare with on the same images.
    pub compare: Option<PathBuf>,
    /// Bootstrap resamples (intervals and the prevalence estimate).
    pub resamples: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Device spec (`cpu`, `cuda[:N]`, `metal`, `auto`).
    pub device: String,
    /// Inference batch size; `None`: the model card's.
    pub batch_size: Option<usize>,
    /// How DICOM values map to 8-bit gray.
    pub dicom_window: DicomWindow,
}

impl Default for EvaluateOptions {
    fn default() -> Self {
        Self {
            out: None,
            split: None,
            metadata: None,
            join_on: None,
            join_key: None,
            group_by: Vec::new(),
            min_group_size: 30,
            bins: 4,
            operating_point: OperatingPointChoice::Default,
            compare: None,
            resamples: 2000,
            seed: 0,
            device: "cpu".into(),
            batch_size: None,
            dicom_window: DicomWindow::Auto,
        }
    }
}

/// What [`evaluate`] wrote.
#[derive(Debug, Clone)]
pub struct EvaluateOutcome {
    /// The evaluation folder.
    pub dir: PathBuf,
    /// Its `evaluation.json`.
    pub evaluation: Evaluation,
}

/// Level of every interval.
const CONFIDENCE: f64 = 0.95;

/// Evaluates the model of `run_dir` on the labelled set `data` and writes the
/// evaluation folder (see the crate doc).
///
/// Errors: an unusable run folder, a set that cannot be read or holds no readable
/// image, bad settings, an unusable metadata table (missing join or group-by column,
/// duplicated keys), an existing evaluation in `out`. A set with one class only is
/// not an error: the figures that need both classes are left out and
/// `evaluation.notes` says so.
pub fn evaluate(run_dir: &Path, data: &Path, opts: &EvaluateOptions) -> Result<EvaluateOutcome> {
    let start = Instant::now();
    check_options(opts)?;
    let scorer = Scorer::open(run_dir, &opts.device, opts.batch_size)?;
    let card = scorer.card().clone();
    let chosen = choose_threshold(&card, &opts.operating_point)?;
    let out = match &opts.out {
        Some(o) => o.clone(),
        None => cxr_predict::new_output_dir(&run_dir.join(names::EVALUATE_DIR)),
    };
    if out.join(names::EVALUATION).exists() {
        return Err(EvaluateError::setting(
            "out",
            format!(
                "{} already holds an evaluation; choose another folder",
                out.display()
            ),
        ));
    }
    let set = set::read_set(
        data,
        opts.split,
        card.preprocess.source_size,
        opts.dicom_window,
    )?;
    if set.images.is_empty() {
        let first = set
            .unreadable
            .first()
            .map(|(p, r)| format!("; first unreadable: {p}: {r}"))
            .unwrap_or_default();
        return Err(EvaluateError::setting(
            "data",
            format!(
                "{}: no readable image among {} files{first}",
                data.display(),
                set.files
            ),
        ));
    }
    let key = opts.join_key.unwrap_or(if set.kind == "npz" {
        JoinKey::Index
    } else {
        JoinKey::Path
    });
    if set.kind == "npz" && key != JoinKey::Index {
        return Err(EvaluateError::setting(
            "join-key",
            "npz images have no paths or file names: join on `index`",
        ));
    }
    // The metadata is checked before the model runs: a typo costs no inference.
    let joined = match (&opts.metadata, &opts.join_on) {
        (Some(table), Some(col)) => {
            let df = metadata::read_table(table)?;
            let (joined, info) = metadata::join(table, df, &set.keys, col, key)?;
            for g in &opts.group_by {
                if joined.column(g).is_err() {
                    return Err(EvaluateError::Metadata {
                        path: table.clone(),
                        reason: format!(
                            "--group-by: no column `{g}` (the table has: {})",
                            metadata::column_list(&joined)
                        ),
                    });
                }
            }
            if info.rows_without_image > 0 || info.images_without_row > 0 {
                warn!(
                    rows_without_image = info.rows_without_image,
                    images_without_row = info.images_without_row,
                    "{}: not every row matched an image and every image a row",
                    table.display()
                );
            }
            Some((table.clone(), joined, info))
        }
        (None, None) if opts.group_by.is_empty() => None,
        (None, _) => {
            return Err(EvaluateError::setting(
                "metadata",
                "--join-on and --group-by need a --metadata table",
            ));
        }
        (Some(_), None) => {
            return Err(EvaluateError::setting(
                "join-on",
                "--metadata needs --join-on COLUMN (the table's column holding each image's key)",
            ));
        }
    };

    info!(
        run = %run_dir.display(),
        data = %data.display(),
        images = set.images.len(),
        "evaluating"
    );
    let logits: Vec<f64> = scorer
        .logits(&set.images)?
        .into_iter()
        .map(f64::from)
        .collect();
    let labels = set.images.labels.clone();
    let probs: Vec<f64> = logits.iter().map(|&z| sigmoid(z)).collect();
    let both = labels.contains(&0) && labels.contains(&1);
    let mut notes = Vec::new();
    if !both {
        notes.push(format!(
            "The set holds {} images only: AUC, calibration, F1 and every figure that needs \
             both classes are not computed.",
            if labels.contains(&1) {
                "pneumonia"
            } else {
                "normal"
            }
        ));
    }
    let boot = m::BootstrapConfig {
        resamples: opts.resamples,
        seed: opts.seed,
        confidence: CONFIDENCE,
    };

    // The run's own threshold (its `default_…` point) for metrics.json.
    let run_threshold = card
        .operating_points
        .iter()
        .find(|p| p.name.starts_with("default_"))
        .map_or(0.5, |p| p.threshold);
    let metrics = if both {
        Some(split_metrics(&labels, &probs, run_threshold)?)
    } else {
        None
    };
    let auc = if both {
        let ci = m::auc_ci_delong(&labels, &probs).map_err(EvaluateError::metrics("AUC"))?;
        Some(EstimateCi {
            // The trapezoidal AUC, as metrics.json (DeLong's midrank sum may differ in
            // the last bit).
            estimate: m::roc_auc(&labels, &probs).map_err(EvaluateError::metrics("AUC"))?,
            low: ci.low,
            high: ci.high,
        })
    } else {
        None
    };
    let mut operating_points = Vec::new();
    for p in &card.operating_points {
        operating_points.push(score::evaluated_point(
            &p.name,
            p.threshold,
            "chosen on the run's validation split, applied unchanged",
            &labels,
            &probs,
            boot,
            (p.val_sensitivity, p.val_specificity),
        )?);
    }
    let calibration = if both {
        Some(calibration(&card, &labels, &logits)?)
    } else {
        None
    };
    let prevalence = prevalence_shift(&card, &labels, &probs, &logits, boot)?;
    let roc = if both {
        m::roc_curve(&labels, &probs, true)
            .map_err(EvaluateError::metrics("ROC curve"))?
            .into_iter()
            .map(|p| RocPoint {
                fpr: p.fpr,
                tpr: p.tpr,
            })
            .collect()
    } else {
        Vec::new()
    };

    let mut subgroups = Vec::new();
    if let Some((table, joined, _)) = &joined {
        for column in &opts.group_by {
            let (kind, groups) = metadata::groups(table, joined, column, opts.bins)?;
            subgroups.push(score::subgroup_table(
                column,
                kind,
                &groups,
                &labels,
                &probs,
                &chosen,
                opts.min_group_size,
            )?);
        }
    }

    let comparison = match &opts.compare {
        Some(other) => {
            let (c, probs_b) =
                compare(run_dir, &card, &set, &labels, &probs, &chosen, other, opts)?;
            Some((c, probs_b))
        }
        None => None,
    };

    std::fs::create_dir_all(&out).map_err(|e| EvaluateError::io(&out, e))?;
    tables::write_predictions(
        &out.join(names::EVALUATE_PREDICTIONS),
        &set.keys,
        &labels,
        &logits,
        card.temperature,
        &chosen,
        comparison.as_ref().map(|(_, p)| p.as_slice()),
        joined.as_ref().map(|(_, df, _)| df),
    )?;
    tables::write_subgroups(&out, &subgroups)?;
    if let Some(m) = &metrics {
        cxr_runfolder::write_json(&out.join(names::METRICS), m)?;
    }
    let evaluation = Evaluation {
        run: run_dir.display().to_string(),
        network: card.network.as_str().into(),
        card_derived: card.derived.is_some(),
        set: EvaluatedSet {
            source: set.source.display().to_string(),
            kind: set.kind.into(),
            split: set.split.clone(),
            files: set.files,
            images: labels.len(),
            positives: labels.iter().filter(|&&l| l == 1).count(),
            unreadable: set.unreadable.len(),
            errors: error_counts(&set.unreadable),
        },
        metrics,
        auc,
        operating_points,
        default_operating_point: card.default_operating_point.clone(),
        calibration,
        prevalence,
        roc,
        resamples: opts.resamples,
        seed: opts.seed,
        metadata: joined.map(|(_, _, info)| info),
        min_group_size: opts.min_group_size,
        subgroups,
        comparison: comparison.map(|(c, _)| c),
        notes,
        seconds: start.elapsed().as_secs_f64(),
        device: scorer.device_name(),
        cxr_version: env!("CARGO_PKG_VERSION").into(),
    };
    evaluation.write(&out.join(names::EVALUATION))?;
    info!(
        images = evaluation.set.images,
        auc = evaluation.auc.map(|a| a.estimate),
        "evaluation written to {}",
        out.display()
    );
    Ok(EvaluateOutcome {
        dir: out,
        evaluation,
    })
}

fn check_options(opts: &EvaluateOptions) -> Result<()> {
    if opts.bins < 2 {
        return Err(EvaluateError::setting("bins", "needs at least 2"));
    }
    if opts.resamples < 2 {
        return Err(EvaluateError::setting("resamples", "needs at least 2"));
    }
    if opts.min_group_size == 0 {
        return Err(EvaluateError::setting("min-group-size", "needs at least 1"));
    }
    Ok(())
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The `test` block of a run's `metrics.json`, computed the way training computes it.
fn split_metrics(labels: &[u8], probs: &[f64], threshold: f64) -> Result<SplitMetrics> {
    let e = EvaluateError::metrics("metrics");
    let r = m::binary_report(labels, probs, threshold).map_err(&e)?;
    let ci = m::auc_ci_delong(labels, probs).map_err(&e)?;
    let bins = m::Binning::default();
    Ok(SplitMetrics {
        accuracy: r.accuracy,
        precision: r.precision,
        recall: r.recall,
        specificity: r.specificity,
        f1: r.f1,
        auc: r.auc,
        threshold: r.threshold,
        tp: r.tp,
        fp: r.fp,
        tn: r.tn,
        fn_: r.fn_,
        auc_ci_low: Some(ci.low),
        auc_ci_high: Some(ci.high),
        average_precision: Some(m::average_precision(labels, probs).map_err(&e)?),
        brier: Some(m::brier(labels, probs).map_err(&e)?),
        log_loss: Some(m::log_loss(labels, probs).map_err(&e)?),
        ece: Some(m::ece(labels, probs, bins).map_err(&e)?),
        ece_pos: Some(m::ece_pos(labels, probs, bins).map_err(&e)?),
        mce: Some(m::mce(labels, probs, bins).map_err(&e)?),
    })
}

fn calibration(card: &ModelCard, labels: &[u8], logits: &[f64]) -> Result<EvaluatedCalibration> {
    let e = EvaluateError::metrics("calibration");
    let before: Vec<f64> = logits.iter().map(|&z| sigmoid(z)).collect();
    let after: Vec<f64> = m::apply_temperature(logits, card.temperature);
    let bins = m::Binning::default();
    let points = |probs: &[f64]| -> Result<Vec<ReliabilityPoint>> {
        Ok(
            m::reliability_bins(labels, probs, bins, m::CalibrationKind::Positive)
                .map_err(&e)?
                .into_iter()
                .map(|b| ReliabilityPoint {
                    lower: b.lower,
                    upper: b.upper,
                    count: b.count as u64,
                    confidence: b.confidence,
                    accuracy: b.accuracy,
                })
                .collect(),
        )
    };
    Ok(EvaluatedCalibration {
        temperature: card.temperature,
        ece_before: m::ece(labels, &before, bins).map_err(&e)?,
        ece_after: m::ece(labels, &after, bins).map_err(&e)?,
        brier_before: m::brier(labels, &before).map_err(&e)?,
        brier_after: m::brier(labels, &after).map_err(&e)?,
        bins_before: points(&before)?,
        bins_after: points(&after)?,
    })
}

fn prevalence_shift(
    card: &ModelCard,
    labels: &[u8],
    probs: &[f64],
    logits: &[f64],
    boot: m::BootstrapConfig,
) -> Result<SetPrevalence> {
    let truth = labels.iter().filter(|&&l| l == 1).count() as f64 / labels.len() as f64;
    let check = site_check(card, logits, boot.resamples, boot.seed)?;
    let mut adapted_points = Vec::new();
    for p in &card.operating_points {
        let Some(t) = adapted_threshold(card, p.threshold, truth) else {
            continue;
        };
        adapted_points.push(score::evaluated_point(
            &p.name,
            t,
            &format!(
                "{}'s threshold {:.4} moved to this set's prevalence {truth:.3}",
                p.name, p.threshold
            ),
            labels,
            probs,
            boot,
            (None, None),
        )?);
    }
    Ok(SetPrevalence {
        true_prevalence: truth,
        train_prevalence: card.data.prevalence_train,
        val_prevalence: card.data.prevalence_val,
        estimate_error: check.as_ref().map(|c| c.estimate - truth),
        truth_in_interval: check
            .as_ref()
            .map(|c| (c.ci_low..=c.ci_high).contains(&truth)),
        site_check: check,
        adapted_points,
    })
}

/// The second model on the same images: its probabilities (in the images' order) and
/// the paired tests.
#[allow(clippy::too_many_arguments)]
fn compare(
    run_a: &Path,
    card_a: &ModelCard,
    set_a: &set::LabelledSet,
    labels: &[u8],
    probs_a: &[f64],
    chosen_a: &cxr_predict::ChosenPoint,
    run_b: &Path,
    opts: &EvaluateOptions,
) -> Result<(cxr_runfolder::ModelComparison, Vec<f64>)> {
    let scorer = Scorer::open(run_b, &opts.device, None)?;
    let card_b = scorer.card().clone();
    let chosen_b = choose_threshold(&card_b, &opts.operating_point)?;
    let size_b = card_b.preprocess.source_size;
    let logits_b: Vec<f64> = if size_b == card_a.preprocess.source_size {
        scorer.logits(&set_a.images)?
    } else {
        let set_b = set::read_set(&set_a.source, opts.split, size_b, opts.dicom_window)?;
        let logits = scorer.logits(&set_b.images)?;
        // Same files in the same order; only readability could differ between sizes.
        let at: HashMap<(&str, usize), usize> = set_b
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| ((k.path.as_str(), k.frame), i))
            .collect();
        let mut out = Vec::with_capacity(set_a.keys.len());
        for k in &set_a.keys {
            let i = at.get(&(k.path.as_str(), k.frame)).ok_or_else(|| {
                EvaluateError::setting(
                    "compare",
                    format!(
                        "{} could be read for {} but not for {}",
                        k.path,
                        run_a.display(),
                        run_b.display()
                    ),
                )
            })?;
            out.push(logits[*i]);
        }
        out
    }
    .into_iter()
    .map(f64::from)
    .collect();
    let probs_b: Vec<f64> = logits_b.iter().map(|&z| sigmoid(z)).collect();
    let c = score::comparison(
        labels,
        probs_a,
        &probs_b,
        (chosen_a, run_a, card_a),
        (&chosen_b, run_b, &card_b),
    )?;
    Ok((c, probs_b))
}

fn error_counts(unreadable: &[(String, String)]) -> Vec<ErrorCount> {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, reason) in unreadable {
        *counts.entry(reason.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(reason, count)| ErrorCount {
            reason: reason.to_string(),
            count,
        })
        .collect()
}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
