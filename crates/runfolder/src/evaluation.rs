//! An evaluation folder (`cxr evaluate`): a trained run's model scored on a labelled set
//! from elsewhere. `evaluation.json` ([`Evaluation`]) holds every figure the report
//! shows; `metrics.json` holds the set's [`SplitMetrics`](crate::SplitMetrics) (the
//! shape of a run's `test` block).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::io::{read_json, write_json};
use crate::{ErrorCount, Result, SiteCheck, SplitMetrics};

/// A proportion with its 95 % intervals: Wilson's score interval and a stratified
/// bootstrap percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProportionEstimate {
    /// The proportion on the set.
    pub estimate: f64,
    /// Numerator.
    pub successes: u64,
    /// Denominator.
    pub n: u64,
    /// Wilson score interval, lower end.
    pub wilson_low: f64,
    /// Wilson score interval, upper end.
    pub wilson_high: f64,
    /// Bootstrap percentile interval, lower end (`None` when not resampled).
    pub bootstrap_low: Option<f64>,
    /// Bootstrap percentile interval, upper end.
    pub bootstrap_high: Option<f64>,
}

/// A figure with a bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EstimateCi {
    /// The figure on the set.
    pub estimate: f64,
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// One operating point (a threshold on P(pneumonia)) scored on the set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluatedPoint {
    /// The model card's name of the point (`youden`, `sensitivity_0.95`, `default_0.5`).
    pub name: String,
    /// Predict pneumonia iff P ≥ threshold.
    pub threshold: f64,
    /// Where the threshold comes from, in words.
    pub source: String,
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// True negatives.
    pub tn: u64,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Sensitivity (`None` without positives).
    pub sensitivity: Option<ProportionEstimate>,
    /// Specificity (`None` without negatives).
    pub specificity: Option<ProportionEstimate>,
    /// Positive predictive value (`None` without positive calls).
    pub ppv: Option<ProportionEstimate>,
    /// Negative predictive value (`None` without negative calls).
    pub npv: Option<ProportionEstimate>,
    /// Accuracy.
    pub accuracy: ProportionEstimate,
    /// F1 with its bootstrap interval (`None` without both classes).
    pub f1: Option<EstimateCi>,
    /// Sensitivity on the run's own validation split, from the model card.
    pub val_sensitivity: Option<f64>,
    /// Specificity on the run's own validation split, from the model card.
    pub val_specificity: Option<f64>,
}

/// Calibration on the set, before and after the model card's temperature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluatedCalibration {
    /// The card's temperature (logits are divided by it).
    pub temperature: f64,
    /// Top-label ECE (15 equal-width bins) of σ(logit), as `metrics.json`'s
    /// calibration block.
    pub ece_before: f64,
    /// Top-label ECE of σ(logit / T).
    pub ece_after: f64,
    /// Brier score of σ(logit).
    pub brier_before: f64,
    /// Brier score of σ(logit / T).
    pub brier_after: f64,
    /// Reliability bins of σ(logit) (pneumonia class: mean probability against the
    /// fraction positive).
    pub bins_before: Vec<ReliabilityPoint>,
    /// Reliability bins of σ(logit / T).
    pub bins_after: Vec<ReliabilityPoint>,
}

/// One reliability bin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityPoint {
    /// Lower edge.
    pub lower: f64,
    /// Upper edge.
    pub upper: f64,
    /// Images in the bin.
    pub count: u64,
    /// Mean predicted probability.
    pub confidence: f64,
    /// Fraction positive.
    pub accuracy: f64,
}

/// One point of the ROC curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RocPoint {
    /// False-positive rate.
    pub fpr: f64,
    /// True-positive rate.
    pub tpr: f64,
}

