//! The files of a prediction folder (`cxr predict`): `predictions.csv` ([`PredictRow`])
//! and `summary.json` ([`PredictSummary`]); the report reads what the predictor wrote
//! through these same types.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::io::{AtomicWriter, read_json, write_json};
use crate::{Result, RunFolderError};

/// The header of a prediction folder's `predictions.csv`.
pub const PREDICT_HEADER: &str =
    "path,frame,logit,prob,prob_calibrated,prob_adapted,decision,threshold,operating_point,error";

/// One row of a prediction folder's `predictions.csv`: one frame of one input, or one
/// input that could not be read (`error` set, the numbers empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictRow {
    /// The input file as given (or as found under a given folder).
    pub path: String,
    /// 0-based frame (multi-frame DICOM); 0 for single images.
    pub frame: usize,
    /// The model's logit (f32, widened).
    pub logit: Option<f64>,
    /// P(pneumonia) from the model.
    pub prob: Option<f64>,
    /// P(pneumonia) after the model's temperature scaling.
    pub prob_calibrated: Option<f64>,
    /// The calibrated probability adjusted to the prevalence estimated for this set
    /// (`--adapt-prior` only).
    pub prob_adapted: Option<f64>,
    /// `pneumonia` or `normal`: `prob ≥ threshold`.
    pub decision: Option<String>,
    /// The threshold on `prob` that made the decision.
    pub threshold: Option<f64>,
    /// The operating point the threshold comes from.
    pub operating_point: String,
    /// Why the input could not be used (empty when it was).
    pub error: String,
}

impl PredictRow {
    /// Whether the row holds a prediction (no error).
    pub fn is_ok(&self) -> bool {
        self.error.is_empty() && self.prob.is_some()
    }
}

/// Writes `rows` as CSV (quoted where a field needs it) to `path`, atomically.
pub fn write_predict_rows(path: &Path, rows: &[PredictRow]) -> Result<()> {
    let io = |e: csv::Error| RunFolderError::io(path, std::io::Error::other(e));
    let mut out = csv::Writer::from_writer(Vec::new());
    for r in rows {
        out.serialize(r).map_err(io)?;
    }
    if rows.is_empty() {
        out.write_record(PREDICT_HEADER.split(',')).map_err(io)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| RunFolderError::io(path, std::io::Error::other(e.to_string())))?;
    let mut w = AtomicWriter::create(path)?;
    w.write(&bytes)?;
    w.commit()
}

/// Reads a prediction folder's `predictions.csv`; errors name the file and the line.
pub fn read_predict_rows(path: &Path) -> Result<Vec<PredictRow>> {
    let text = crate::io::read(path)?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| RunFolderError::format(path, e.to_string()))?
        .iter()
        .collect::<Vec<_>>()
        .join(",");
    if header != PREDICT_HEADER {
        return Err(RunFolderError::format(
            path,
            format!("line 1: header is `{header}`, expected `{PREDICT_HEADER}`"),
        ));
    }
    let mut rows = Vec::new();
    for (i, row) in reader.deserialize::<PredictRow>().enumerate() {
        let row = row.map_err(|e| RunFolderError::format(path, format!("line {}: {e}", i + 2)))?;
        for (name, v) in [
            ("prob", row.prob),
            ("prob_calibrated", row.prob_calibrated),
            ("prob_adapted", row.prob_adapted),
            ("threshold", row.threshold),
        ] {
            if let Some(v) = v
                && !(0.0..=1.0).contains(&v)
            {
                return Err(RunFolderError::format(
                    path,
                    format!("line {}: `{name}` {v} is not in [0, 1]", i + 2),
                ));
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Unreadable inputs sharing one reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorCount {
    /// The reason, without the file name.
    pub reason: String,
    /// How many inputs failed for it.
    pub count: usize,
}

/// The site check: the pneumonia prevalence of the predicted set, estimated without
/// labels from the calibrated probabilities (EM prior adjustment, Saerens et al. 2002),
/// against the training prevalence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteCheck {
    /// How the estimate was made, in words.
    pub method: String,
    /// Estimated prevalence.
    pub estimate: f64,
    /// Lower end of the bootstrap interval.
    pub ci_low: f64,
    /// Upper end of the bootstrap interval.
    pub ci_high: f64,
    /// The interval's level (0.95).
    pub level: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// The training split's prevalence.
    pub train_prevalence: f64,
    /// The prevalence the calibrated probabilities reflect (that of the split the
    /// calibration was fitted on), EM's starting prior.
    pub reference_prevalence: f64,
    /// The calibration the probabilities went through, in words.
    pub calibration: String,
    /// Whether the new logits fit a label-shifted mixture of the validation logits
    /// (`None` when the model card holds no validation logits).
    pub label_shift_test: Option<LabelShiftCheck>,
    /// Whether the training prevalence lies outside the interval.
    pub differs: bool,
    /// EM iterations on the full set.
    pub iterations: usize,
    /// Whether EM converged on the full set.
    pub converged: bool,
    /// The mean calibrated probability (the naive estimate), for comparison.
    pub mean_probability: f64,
    /// What the report says about it, in one sentence.
    pub verdict: String,
}

/// The test of EM's assumption: that the new images differ from the validation images
/// in prevalence only (pure label shift), judged on the model's logits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelShiftCheck {
    /// Kolmogorov–Smirnov distance between the new logits and the fitted mixture of the
    /// validation logits.
    pub statistic: f64,
    /// Bootstrap p-value.
    pub p_value: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Whether the assumption is rejected at the 1% level: the images differ from the
    /// validation images in more than prevalence, and the estimate is unreliable.
    pub rejected: bool,
}

/// An explained image: the PNGs written for it, relative to the prediction folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explained {
    /// The input.
    pub path: String,
    /// Its frame.
    pub frame: usize,
    /// P(pneumonia).
    pub prob: f64,
    /// The model's input image (gray PNG).
    pub image: String,
    /// Grad-CAM overlay for the pneumonia class.
    pub gradcam: String,
    /// Occlusion-sensitivity overlay for the pneumonia class.
    pub occlusion: String,
}

