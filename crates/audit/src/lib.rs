//! The audit of a trained model: where and why it fails, written to `<run>/audit/`.
//!
//! Key items: [`audit_run`] (a run folder's model on its data) and [`audit_model`] (any
//! [`cxr_models::Classifier`]), with [`AuditOptions`]; [`grad_cam`] and
//! [`occlusion_map`] explain single predictions ([`HeatMap`], [`TargetClass`]).
//!
//! What this crate does not do: train (`cxr-train`), or render the findings
//! (`cxr-report` reads the files below). The files' format is `cxr-runfolder`'s.
//!
//! Files (all written atomically):
//! - `quality.csv`: `split,index,label,prob,pred,contrast_rms,contrast_michelson,sharpness,brightness,entropy`
//!   per test image.
//! - `failure_modes.json`: error rates by quartile of each measure, tests of
//!   association, and a verdict per hypothesis.
//! - `gallery.csv` and `gallery/*.png`: the top-k false positives and negatives by
//!   loss and the most confident correct images of each class, each with the image
//!   upscaled, a Grad-CAM overlay and an occlusion-sensitivity overlay.
//! - `robustness.csv`: `corruption,severity,auc,sensitivity,specificity,accuracy`.
//! - `data_audit.json`: class balance per split, exact / near duplicates and patients
//!   with images in more than one split (folder data with patient ids).
//! - `audit.json`: settings and the time each stage took.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod error;
mod explain;
mod failure;
mod render;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use cxr_data::{Corruption, Dataset, ImageSet, MAX_SEVERITY, Normalize, Quality, Split};
use cxr_models::{Classifier, load_classifier, load_ensemble, parse_device};
use cxr_runfolder::{
    AuditMeta, AuditSettings, DataAudit, Duplicates, ModelCard, Overlay, PairCount, PatientAudit,
    PatientOverlapRow, PrevalenceShift, RunConfig, RunLock, SplitBalance, TrainConfig, names,
    write_atomic, write_json,
};

use tracing::info;
use tracing_indicatif::span_ext::IndicatifSpanExt;

pub use error::{AuditError, Result};
pub use explain::{HeatMap, TargetClass, grad_cam, occlusion_map};
pub use failure::ALPHA;
pub use render::{OVERLAY_ALPHA, turbo, write_gray_png, write_overlay_png};

/// Settings of an audit.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditOptions {
    /// Images per gallery group (false positives, false negatives, confident
    /// normals, confident pneumonia).
    pub gallery_k: usize,
    /// At most this many gallery images get Grad-CAM and occlusion maps.
    pub explain_limit: usize,
    /// Side of the gallery PNG tiles in pixels.
    pub tile_size: usize,
    /// Run the corruption sweep (6 corruptions × 5 severities on the test set).
    pub robustness: bool,
    /// Seed of the corruptions' randomness.
    pub seed: u64,
    /// Look for duplicate images within and across splits.
    pub duplicates: bool,
    /// Hamming-distance limit of near-duplicate candidates (64-bit dHash).
    pub max_hamming: u32,
    /// Pixel correlation a dHash candidate needs to count as a near duplicate.
    pub min_correlation: f64,
    /// Images per inference batch.
    pub batch_size: usize,
}

impl Default for AuditOptions {
    /// Gallery of 8 per group, explanations for up to 32 images, 224-px tiles, the
    /// robustness sweep with seed 0, duplicates with Hamming ≤ 4 and correlation
    /// ≥ 0.98, batches of 256.
    fn default() -> Self {
        Self {
            gallery_k: 8,
            explain_limit: 32,
            tile_size: 224,
            robustness: true,
            seed: 0,
            duplicates: true,
            max_hamming: cxr_data::NEAR_DUPLICATE_HAMMING,
            min_correlation: cxr_data::NEAR_DUPLICATE_CORRELATION,
            batch_size: 256,
        }
    }
}

/// What an audit found, in brief (the files hold everything).
#[derive(Debug, Clone)]
pub struct AuditSummary {
    /// The `audit/` folder.
    pub dir: PathBuf,
    /// Wall-clock seconds of the whole audit.
    pub seconds: f64,
    /// Seconds per stage, in order.
    pub stages: Vec<(String, f64)>,
    /// Each hypothesis' id, whether it is supported, and its one-sentence summary.
    pub hypotheses: Vec<(String, bool, String)>,
    /// Exact duplicate pairs between train and val, train and test, val and test.
    pub exact_across: Vec<(String, String, usize)>,
}

