//! The `audit/` files written by cxr-audit (see the run-folder contract
//! in `docs/architecture.md`). Every file is optional: a missing one reads as `None`
//! and its report section says "not computed"; a malformed one is an error naming
//! the file and the line or field.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::io::{Csv, format_err, json, read_optional};
use crate::{Result, names};

/// The header of `audit/quality.csv`.
pub const QUALITY_HEADER: &str =
    "split,index,label,prob,pred,contrast_rms,contrast_michelson,sharpness,brightness,entropy";
/// The header of `audit/gallery.csv`.
pub const GALLERY_HEADER: &str = "kind,rank,split,index,label,prob,loss,image,gradcam,occlusion,pred,explained_class,gradcam_raw_max,occlusion_max_drop";
/// The header of `audit/robustness.csv`.
pub const ROBUSTNESS_HEADER: &str =
    "corruption,severity,auc,sensitivity,specificity,accuracy,parameter";

/// One row of `audit/quality.csv`: image-quality measures of a test image.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityRow {
    /// Split (`test`).
    pub split: String,
    /// Position in its split.
    pub index: usize,
    /// 0 = normal, 1 = pneumonia.
    pub label: u8,
    /// P(pneumonia).
    pub prob: f64,
    /// Predicted class at 0.5.
    pub pred: u8,
    /// RMS contrast.
    pub contrast_rms: f64,
    /// Michelson contrast.
    pub contrast_michelson: f64,
    /// Variance of the 3×3 Laplacian.
    pub sharpness: f64,
    /// Mean intensity in [0, 1].
    pub brightness: f64,
    /// Histogram entropy in bits.
    pub entropy: f64,
}

/// A test of association in `failure_modes.json` (`fp_test`, `fn_test`, and the
/// optional `fp_fisher`, `fn_fisher`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssociationTest {
    /// Which test (`chi_square_trend`, `fisher_exact_bottom_vs_top_quartile`).
    pub test: String,
    /// How it was computed, in words, when recorded.
    #[serde(default)]
    pub method: Option<String>,
    /// p-value (`null` when the test could not be computed).
    pub p_value: Option<f64>,
    /// Trend statistic z (trend tests; z > 0: the rate rises with the measure).
    #[serde(default)]
    pub z: Option<f64>,
    /// The trend test's χ², when computed.
    #[serde(default)]
    pub chi_square: Option<f64>,
    /// Odds ratio (Fisher's test).
    #[serde(default)]
    pub odds_ratio: Option<f64>,
    /// Fisher's 2×2 table (rows bottom, top quartile; columns error, no error).
    #[serde(default)]
    pub table: Option<[[u64; 2]; 2]>,
    /// Why the test could not be computed.
    #[serde(default)]
    pub error: Option<String>,
}

/// A logistic regression of an error on the standardised measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logit {
    /// Images in the group, when recorded.
    #[serde(default)]
    pub n: Option<u64>,
    /// Errors in the group, when recorded.
    #[serde(default)]
    pub events: Option<u64>,
    /// What the predictor is, in words, when recorded.
    #[serde(default)]
    pub predictor: Option<String>,
    /// Coefficient per SD of the measure.
    pub coef: Option<f64>,
    /// Its standard error, when recorded.
    #[serde(default)]
    pub se: Option<f64>,
    /// Lower end of the coefficient's 95 % Wald interval.
    pub ci_low: Option<f64>,
    /// Upper end of the coefficient's 95 % Wald interval.
    pub ci_high: Option<f64>,
    /// Wald p-value.
    pub p_value: Option<f64>,
    /// `exp(coef)`, when recorded.
    #[serde(default)]
    pub odds_ratio_per_sd: Option<f64>,
    /// The intercept, when recorded.
    #[serde(default)]
    pub intercept: Option<f64>,
    /// The measure's mean in the group (standardisation), when recorded.
    #[serde(default)]
    pub mean: Option<f64>,
    /// The measure's SD in the group (standardisation), when recorded.
    #[serde(default)]
    pub sd: Option<f64>,
    /// Why the regression could not be fitted.
    #[serde(default)]
    pub error: Option<String>,
}