/// `summary.json` of a prediction folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictSummary {
    /// The run folder whose model was applied.
    pub run: String,
    /// The network.
    pub network: String,
    /// Whether the model card was derived from an older run's files.
    pub card_derived: bool,
    /// The inputs as given on the command line.
    pub inputs: Vec<String>,
    /// `K/N` when this folder holds one shard of a sharded prediction; for a merged
    /// folder, the shards it joins (`N shards`).
    #[serde(default)]
    pub shard: Option<String>,
    /// Input files found (folders expanded).
    pub files: usize,
    /// Rows written (frames predicted plus unreadable files).
    pub rows: usize,
    /// Frames predicted.
    pub predicted: usize,
    /// Files that could not be read.
    pub unreadable: usize,
    /// Unreadable files by reason.
    pub errors: Vec<ErrorCount>,
    /// The operating point applied.
    pub operating_point: String,
    /// Its threshold on `prob` (after `--adapt-prior`, when set).
    pub threshold: f64,
    /// Where the threshold comes from, in words.
    pub threshold_source: String,
    /// The threshold before prior adaptation.
    pub threshold_unadapted: f64,
    /// Frames called pneumonia.
    pub positives: usize,
    /// Frames called pneumonia at the unadapted threshold.
    pub positives_unadapted: usize,
    /// Whether probabilities and threshold were adapted to the estimated prevalence.
    pub adapt_prior: bool,
    /// The site check, when at least one frame was predicted.
    pub site_check: Option<SiteCheck>,
    /// Images with Grad-CAM and occlusion overlays (`--explain`).
    pub explained: Vec<Explained>,
    /// Wall-clock seconds of reading, preprocessing and inference.
    pub seconds: f64,
    /// Frames per second over [`PredictSummary::seconds`].
    pub images_per_second: f64,
    /// The device.
    pub device: String,
    /// The cxr version that predicted.
    pub cxr_version: String,
}

impl PredictSummary {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self> {
        read_json(path)
    }

    /// Writes `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_json(path, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_with_commas_and_quotes() {
        let rows = vec![
            PredictRow {
                path: "a, \"b\"/c.png".into(),
                frame: 0,
                logit: Some(-1.0986122886681098),
                prob: Some(0.25),
                prob_calibrated: Some(0.3),
                prob_adapted: None,
                decision: Some("normal".into()),
                threshold: Some(0.5),
                operating_point: "youden".into(),
                error: String::new(),
            },
            PredictRow {
                path: "x.dcm".into(),
                frame: 0,
                logit: None,
                prob: None,
                prob_calibrated: None,
                prob_adapted: None,
                decision: None,
                threshold: None,
                operating_point: "youden".into(),
                error: "no pixel data, (7FE0,0010)".into(),
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("predictions.csv");
        write_predict_rows(&p, &rows).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with(PREDICT_HEADER), "{text}");
        assert_eq!(read_predict_rows(&p).unwrap(), rows);
        assert!(rows[0].is_ok() && !rows[1].is_ok());
        write_predict_rows(&p, &[]).unwrap();
        assert!(read_predict_rows(&p).unwrap().is_empty());
    }

    #[test]
    fn out_of_range_values_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("predictions.csv");
        std::fs::write(&p, format!("{PREDICT_HEADER}\na.png,0,,1.5,,,,,,\n")).unwrap();
        let e = read_predict_rows(&p).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("prob"), "{e}");
    }
}