/// Audits the trained model in `run_dir` (its `config.json` and
/// `model.safetensors`) on `data`, writing `run_dir/audit/`. Never trains.
///
/// Errors: the run folder is locked by a live run, `config.json` or the weights are
/// missing or unreadable, or `data` is not the data the model was trained on (its
/// sha256 differs from the one in `config.json`).
pub fn audit_run(run_dir: &Path, data: &Dataset, opts: &AuditOptions) -> Result<AuditSummary> {
    let config_path = run_dir.join(names::CONFIG);
    if !config_path.is_file() {
        return Err(AuditError::io(
            &config_path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not found: is this a run folder?",
            ),
        ));
    }
    let _lock = RunLock::acquire(run_dir)?;
    let config = RunConfig::read(&config_path)?;
    if !config.data.sha256.is_empty() && config.data.sha256 != data.sha256 {
        return Err(AuditError::Run {
            path: config_path,
            reason: format!(
                "the model was trained on data with sha256 {}, but {} has {}",
                config.data.sha256,
                data.source.display(),
                data.sha256
            ),
        });
    }
    let cfg = config.train;
    let device = parse_device(&cfg.device)?;
    let weights_path = run_dir.join(names::MODEL);
    let card = ModelCard::of_run(run_dir)?;
    let loaded: cxr_models::Result<Box<dyn Classifier>> = match &card.members {
        Some(members) => {
            let weights: Vec<f64> = members.iter().map(|m| m.weight).collect();
            load_ensemble(cfg.model.as_str(), &weights_path, &weights, &device)
                .map(|e| Box::new(e) as Box<dyn Classifier>)
        }
        None => load_classifier(cfg.model.as_str(), &weights_path, &device),
    };
    let model = loaded.map_err(|e| AuditError::Run {
        path: weights_path.clone(),
        reason: e.to_string(),
    })?;
    audit_model(model.as_ref(), &cfg, &device, data, run_dir, opts)
}