/// One quartile of a measure within one class: images and errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupQuartile {
    /// Quartile, 1–4.
    pub q: u8,
    /// Lower edge.
    pub lower: Option<f64>,
    /// Upper edge.
    pub upper: Option<f64>,
    /// Images of the class in the quartile.
    pub n: u64,
    /// False positives among them (the normals' table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<u64>,
    /// False negatives among them (the pneumonia images' table).
    #[serde(rename = "fn", default, skip_serializing_if = "Option::is_none")]
    pub fn_: Option<u64>,
    /// Errors / images (`null` when empty).
    pub rate: Option<f64>,
}

/// Quartiles of a measure within one class, on which the tests are computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupTable {
    /// The within-class quartile edges.
    pub quartile_edges: Vec<Option<f64>>,
    /// The four quartiles.
    pub quartiles: Vec<GroupQuartile>,
}

/// Error rates in one quartile of a measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quartile {
    /// 1..4.
    pub q: u8,
    /// Lower edge of the measure (`null` when undefined).
    pub lower: Option<f64>,
    /// Upper edge of the measure (`null` when undefined).
    pub upper: Option<f64>,
    /// Normal test images in the quartile.
    pub normals: u64,
    /// False positives among them.
    pub fp: u64,
    /// fp / normals (`null` when there are no normals).
    pub fp_rate: Option<f64>,
    /// Pneumonia test images in the quartile.
    pub pneumonia: u64,
    /// False negatives among them.
    pub r#fn: u64,
    /// fn / pneumonia (`null` when there are none).
    pub fn_rate: Option<f64>,
}

/// Failure rates by quartile of one measure, with tests of association.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasureModes {
    /// Measure name (`sharpness`, `contrast_rms`, ...).
    pub measure: String,
    /// The 25th, 50th and 75th percentiles.
    pub quartile_edges: Vec<Option<f64>>,
    /// The four quartiles, lowest first.
    pub quartiles: Vec<Quartile>,
    /// Association of false positives with the measure.
    pub fp_test: AssociationTest,
    /// Association of false negatives with the measure.
    pub fn_test: AssociationTest,
    /// Fisher's exact test of FP, bottom vs top quartile, when recorded.
    #[serde(default)]
    pub fp_fisher: Option<AssociationTest>,
    /// Fisher's exact test of FN, bottom vs top quartile, when recorded.
    #[serde(default)]
    pub fn_fisher: Option<AssociationTest>,
    /// Logistic regression of FP on the standardised measure among normals.
    pub logit_fp: Logit,
    /// Logistic regression of FN on the standardised measure among pneumonia.
    pub logit_fn: Logit,
    /// The measure's own AUC for pneumonia vs normal, when recorded.
    #[serde(default)]
    pub class_auc: Option<f64>,
    /// Quartiles within the normals with their false positives, when recorded.
    #[serde(default)]
    pub fp_by_quartile: Option<GroupTable>,
    /// Quartiles within the pneumonia images with their false negatives, when recorded.
    #[serde(default)]
    pub fn_by_quartile: Option<GroupTable>,
}

/// One of the study's hypotheses and what the data says about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    /// Stable id, e.g. `blur_causes_fp`.
    pub id: String,
    /// The hypothesis in words.
    pub statement: String,
    /// The measure it is tested with.
    pub measure: String,
    /// The error it is about (`fp`, `fn`), when recorded.
    #[serde(default)]
    pub outcome: Option<String>,
    /// The expected direction.
    pub direction: String,
    /// Whether the data supports it.
    pub supported: bool,
    /// `supported`, `not supported`, `opposite direction` or `not testable`, when
    /// recorded.
    #[serde(default)]
    pub verdict: Option<String>,
    /// One sentence with the numbers.
    pub summary: String,
    /// The numbers behind the verdict, when it could be tested.
    #[serde(default)]
    pub evidence: Option<Evidence>,
    /// The robustness sweep's corruptions of the same measure, when run.
    #[serde(default)]
    pub intervention: Option<Vec<Intervention>>,
    /// The measure's own AUC for pneumonia vs normal, when recorded.
    #[serde(default)]
    pub class_auc: Option<f64>,
}

/// `failure_modes.json` → `hypotheses[].evidence`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Logistic-regression coefficient per SD.
    pub coef: Option<f64>,
    /// `exp(coef)`.
    pub odds_ratio_per_sd: Option<f64>,
    /// Lower end of the odds ratio's 95 % interval.
    pub ci_low: Option<f64>,
    /// Upper end of the odds ratio's 95 % interval.
    pub ci_high: Option<f64>,
    /// Wald p-value.
    pub p_value: Option<f64>,
    /// The trend test's p-value.
    pub trend_p_value: Option<f64>,
    /// Fisher's p-value (bottom vs top quartile).
    pub fisher_p_value: Option<f64>,
    /// Error rate in the bottom within-class quartile.
    pub rate_bottom_quartile: Option<f64>,
    /// Error rate in the top within-class quartile.
    pub rate_top_quartile: Option<f64>,
}