/// The set's prevalence against the training data's, and what a label-free estimate
/// of it (the site check of `cxr predict`) would have said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetPrevalence {
    /// The set's pneumonia prevalence from its labels.
    pub true_prevalence: f64,
    /// The training split's prevalence (from the model card).
    pub train_prevalence: Option<f64>,
    /// The validation split's prevalence (from the model card).
    pub val_prevalence: Option<f64>,
    /// The site check on the set's logits, labels unseen (`None` when the card lacks
    /// what it needs).
    pub site_check: Option<SiteCheck>,
    /// Estimate − truth.
    pub estimate_error: Option<f64>,
    /// Whether the truth lies inside the estimate's interval.
    pub truth_in_interval: Option<bool>,
    /// The operating points with their thresholds moved to the set's true prevalence
    /// (Saerens et al. 2002, on calibrated probabilities), scored on the set.
    pub adapted_points: Vec<EvaluatedPoint>,
}

/// Heterogeneity of a figure across the groups of one column.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HeterogeneityTest {
    /// The χ² statistic (Cochran's Q for AUCs; Pearson's for proportions).
    pub statistic: f64,
    /// Degrees of freedom (groups − 1).
    pub df: usize,
    /// p-value.
    pub p_value: f64,
}

/// One group of a subgroup table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubgroupRow {
    /// The column's value (a category, or a quantile bin such as `[34, 51)`), or
    /// `(missing)` for images without a value.
    pub group: String,
    /// Images.
    pub n: u64,
    /// Pneumonia images.
    pub positives: u64,
    /// Fraction pneumonia.
    pub prevalence: f64,
    /// Whether the group is below the minimum size: no figures reported.
    pub too_small: bool,
    /// AUC (`None` when too small or one class only).
    pub auc: Option<f64>,
    /// DeLong 95 % interval of the AUC, lower end.
    pub auc_low: Option<f64>,
    /// DeLong 95 % interval of the AUC, upper end.
    pub auc_high: Option<f64>,
    /// Sensitivity at the operating point, with Wilson interval.
    pub sensitivity: Option<ProportionEstimate>,
    /// Specificity at the operating point, with Wilson interval.
    pub specificity: Option<ProportionEstimate>,
    /// Why some figure is missing, in words (empty when all are there).
    pub note: String,
}

/// The subgroup table of one `--group-by` column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubgroupTable {
    /// The metadata column.
    pub column: String,
    /// `categorical`, or `quantile` (a numeric column cut into quantile bins).
    pub kind: String,
    /// The operating point whose sensitivity and specificity are shown.
    pub operating_point: String,
    /// Its threshold.
    pub threshold: f64,
    /// The groups, in order (categories sorted; bins ascending; `(missing)` last).
    pub groups: Vec<SubgroupRow>,
    /// Across the groups that have an AUC: Cochran's Q on DeLong variances.
    pub auc_heterogeneity: Option<HeterogeneityTest>,
    /// Across the groups with positives: χ² test of equal sensitivity.
    pub sensitivity_heterogeneity: Option<HeterogeneityTest>,
    /// Across the groups with negatives: χ² test of equal specificity.
    pub specificity_heterogeneity: Option<HeterogeneityTest>,
}

/// How the metadata table was joined to the images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataJoin {
    /// The table's path.
    pub table: String,
    /// Its column holding the key.
    pub join_on: String,
    /// What the key is matched against: `path` (relative to the set), `file` (file
    /// name) or `index` (position in the npz split).
    pub key: String,
    /// The table's rows.
    pub rows: usize,
    /// The table's columns.
    pub columns: Vec<String>,
    /// Images that found a row.
    pub matched: usize,
    /// Rows that match no image.
    pub rows_without_image: usize,
    /// The first of them (their keys).
    pub rows_without_image_examples: Vec<String>,
    /// Images without a row.
    pub images_without_row: usize,
    /// The first of them (their keys).
    pub images_without_row_examples: Vec<String>,
}