/// Audits `model` (trained with `cfg`, whose image size, normalisation and threshold
/// are used; its weights on `device`) on `data`, writing `run_dir/audit/`.
pub fn audit_model(
    model: &dyn Classifier,
    cfg: &TrainConfig,
    device: &Device,
    data: &Dataset,
    run_dir: &Path,
    opts: &AuditOptions,
) -> Result<AuditSummary> {
    let start = Instant::now();
    let dir = run_dir.join(names::AUDIT_DIR);
    let gallery_dir = dir.join(names::AUDIT_GALLERY_DIR);
    std::fs::create_dir_all(&gallery_dir).map_err(|e| AuditError::io(&gallery_dir, e))?;
    let write = |name: &str, text: &str| write_atomic(&dir.join(name), text.as_bytes());
    let normalize = Normalize {
        mean: cfg.normalize_mean,
        std: cfg.normalize_std,
    };
    let ctx = Ctx {
        model,
        size: cfg.image_size,
        normalize,
        device,
        batch: opts.batch_size.max(1),
    };
    let mut stages: Vec<(String, f64)> = Vec::new();
    let mut lap = Instant::now();
    let mut stage = |name: &str, lap: &mut Instant| {
        stages.push((name.to_string(), lap.elapsed().as_secs_f64()));
        *lap = Instant::now();
    };

    // Predictions and quality measures on the test split.
    let test = &data.test;
    if test.is_empty() {
        return Err(AuditError::Config {
            field: "data".into(),
            reason: "the test split is empty: nothing to audit".into(),
        });
    }
    let sized_test = ctx.fit(test)?;
    let logits = ctx.logits(&sized_test)?;
    let probs: Vec<f64> = logits.iter().map(|&z| sigmoid(z as f64)).collect();
    let threshold = cfg.threshold;
    let quality: Vec<Quality> = (0..test.len())
        .map(|i| Quality::of(test.image(i), test.height, test.width))
        .collect();
    write(
        names::AUDIT_QUALITY,
        &quality_csv(test, &probs, &quality, threshold),
    )?;
    stage("predictions_and_quality", &mut lap);

    // Gallery with explanations.
    let gallery = gallery_rows(&test.labels, &logits, threshold, opts.gallery_k);
    clear_old_tiles(&gallery_dir)?;
    let csv = write_gallery(&ctx, &sized_test, &gallery, opts, &gallery_dir)?;
    write(names::AUDIT_GALLERY, &csv)?;
    stage("gallery_gradcam_occlusion", &mut lap);

    // Robustness sweep (before the failure modes, which use it as an
    // interventional check).
    let robust_rows = if opts.robustness {
        let (csv, rows) = robustness_csv(&ctx, test, &probs, threshold, opts.seed)?;
        write(names::AUDIT_ROBUSTNESS, &csv)?;
        stage("robustness", &mut lap);
        Some(rows)
    } else {
        None
    };

    let failure = failure::failure_modes(
        &test.labels,
        &probs,
        &quality,
        threshold,
        robust_rows.as_deref(),
    );
    write_json(&dir.join(names::AUDIT_FAILURE_MODES), &failure)?;
    stage("failure_modes", &mut lap);

    // Data audit.
    let (data_audit, exact_across) = data_audit(data, opts, cfg.exclude_duplicates);
    write_json(&dir.join(names::AUDIT_DATA), &data_audit)?;
    stage("data_audit", &mut lap);

    let seconds = start.elapsed().as_secs_f64();
    let meta = AuditMeta {
        model: Some(cfg.model.as_str().into()),
        image_size: Some(cfg.image_size as u64),
        threshold: Some(threshold),
        n_test: Some(test.len() as u64),
        options: Some(AuditSettings {
            gallery_k: opts.gallery_k,
            explain_limit: opts.explain_limit,
            tile_size: opts.tile_size,
            robustness: opts.robustness,
            seed: opts.seed,
            duplicates: opts.duplicates,
            max_hamming: opts.max_hamming,
            min_correlation: opts.min_correlation,
        }),
        overlay: Some(Overlay {
            colormap: "turbo (Mikhailov 2019, polynomial approximation): 0 = near black / blue (no evidence), 0.5 = green-yellow, 1 = dark red (strongest evidence for the explained class)".into(),
            alpha: Some(OVERLAY_ALPHA as f64),
        }),
        seconds: Some(seconds),
        stage_seconds: stages.iter().cloned().collect(),
    };
    write_json(&dir.join(names::AUDIT_META), &meta)?;
    let hypotheses = failure
        .hypotheses
        .iter()
        .map(|h| (h.id.clone(), h.supported, h.summary.clone()))
        .collect();
    info!(
        seconds = format!("{seconds:.1}"),
        "audit written to {}",
        dir.display()
    );
    Ok(AuditSummary {
        dir,
        seconds,
        stages,
        hypotheses,
        exact_across,
    })
}

/// The model and how to feed it.
struct Ctx<'a> {
    model: &'a dyn Classifier,
    size: usize,
    normalize: Normalize,
    device: &'a Device,
    batch: usize,
}

impl Ctx<'_> {
    /// The set at the model's input size.
    fn fit(&self, set: &ImageSet) -> Result<ImageSet> {
        if set.height == self.size && set.width == self.size {
            Ok(set.clone())
        } else {
            Ok(set.resized(self.size)?)
        }
    }

    /// Normalised tensor `[k, 1, H, W]` of images `range` of `set`.
    fn tensor(&self, set: &ImageSet, range: std::ops::Range<usize>) -> Result<Tensor> {
        let n = set.height * set.width;
        let (mean, std) = (self.normalize.mean, self.normalize.std);
        let v: Vec<f32> = set.images[range.start * n..range.end * n]
            .iter()
            .map(|&p| (p as f32 / 255.0 - mean) / std)
            .collect();
        Ok(
            Tensor::from_vec(v, (range.len(), 1, set.height, set.width), &Device::Cpu)?
                .to_device(self.device)?,
        )
    }

    /// Logits of every image of `set` (already at the model's size).
    fn logits(&self, set: &ImageSet) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(set.len());
        let mut i = 0;
        while i < set.len() {
            let j = (i + self.batch).min(set.len());
            let x = self.tensor(set, i..j)?;
            let z = self.model.logits(&x)?.detach();
            out.extend(
                z.to_dtype(DType::F32)?
                    .to_device(&Device::Cpu)?
                    .to_vec1::<f32>()?,
            );
            i = j;
        }
        Ok(out)
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn quality_csv(test: &ImageSet, probs: &[f64], quality: &[Quality], threshold: f64) -> String {
    let mut s = format!("split,index,label,prob,pred,{}\n", Quality::NAMES.join(","));
    for (i, q) in quality.iter().enumerate() {
        let v = q.values();
        let _ = writeln!(
            s,
            "test,{i},{},{},{},{},{},{},{},{}",
            test.labels[i],
            probs[i],
            u8::from(probs[i] >= threshold),
            v[0],
            v[1],
            v[2],
            v[3],
            v[4]
        );
    }
    s
}