/// `failure_modes.json` → `hypotheses[].intervention[]`: a corruption that moves the
/// measure, and the error rate it gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intervention {
    /// The corruption (`gaussian_blur`, …).
    pub corruption: String,
    /// `lower` or `higher`: how it moves the measure.
    pub moves_measure: String,
    /// Error rate clean and at severities 1–5.
    pub error_rate: Vec<Option<f64>>,
    /// Severity 5 minus clean.
    pub change: Option<f64>,
    /// Whether the change has the sign the association predicts.
    pub consistent_with_association: Option<bool>,
}

impl Hypothesis {
    /// The verdict in words: `verdict` when recorded, else from `supported`.
    pub fn verdict_text(&self) -> String {
        match &self.verdict {
            Some(v) => v.clone(),
            None if self.supported => "supported".into(),
            None => "not supported".into(),
        }
    }
}

/// `audit/failure_modes.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureModes {
    /// Decision threshold the errors use.
    pub threshold: f64,
    /// One entry per measure.
    pub measures: Vec<MeasureModes>,
    /// The hypotheses' verdicts.
    pub hypotheses: Vec<Hypothesis>,
    /// How a verdict is reached, when recorded.
    #[serde(default)]
    pub decision_rule: Option<String>,
    /// How the measures are defined, when recorded.
    #[serde(default)]
    pub measures_note: Option<String>,
    /// Test images, when recorded.
    #[serde(default)]
    pub n_test: Option<u64>,
    /// False positives at the threshold, when recorded.
    #[serde(default)]
    pub false_positives: Option<u64>,
    /// Normal test images, when recorded.
    #[serde(default)]
    pub normals: Option<u64>,
    /// Pneumonia test images, when recorded.
    #[serde(default)]
    pub pneumonia: Option<u64>,
    /// False negatives at the threshold, when recorded.
    #[serde(default)]
    pub false_negatives: Option<u64>,
}

/// What a gallery tile shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GalleryKind {
    /// A normal image called pneumonia.
    FalsePositive,
    /// A pneumonia image called normal.
    FalseNegative,
    /// A normal image called normal with the lowest loss.
    ConfidentNormal,
    /// A pneumonia image called pneumonia with the lowest loss.
    ConfidentPneumonia,
}

impl GalleryKind {
    /// All kinds in report order.
    pub const ALL: [GalleryKind; 4] = [
        GalleryKind::FalsePositive,
        GalleryKind::FalseNegative,
        GalleryKind::ConfidentNormal,
        GalleryKind::ConfidentPneumonia,
    ];