/// Two models on the same set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelComparison {
    /// The evaluated run (A).
    pub run_a: String,
    /// Its network.
    pub network_a: String,
    /// The run compared with (B).
    pub run_b: String,
    /// Its network.
    pub network_b: String,
    /// Images scored by both.
    pub n: usize,
    /// AUC of A.
    pub auc_a: f64,
    /// AUC of B.
    pub auc_b: f64,
    /// AUC(A) − AUC(B).
    pub auc_difference: f64,
    /// 95 % interval of the difference (DeLong), lower end.
    pub auc_difference_low: f64,
    /// Upper end.
    pub auc_difference_high: f64,
    /// Paired DeLong test: z.
    pub delong_z: f64,
    /// Paired DeLong test: two-sided p.
    pub delong_p: f64,
    /// A's operating point and threshold.
    pub operating_point_a: String,
    /// Threshold of A's point.
    pub threshold_a: f64,
    /// B's operating point.
    pub operating_point_b: String,
    /// Threshold of B's point.
    pub threshold_b: f64,
    /// Accuracy of A at its point.
    pub accuracy_a: f64,
    /// Accuracy of B at its point.
    pub accuracy_b: f64,
    /// Images only A classifies correctly.
    pub only_a_correct: u64,
    /// Images only B classifies correctly.
    pub only_b_correct: u64,
    /// McNemar's χ² with continuity correction.
    pub mcnemar_statistic: f64,
    /// McNemar's p-value (exact binomial when fewer than 25 discordant images).
    pub mcnemar_p: f64,
    /// Whether the exact form was used.
    pub mcnemar_exact: bool,
}

/// The labelled set that was evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluatedSet {
    /// The set as given (npz file or folder).
    pub source: String,
    /// `npz` or `folder`.
    pub kind: String,
    /// The split used (`test`, …), when the set has splits.
    pub split: Option<String>,
    /// Input files (npz: images in the split).
    pub files: usize,
    /// Images scored (a multi-frame DICOM gives one per frame).
    pub images: usize,
    /// Pneumonia images among them.
    pub positives: usize,
    /// Files that could not be read.
    pub unreadable: usize,
    /// Unreadable files by reason.
    pub errors: Vec<ErrorCount>,
}

/// `evaluation.json`: everything `cxr evaluate` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The run evaluated.
    pub run: String,
    /// Its network.
    pub network: String,
    /// Whether its model card was derived from an older run's files.
    pub card_derived: bool,
    /// The set.
    pub set: EvaluatedSet,
    /// Threshold metrics at the run's own threshold (as `metrics.json`); `None` when the
    /// set lacks a class.
    pub metrics: Option<SplitMetrics>,
    /// The AUC and its DeLong interval (`None` with one class only).
    pub auc: Option<EstimateCi>,
    /// The model card's operating points, unchanged, scored on the set.
    pub operating_points: Vec<EvaluatedPoint>,
    /// The card's default operating point.
    pub default_operating_point: String,
    /// Calibration on the set (`None` with one class only).
    pub calibration: Option<EvaluatedCalibration>,
    /// Prevalence shift.
    pub prevalence: SetPrevalence,
    /// The ROC curve (`None` with one class only).
    pub roc: Vec<RocPoint>,
    /// Bootstrap resamples behind the intervals.
    pub resamples: usize,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// The metadata join, when a table was given.
    pub metadata: Option<MetadataJoin>,
    /// Minimum group size for subgroup figures.
    pub min_group_size: usize,
    /// One table per `--group-by` column.
    pub subgroups: Vec<SubgroupTable>,
    /// `--compare`: the other model on the same images.
    pub comparison: Option<ModelComparison>,
    /// What could not be computed and why, in words.
    pub notes: Vec<String>,
    /// Seconds taken.
    pub seconds: f64,
    /// Device used.
    pub device: String,
    /// cxr version.
    pub cxr_version: String,
}

impl Evaluation {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self> {
        read_json(path)
    }

    /// Writes `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}