/// One gallery entry.
#[derive(Debug, Clone)]
struct GalleryRow {
    kind: &'static str,
    prefix: &'static str,
    rank: usize,
    index: usize,
    label: u8,
    prob: f64,
    loss: f64,
    /// The predicted class, which the maps explain.
    target: TargetClass,
}

/// Top-`k` false positives and false negatives by loss (highest first), and the
/// `k` lowest-loss correct images of each class.
fn gallery_rows(labels: &[u8], logits: &[f32], threshold: f64, k: usize) -> Vec<GalleryRow> {
    let items: Vec<(usize, u8, f64, f64)> = labels
        .iter()
        .zip(logits)
        .enumerate()
        .map(|(i, (&y, &z))| (i, y, sigmoid(z as f64), logit_loss(z as f64, y as f64)))
        .collect();
    let groups: [(&'static str, &'static str, u8, bool, bool); 4] = [
        ("false_positive", "fp", 0, true, true),
        ("false_negative", "fn", 1, false, true),
        ("confident_normal", "cn", 0, false, false),
        ("confident_pneumonia", "cp", 1, true, false),
    ];
    let mut out = Vec::new();
    for (kind, prefix, label, pred_pos, worst) in groups {
        let mut g: Vec<&(usize, u8, f64, f64)> = items
            .iter()
            .filter(|(_, y, p, _)| *y == label && (*p >= threshold) == pred_pos)
            .collect();
        g.sort_by(|a, b| {
            let o = a.3.total_cmp(&b.3);
            (if worst { o.reverse() } else { o }).then(a.0.cmp(&b.0))
        });
        for (rank, &&(index, label, prob, loss)) in g.iter().take(k).enumerate() {
            out.push(GalleryRow {
                kind,
                prefix,
                rank: rank + 1,
                index,
                label,
                prob,
                loss,
                target: if pred_pos {
                    TargetClass::Pneumonia
                } else {
                    TargetClass::Normal
                },
            });
        }
    }
    out
}

fn clear_old_tiles(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| AuditError::io(dir, e))?;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "png") {
            std::fs::remove_file(&p).map_err(|e| AuditError::io(&p, e))?;
        }
    }
    Ok(())
}