    /// The name used in `gallery.csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            GalleryKind::FalsePositive => "false_positive",
            GalleryKind::FalseNegative => "false_negative",
            GalleryKind::ConfidentNormal => "confident_normal",
            GalleryKind::ConfidentPneumonia => "confident_pneumonia",
        }
    }

    /// A heading for the report.
    pub fn title(self) -> &'static str {
        match self {
            GalleryKind::FalsePositive => {
                "False positives (normal called pneumonia), highest loss first"
            }
            GalleryKind::FalseNegative => "False negatives (pneumonia missed), highest loss first",
            GalleryKind::ConfidentNormal => "Confidently correct normals (contrast)",
            GalleryKind::ConfidentPneumonia => "Confidently correct pneumonia (contrast)",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One row of `audit/gallery.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct GalleryRow {
    /// What the tile shows.
    pub kind: GalleryKind,
    /// 1-based rank within its kind.
    pub rank: usize,
    /// Split.
    pub split: String,
    /// Position in its split.
    pub index: usize,
    /// True label.
    pub label: u8,
    /// P(pneumonia).
    pub prob: f64,
    /// Binary cross-entropy.
    pub loss: f64,
    /// Upscaled image, relative to the run folder.
    pub image: String,
    /// Grad-CAM overlay, relative to the run folder (`None` when the field is empty).
    pub gradcam: Option<String>,
    /// Occlusion overlay, relative to the run folder (`None` when the field is empty).
    pub occlusion: Option<String>,
    /// Predicted class (0/1), when recorded.
    pub pred: Option<u8>,
}

/// One row of `audit/robustness.csv`. Figures are `None` where the file leaves them
/// empty (a class missing from the test split).
#[derive(Debug, Clone, PartialEq)]
pub struct RobustnessRow {
    /// Corruption (`none`, `gaussian_blur`, ...).
    pub corruption: String,
    /// 0 for `none`, else 1..5.
    pub severity: u32,
    /// ROC AUC.
    pub auc: Option<f64>,
    /// Sensitivity at the run's threshold.
    pub sensitivity: Option<f64>,
    /// Specificity at the run's threshold.
    pub specificity: Option<f64>,
    /// Accuracy at the run's threshold.
    pub accuracy: Option<f64>,
    /// The corruption's parameter at this severity (blur sigma, JPEG quality, ...),
    /// when recorded.
    pub parameter: Option<f64>,
}

/// Overlay rendering recorded in `audit/audit.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overlay {
    /// Colormap name (e.g. `turbo`).
    pub colormap: String,
    /// Overlay opacity.
    #[serde(default)]
    pub alpha: Option<f64>,
}

/// `audit/audit.json`: how the audit ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditMeta {
    /// Model audited.
    #[serde(default)]
    pub model: Option<String>,
    /// Input size.
    #[serde(default)]
    pub image_size: Option<u64>,
    /// Decision threshold.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Test images.
    #[serde(default)]
    pub n_test: Option<u64>,
    /// Overlay rendering.
    #[serde(default)]
    pub overlay: Option<Overlay>,
    /// Seconds the audit took.
    #[serde(default)]
    pub seconds: Option<f64>,
    /// Seconds per stage.
    #[serde(default)]
    pub stage_seconds: BTreeMap<String, f64>,
    /// The audit's settings, when recorded.
    #[serde(default)]
    pub options: Option<AuditSettings>,
}

/// `audit/audit.json` → `options`: the settings the audit ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditSettings {
    /// Images per gallery group.
    pub gallery_k: usize,
    /// At most this many gallery images got Grad-CAM and occlusion maps.
    pub explain_limit: usize,
    /// Side of the gallery tiles in pixels.
    pub tile_size: usize,
    /// Whether the corruption sweep ran.
    pub robustness: bool,
    /// Seed of the corruptions.
    pub seed: u64,
    /// Whether duplicates were searched for.
    pub duplicates: bool,
    /// Hamming-distance limit of near-duplicate candidates.
    pub max_hamming: u32,
    /// Pixel correlation a candidate needs to count as a near duplicate.
    pub min_correlation: f64,
}

/// Class counts of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitBalance {
    /// Split name.
    pub split: String,
    /// Images.
    pub n: u64,
    /// Normal images.
    pub normal: u64,
    /// Pneumonia images.
    pub pneumonia: u64,
    /// Fraction of pneumonia (`null` for an empty split).
    pub prevalence: Option<f64>,
}

/// Prevalence difference between two splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrevalenceShift {
    /// First split.
    pub a: String,
    /// Second split.
    pub b: String,
    /// prevalence(b) − prevalence(a) (`null` when undefined).
    pub difference: Option<f64>,
}

/// Duplicate pairs between two splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairCount {
    /// First split.
    pub a: String,
    /// Second split.
    pub b: String,
    /// Duplicate pairs.
    pub pairs: u64,
    /// Distinct images of `a` with a match, when recorded.
    #[serde(default)]
    pub images_a: Option<u64>,
    /// Distinct images of `b` with a match, when recorded.
    #[serde(default)]
    pub images_b: Option<u64>,
    /// Pairs within the dHash limit before the correlation check, when recorded.
    #[serde(default)]
    pub candidates: Option<u64>,
    /// Up to 20 example pairs (index in `a`, index in `b`), when recorded.
    #[serde(default)]
    pub examples: Vec<(usize, usize)>,
}

/// Duplicates found by hashing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Duplicates {
    /// Exact duplicates within each split.
    pub exact_within: BTreeMap<String, u64>,
    /// Exact duplicates across splits.
    pub exact_across: Vec<PairCount>,
    /// Near duplicates within each split, when recorded.
    #[serde(default)]
    pub near_within: BTreeMap<String, u64>,
    /// Near duplicates across splits.
    #[serde(default)]
    pub near_across: Vec<PairCount>,
    /// How duplicates were found.
    pub method: String,
    /// Each split's exact duplicate pairs within itself, with examples.
    #[serde(default)]
    pub exact_within_detail: Vec<PairCount>,
    /// Each split's near duplicate pairs within itself, with examples.
    #[serde(default)]
    pub near_within_detail: Vec<PairCount>,
    /// The dHash Hamming-distance limit used.
    #[serde(default)]
    pub max_hamming: Option<u32>,
    /// The pixel correlation limit used.
    #[serde(default)]
    pub min_correlation: Option<f64>,
    /// What the counts mean.
    #[serde(default)]
    pub counts_note: Option<String>,
}

/// `audit/data_audit.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataAudit {
    /// Class balance per split.
    pub splits: Vec<SplitBalance>,
    /// Duplicates (`null` when the audit ran without the duplicate search).
    pub duplicates: Option<Duplicates>,
    /// Prevalence differences between splits, when recorded.
    #[serde(default)]
    pub prevalence_shift: Option<Vec<PrevalenceShift>>,
    /// Images excluded from training/evaluation because of duplicates.
    #[serde(default)]
    pub excluded: u64,
    /// What was excluded, in words.
    #[serde(default)]
    pub excluded_note: Option<String>,
    /// Patients in more than one split, when recorded.
    #[serde(default)]
    pub patients: Option<PatientAudit>,
}

/// `audit/data_audit.json` → `patients`: patients with images in more than one split.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PatientAudit {
    /// Whether the data has patient ids (npz data has none: nothing to check).
    pub available: bool,
    /// Where the ids came from (`pattern REGEX` or `table PATH`), when available.
    pub source: Option<String>,
    /// Distinct patients per split.
    pub patients: BTreeMap<String, u64>,
    /// Images no pattern or table row matched, each counted as its own patient.
    pub unmatched_images: u64,
    /// Patients with images in more than one split.
    pub overlapping: u64,
    /// Each of them, sorted by id.
    pub overlap: Vec<PatientOverlapRow>,
    /// What was checked, in words.
    pub note: String,
}

/// One patient with images in more than one split.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PatientOverlapRow {
    /// The patient id.
    pub patient: String,
    /// Images per split holding the patient (only those splits).
    pub images: BTreeMap<String, u64>,
}

/// The `audit/` files present in a run folder.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    /// `quality.csv`.
    pub quality: Option<Vec<QualityRow>>,
    /// `failure_modes.json`.
    pub failure_modes: Option<FailureModes>,
    /// `gallery.csv`.
    pub gallery: Option<Vec<GalleryRow>>,
    /// `robustness.csv`.
    pub robustness: Option<Vec<RobustnessRow>>,
    /// `data_audit.json`.
    pub data_audit: Option<DataAudit>,
    /// `audit.json`.
    pub meta: Option<AuditMeta>,
}

impl Audit {
    /// Reads whichever `audit/` files exist under the run folder `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let a = dir.join(names::AUDIT_DIR);
        Ok(Self {
            quality: read_quality(&a.join(names::AUDIT_QUALITY))?,
            failure_modes: read_failure_modes(&a.join(names::AUDIT_FAILURE_MODES))?,
            gallery: read_gallery(&a.join(names::AUDIT_GALLERY))?,
            robustness: read_robustness(&a.join(names::AUDIT_ROBUSTNESS))?,
            data_audit: match read_optional(&a.join(names::AUDIT_DATA))? {
                None => None,
                Some(t) => Some(json(&a.join(names::AUDIT_DATA), &t)?),
            },
            meta: match read_optional(&a.join(names::AUDIT_META))? {
                None => None,
                Some(t) => Some(json(&a.join(names::AUDIT_META), &t)?),
            },
        })
    }
}

fn read_quality(path: &Path) -> Result<Option<Vec<QualityRow>>> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let c = Csv::parse(path, &text, &[QUALITY_HEADER])?;
    let mut out = Vec::with_capacity(c.rows.len());
    for (line, f) in &c.rows {
        let l = *line;
        out.push(QualityRow {
            split: c.text(f, "split")?.to_string(),
            index: c.get(l, f, "index")?,
            label: c.label(l, f, "label")?,
            prob: c.unit(l, f, "prob")?,
            pred: c.label(l, f, "pred")?,
            contrast_rms: c.float(l, f, "contrast_rms")?,
            contrast_michelson: c.float(l, f, "contrast_michelson")?,
            sharpness: c.float(l, f, "sharpness")?,
            brightness: c.float(l, f, "brightness")?,
            entropy: c.float(l, f, "entropy")?,
        });
    }
    Ok(Some(out))
}