/// Writes the tiles and returns `gallery.csv`.
fn write_gallery(
    ctx: &Ctx<'_>,
    sized_test: &ImageSet,
    rows: &[GalleryRow],
    opts: &AuditOptions,
    dir: &Path,
) -> Result<String> {
    let (h, w) = (sized_test.height, sized_test.width);
    let explained = rows.len().min(opts.explain_limit);
    // Grad-CAM for the explained rows in one batch.
    let cams = if explained > 0 {
        let indices: Vec<usize> = rows[..explained].iter().map(|r| r.index).collect();
        let subset = sized_test.subset(&indices)?;
        let x = ctx.tensor(&subset, 0..subset.len())?;
        let targets: Vec<TargetClass> = rows[..explained].iter().map(|r| r.target).collect();
        grad_cam(ctx.model, &x, &targets)?
    } else {
        Vec::new()
    };
    let patch = h.min(w).div_ceil(4).max(1);
    let stride = patch.div_ceil(2);
    let mut csv = format!("{}\n", cxr_runfolder::GALLERY_HEADER);
    let bar = progress_span("gallery", rows.len() as u64, "tiles");
    let _shown = bar.enter();
    for (k, r) in rows.iter().enumerate() {
        bar.pb_inc(1);
        let img: Vec<f32> = sized_test
            .image(r.index)
            .iter()
            .map(|&p| p as f32 / 255.0)
            .collect();
        let stem = format!("{}_{:02}", r.prefix, r.rank);
        let image_rel = format!("audit/gallery/{stem}.png");
        render::write_gray_png(&dir.join(format!("{stem}.png")), &img, h, w, opts.tile_size)?;
        let target = r.target;
        let (mut cam_rel, mut occ_rel, mut cam_max, mut occ_max) =
            (String::new(), String::new(), String::new(), String::new());
        if k < explained {
            let cam = &cams[k];
            render::write_overlay_png(
                &dir.join(format!("{stem}_gradcam.png")),
                &img,
                &cam.values,
                h,
                w,
                opts.tile_size,
            )?;
            cam_rel = format!("audit/gallery/{stem}_gradcam.png");
            cam_max = cam.raw_max.to_string();
            let occ = occlusion_map(
                ctx.model,
                &img,
                h,
                w,
                target,
                ctx.normalize,
                patch,
                stride,
                ctx.device,
            )?;
            render::write_overlay_png(
                &dir.join(format!("{stem}_occlusion.png")),
                &img,
                &occ.values,
                h,
                w,
                opts.tile_size,
            )?;
            occ_rel = format!("audit/gallery/{stem}_occlusion.png");
            occ_max = occ.raw_max.to_string();
        }
        let _ = writeln!(
            csv,
            "{},{},test,{},{},{},{},{image_rel},{cam_rel},{occ_rel},{},{},{cam_max},{occ_max}",
            r.kind,
            r.rank,
            r.index,
            r.label,
            r.prob,
            r.loss,
            u8::from(target == TargetClass::Pneumonia),
            target.as_str(),
        );
    }
    Ok(csv)
}

/// `robustness.csv`: the clean test set (`none`, severity 0) and every corruption at
/// severities 1–5, corrupted at the data's own resolution and then resized to the
/// model's input, as training data is.
fn robustness_csv(
    ctx: &Ctx<'_>,
    test: &ImageSet,
    clean_probs: &[f64],
    threshold: f64,
    seed: u64,
) -> Result<(String, Vec<failure::RobustRow>)> {
    let mut csv = format!("{}\n", cxr_runfolder::ROBUSTNESS_HEADER);
    let mut rows = Vec::new();
    let mut row = |name: &str, severity: u8, parameter: Option<f64>, probs: &[f64]| -> Result<()> {
        let split = || format!("test ({name}, severity {severity})");
        let c = cxr_metrics::confusion(&test.labels, probs, threshold).map_err(|source| {
            AuditError::Metrics {
                split: split(),
                source,
            }
        })?;
        // AUC needs both classes; sensitivity / specificity need their class
        let auc = cxr_metrics::roc_auc(&test.labels, probs)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let frac = |a: u64, b: u64| {
            if b == 0 {
                String::new()
            } else {
                (a as f64 / b as f64).to_string()
            }
        };
        let n = c.tp + c.fp + c.tn + c.fn_;
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        rows.push(failure::RobustRow {
            corruption: name.to_string(),
            severity,
            sensitivity: ratio(c.tp, c.tp + c.fn_),
            specificity: ratio(c.tn, c.tn + c.fp),
        });
        let _ = writeln!(
            csv,
            "{name},{severity},{auc},{},{},{},{}",
            frac(c.tp, c.tp + c.fn_),
            frac(c.tn, c.tn + c.fp),
            frac(c.tp + c.tn, n),
            parameter.map(|p| p.to_string()).unwrap_or_default(),
        );
        Ok(())
    };
    row("none", 0, None, clean_probs)?;
    let bar = progress_span(
        "robustness",
        (Corruption::ALL.len() * MAX_SEVERITY as usize) as u64,
        "corrupted test sets",
    );
    let _shown = bar.enter();
    for c in Corruption::ALL {
        for s in 1..=MAX_SEVERITY {
            bar.pb_inc(1);
            let corrupted = ctx.fit(&test.corrupted(c, s, seed)?)?;
            let probs: Vec<f64> = ctx
                .logits(&corrupted)?
                .iter()
                .map(|&z| sigmoid(z as f64))
                .collect();
            row(c.as_str(), s, c.parameter(s), &probs)?;
        }
    }
    Ok((csv, rows))
}