fn read_failure_modes(path: &Path) -> Result<Option<FailureModes>> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let fm: FailureModes = json(path, &text)?;
    for m in &fm.measures {
        if m.quartiles.len() != 4 {
            return Err(format_err(
                path,
                format!(
                    "measure `{}`: field `quartiles` has {} entries, expected 4",
                    m.measure,
                    m.quartiles.len()
                ),
            ));
        }
        for q in &m.quartiles {
            for (name, rate) in [("fp_rate", q.fp_rate), ("fn_rate", q.fn_rate)] {
                if let Some(r) = rate
                    && !(0.0..=1.0).contains(&r)
                {
                    return Err(format_err(
                        path,
                        format!(
                            "measure `{}` quartile {}: field `{name}` = {r} is outside [0, 1]",
                            m.measure, q.q
                        ),
                    ));
                }
            }
        }
    }
    Ok(Some(fm))
}

fn read_gallery(path: &Path) -> Result<Option<Vec<GalleryRow>>> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let c = Csv::parse(
        path,
        &text,
        &[
            GALLERY_HEADER,
            "kind,rank,split,index,label,prob,loss,image,gradcam,occlusion",
        ],
    )?;
    let rel = |line: usize, name: &str, v: &str| -> Result<Option<String>> {
        if v.is_empty() {
            return Ok(None);
        }
        let p = Path::new(v);
        if p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
            return Err(format_err(
                path,
                format!("line {line}: `{name}` must be a path inside the run folder: `{v}`"),
            ));
        }
        Ok(Some(v.to_string()))
    };
    let mut out = Vec::with_capacity(c.rows.len());
    for (line, f) in &c.rows {
        let l = *line;
        let kind_s = c.text(f, "kind")?;
        let kind = GalleryKind::parse(kind_s)
            .ok_or_else(|| format_err(path, format!("line {l}: unknown `kind` `{kind_s}`")))?;
        let loss = c.float(l, f, "loss")?;
        if loss < 0.0 {
            return Err(format_err(path, format!("line {l}: `loss` is negative")));
        }
        out.push(GalleryRow {
            kind,
            rank: c.get(l, f, "rank")?,
            split: c.text(f, "split")?.to_string(),
            index: c.get(l, f, "index")?,
            label: c.label(l, f, "label")?,
            prob: c.unit(l, f, "prob")?,
            loss,
            image: rel(l, "image", c.text(f, "image")?)?
                .ok_or_else(|| format_err(path, format!("line {l}: `image` is empty")))?,
            gradcam: rel(l, "gradcam", c.text(f, "gradcam")?)?,
            occlusion: rel(l, "occlusion", c.text(f, "occlusion")?)?,
            pred: if c.header.contains(&"pred") {
                Some(c.label(l, f, "pred")?)
            } else {
                None
            },
        });
    }
    out.sort_by(|a, b| a.kind.cmp(&b.kind).then(a.rank.cmp(&b.rank)));
    Ok(Some(out))
}

fn read_robustness(path: &Path) -> Result<Option<Vec<RobustnessRow>>> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let c = Csv::parse(
        path,
        &text,
        &[
            ROBUSTNESS_HEADER,
            "corruption,severity,auc,sensitivity,specificity,accuracy",
        ],
    )?;
    let mut out = Vec::with_capacity(c.rows.len());
    for (line, f) in &c.rows {
        let l = *line;
        let unit = |name: &str| -> Result<Option<f64>> {
            if c.text(f, name)?.is_empty() {
                Ok(None)
            } else {
                c.unit(l, f, name).map(Some)
            }
        };
        let parameter = if c.header.contains(&"parameter") && !c.text(f, "parameter")?.is_empty() {
            Some(c.float(l, f, "parameter")?)
        } else {
            None
        };
        out.push(RobustnessRow {
            corruption: c.text(f, "corruption")?.to_string(),
            severity: c.get(l, f, "severity")?,
            auc: unit("auc")?,
            sensitivity: unit("sensitivity")?,
            specificity: unit("specificity")?,
            accuracy: unit("accuracy")?,
            parameter,
        });
    }
    Ok(Some(out))
}