fn pair_count(c: &cxr_data::DuplicateCount) -> PairCount {
    PairCount {
        a: c.a.clone(),
        b: c.b.clone(),
        pairs: c.pairs as u64,
        images_a: Some(c.images_a as u64),
        images_b: Some(c.images_b as u64),
        candidates: Some(c.candidates as u64),
        examples: c.examples.clone(),
    }
}

/// `data_audit.json` and the exact cross-split pair counts.
fn data_audit(
    data: &Dataset,
    opts: &AuditOptions,
    excluded: bool,
) -> (DataAudit, Vec<(String, String, usize)>) {
    let splits: Vec<SplitBalance> = Split::ALL
        .iter()
        .map(|&s| {
            let set = data.split(s);
            let [normal, pneumonia] = set.class_counts();
            SplitBalance {
                split: s.as_str().into(),
                n: set.len() as u64,
                normal: normal as u64,
                pneumonia: pneumonia as u64,
                prevalence: (!set.is_empty()).then(|| pneumonia as f64 / set.len() as f64),
            }
        })
        .collect();
    let prevalence = |s: Split| {
        let set = data.split(s);
        let [_, p] = set.class_counts();
        (!set.is_empty()).then(|| p as f64 / set.len() as f64)
    };
    let shift: Vec<PrevalenceShift> = [
        (Split::Train, Split::Val),
        (Split::Train, Split::Test),
        (Split::Val, Split::Test),
    ]
    .iter()
    .map(|&(a, b)| PrevalenceShift {
        a: a.as_str().into(),
        b: b.as_str().into(),
        difference: prevalence(a).zip(prevalence(b)).map(|(pa, pb)| pb - pa),
    })
    .collect();
    let mut exact_across = Vec::new();
    let duplicates = if opts.duplicates {
        let sets: Vec<(&str, &ImageSet)> = Split::ALL
            .iter()
            .map(|&s| (s.as_str(), data.split(s)))
            .collect();
        let r = cxr_data::find_duplicates(&sets, opts.max_hamming, opts.min_correlation);
        exact_across = r
            .exact_across
            .iter()
            .map(|c| (c.a.clone(), c.b.clone(), c.pairs))
            .collect();
        let within = |v: &[cxr_data::DuplicateCount]| {
            v.iter().map(|c| (c.a.clone(), c.pairs as u64)).collect()
        };
        Some(Duplicates {
            exact_within: within(&r.exact_within),
            exact_across: r.exact_across.iter().map(pair_count).collect(),
            near_within: within(&r.near_within),
            near_across: r.near_across.iter().map(pair_count).collect(),
            exact_within_detail: r.exact_within.iter().map(pair_count).collect(),
            near_within_detail: r.near_within.iter().map(pair_count).collect(),
            method: format!(
                "exact: hash of pixels (confirmed byte by byte); near: 64-bit dHash (9x8 area-averaged grid) hamming <= {} confirmed by pixel correlation >= {}, exact pairs included",
                r.max_hamming, r.min_correlation
            ),
            max_hamming: Some(r.max_hamming),
            min_correlation: Some(r.min_correlation),
            counts_note: Some("pairs: matching (a, b) pairs (within a split: i < j); candidates: pairs within the dHash limit before the correlation check; images_a / images_b: distinct images of a / b with a match; examples: up to 20 (index in a, index in b)".into()),
        })
    } else {
        None
    };
    // `--exclude-duplicates` drops training images only (the plan is deterministic,
    // so it is recomputed here rather than read back).
    let (excluded_count, excluded_note) = if excluded {
        let plan = cxr_data::plan_duplicate_exclusion(
            &data.train,
            &[&data.val, &data.test],
            cxr_data::NEAR_DUPLICATE_HAMMING,
            cxr_data::NEAR_DUPLICATE_CORRELATION,
        );
        (
            plan.removed.len(),
            format!(
                "trained with --exclude-duplicates: {} training images left out ({} duplicating a validation or test image, {} repeated copies within train); validation and test unchanged",
                plan.removed.len(),
                plan.across,
                plan.within
            ),
        )
    } else {
        (
            0,
            "nothing excluded (train with --exclude-duplicates to leave out training images that duplicate validation or test images)".to_string(),
        )
    };
    (
        DataAudit {
            splits,
            prevalence_shift: Some(shift),
            duplicates,
            excluded: excluded_count as u64,
            excluded_note: Some(excluded_note),
            patients: Some(patient_audit(data)),
        },
        exact_across,
    )
}

/// `data_audit.json` → `patients`: the patients with images in more than one split.
fn patient_audit(data: &Dataset) -> PatientAudit {
    let Some(ids) = &data.patients else {
        return PatientAudit {
            available: false,
            note: "no patient ids (npz data has none, or the folder data was loaded without \
                   them): nothing to check"
                .into(),
            ..PatientAudit::default()
        };
    };
    let overlap: Vec<PatientOverlapRow> = ids
        .overlap()
        .into_iter()
        .map(|o| PatientOverlapRow {
            patient: o.patient,
            images: o
                .images
                .into_iter()
                .map(|(s, n)| (s.as_str().to_string(), n as u64))
                .collect(),
        })
        .collect();
    PatientAudit {
        available: true,
        source: Some(ids.source.clone()),
        patients: Split::ALL
            .iter()
            .map(|&s| (s.as_str().to_string(), ids.patients_in(s) as u64))
            .collect(),
        unmatched_images: ids.unmatched as u64,
        overlapping: overlap.len() as u64,
        note: format!(
            "patient ids from the {}; images matching none are each their own patient ({}); \
             overlap: patients with images in more than one of the splits used",
            ids.source, ids.unmatched
        ),
        overlap,
    }
}

/// A span that asks for a progress bar (`indicatif.pb_show`, drawn where the program
/// installs `tracing-indicatif`) over `len` units of a stage.
fn progress_span(stage: &'static str, len: u64, unit: &str) -> tracing::Span {
    let span = tracing::info_span!("audit", stage, indicatif.pb_show = tracing::field::Empty);
    let template =
        format!("{{span_fields}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{elapsed}}<{{eta}})");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        span.pb_set_style(&style.progress_chars("=> "));
    }
    span.pb_set_length(len);
    span
}

/// Binary cross-entropy of one logit against a 0/1 label (stable for large |z|).
fn logit_loss(z: f64, y: f64) -> f64 {
    z.max(0.0) - z * y + (-z.abs()).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_csv_header_is_the_run_folder_formats() {
        let test = ImageSet {
            images: vec![0; 4],
            labels: vec![0],
            height: 2,
            width: 2,
        };
        let q = [Quality::of(test.image(0), 2, 2)];
        let csv = quality_csv(&test, &[0.5], &q, 0.5);
        assert_eq!(csv.lines().next(), Some(cxr_runfolder::QUALITY_HEADER));
    }

    #[test]
    fn gallery_picks_worst_errors_and_most_confident_hits() {
        // labels, logits: fp at 1 (z=2), 3 (z=0.5); fn at 4 (z=-3); correct others
        let labels = [0, 0, 1, 0, 1, 1, 0];
        let logits = [-4.0, 2.0, 3.0, 0.5, -3.0, 0.2, -0.1];
        let rows = gallery_rows(&labels, &logits, 0.5, 8);
        let kinds: Vec<(&str, usize, usize)> =
            rows.iter().map(|r| (r.kind, r.rank, r.index)).collect();
        assert_eq!(
            kinds,
            vec![
                ("false_positive", 1, 1),
                ("false_positive", 2, 3),
                ("false_negative", 1, 4),
                ("confident_normal", 1, 0),
                ("confident_normal", 2, 6),
                ("confident_pneumonia", 1, 2),
                ("confident_pneumonia", 2, 5),
            ]
        );
        assert_eq!(rows[0].target, TargetClass::Pneumonia);
        assert_eq!(rows[2].target, TargetClass::Normal);
        assert!(rows[0].loss > rows[1].loss);
        let top1 = gallery_rows(&labels, &logits, 0.5, 1);
        assert_eq!(top1.len(), 4);
    }
}

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
