//! Scoring a trained model's validation and test logits: threshold metrics,
//! curves, calibration (with temperature scaling fitted on validation), operating
//! points chosen on validation and scored on test, and confidence intervals.

use std::fmt::Write as _;

use cxr_metrics as m;
use cxr_runfolder as rf;

use crate::{Result, TrainError};

fn merr(split: &str) -> impl Fn(m::MetricsError) -> TrainError + '_ {
    move |source| TrainError::Metrics {
        split: split.to_string(),
        source,
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Everything computed from one split's labels and logits.
pub(crate) struct SplitScores {
    pub name: &'static str,
    pub labels: Vec<u8>,
    pub logits: Vec<f64>,
    pub probs: Vec<f64>,
}

impl SplitScores {
    pub fn new(name: &'static str, labels: &[u8], logits: &[f32]) -> Self {
        let logits: Vec<f64> = logits.iter().map(|&z| z as f64).collect();
        let probs = logits.iter().map(|&z| sigmoid(z)).collect();
        Self {
            name,
            labels: labels.to_vec(),
            logits,
            probs,
        }
    }

    /// The `val`/`test` object of `metrics.json`.
    fn summary(&self, threshold: f64) -> Result<rf::SplitMetrics> {
        let e = merr(self.name);
        let (l, p) = (&self.labels, &self.probs);
        let r = m::binary_report(l, p, threshold).map_err(&e)?;
        let ci = m::auc_ci_delong(l, p).map_err(&e)?;
        let bins = m::Binning::default();
        Ok(rf::SplitMetrics {
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
            average_precision: Some(m::average_precision(l, p).map_err(&e)?),
            brier: Some(m::brier(l, p).map_err(&e)?),
            log_loss: Some(m::log_loss(l, p).map_err(&e)?),
            ece: Some(m::ece(l, p, bins).map_err(&e)?),
            ece_pos: Some(m::ece_pos(l, p, bins).map_err(&e)?),
            mce: Some(m::mce(l, p, bins).map_err(&e)?),
        })
    }
}

/// The evaluation written into a run folder.
pub(crate) struct Evaluation {
    /// `metrics.json` without the run-level fields (best epoch, model, timing).
    pub metrics: rf::Metrics,
    /// Fitted temperature.
    pub temperature: f64,
    /// The operating points with their validation sensitivity and specificity (for
    /// `model.json`).
    pub val_points: Vec<rf::CardOperatingPoint>,
    /// `roc.csv`, `pr.csv`, `reliability.csv` contents.
    pub roc_csv: String,
    pub pr_csv: String,
    pub reliability_csv: String,
}

/// Target sensitivity of the screening operating point.
pub(crate) const TARGET_SENSITIVITY: f64 = 0.95;

pub(crate) fn evaluate(
    val: &SplitScores,
    test: &SplitScores,
    threshold: f64,
    seed: u64,
) -> Result<Evaluation> {
    let ev = merr("val");
    let et = merr("test");
    let bins = m::Binning::default();

    // Temperature on validation logits, applied to test.
    let temperature = m::fit_temperature(&val.logits, &val.labels).map_err(&ev)?;
    let test_cal = m::apply_temperature(&test.logits, temperature);
    let calibration = rf::Calibration {
        temperature,
        ece_before: m::ece(&test.labels, &test.probs, bins).map_err(&et)?,
        ece_after: m::ece(&test.labels, &test_cal, bins).map_err(&et)?,
        ece_pos_before: Some(m::ece_pos(&test.labels, &test.probs, bins).map_err(&et)?),
        ece_pos_after: Some(m::ece_pos(&test.labels, &test_cal, bins).map_err(&et)?),
        brier_before: m::brier(&test.labels, &test.probs).map_err(&et)?,
        brier_after: m::brier(&test.labels, &test_cal).map_err(&et)?,
        log_loss_before: m::log_loss(&test.labels, &test.probs).map_err(&et)?,
        log_loss_after: m::log_loss(&test.labels, &test_cal).map_err(&et)?,
        split: Some("test".into()),
        fitted_on: Some("val".into()),
    };

    // Operating points: thresholds chosen on validation, scored on test.
    let youden = m::threshold_youden(&val.labels, &val.probs).map_err(&ev)?;
    let sens =
        m::threshold_for_sensitivity(&val.labels, &val.probs, TARGET_SENSITIVITY).map_err(&ev)?;
    let mut points = Vec::new();
    let mut val_points = Vec::new();
    for (name, t) in [
        ("youden".to_string(), youden),
        (format!("sensitivity_{TARGET_SENSITIVITY}"), sens),
        (format!("default_{threshold}"), threshold),
    ] {
        let v = m::operating_point(&name, t, &val.labels, &val.probs).map_err(&ev)?;
        val_points.push(rf::CardOperatingPoint {
            name: name.clone(),
            threshold: t,
            val_sensitivity: Some(v.recall),
            val_specificity: Some(v.specificity),
        });
        let p = m::operating_point(&name, t, &test.labels, &test.probs).map_err(&et)?;
        points.push(rf::OperatingPoint {
            name: p.name,
            threshold: p.threshold,
            accuracy: p.accuracy,
            precision: p.precision,
            recall: p.recall,
            specificity: p.specificity,
            f1: p.f1,
            tp: p.tp,
            fp: p.fp,
            tn: p.tn,
            fn_: p.fn_,
        });
    }

    let boot = m::bootstrap_ci(
        &test.labels,
        &test.probs,
        threshold,
        m::BootstrapConfig {
            seed,
            ..m::BootstrapConfig::default()
        },
    )
    .map_err(&et)?;
    let pos = |s: &SplitScores| {
        s.labels.iter().filter(|&&l| l == 1).count() as f64 / s.labels.len() as f64
    };

    let interval = |i: m::Interval| rf::Interval {
        estimate: i.estimate,
        low: i.low,
        high: i.high,
    };
    let metrics = rf::Metrics {
        val: val.summary(threshold)?,
        test: test.summary(threshold)?,
        calibration: Some(calibration),
        operating_points: points,
        bootstrap: Some(rf::Bootstrap {
            split: "test".into(),
            seed,
            ci: rf::BootstrapCi {
                resamples: boot.resamples,
                seed: Some(boot.seed),
                confidence: boot.confidence,
                threshold: boot.threshold,
                accuracy: interval(boot.accuracy),
                sensitivity: interval(boot.sensitivity),
                specificity: interval(boot.specificity),
                f1: interval(boot.f1),
                ece: interval(boot.ece),
            },
        }),
        prevalence: Some(rf::Prevalence {
            val: pos(val),
            test: pos(test),
        }),
        best_epoch: None,
        model: None,
        timing: None,
        members: Vec::new(),
    };

    // Curves.
    let mut roc_csv = String::from("split,fpr,tpr,threshold\n");
    let mut pr_csv = String::from("split,recall,precision,threshold\n");
    let mut rel_csv = String::from("split,bin,lower,upper,count,confidence,accuracy\n");
    for s in [val, test] {
        let e = merr(s.name);
        for p in m::roc_curve(&s.labels, &s.probs, true).map_err(&e)? {
            let _ = writeln!(
                roc_csv,
                "{},{},{},{}",
                s.name,
                p.fpr,
                p.tpr,
                fmt_threshold(p.threshold)
            );
        }
        for p in m::precision_recall_curve(&s.labels, &s.probs).map_err(&e)? {
            let _ = writeln!(
                pr_csv,
                "{},{},{},{}",
                s.name,
                p.recall,
                p.precision,
                fmt_threshold(p.threshold)
            );
        }
    }
    for (name, labels, probs) in [
        ("val", &val.labels, &val.probs),
        ("test", &test.labels, &test.probs),
        ("test_calibrated", &test.labels, &test_cal),
    ] {
        let e = merr(name);
        for b in
            m::reliability_bins(labels, probs, bins, m::CalibrationKind::Positive).map_err(&e)?
        {
            let _ = writeln!(
                rel_csv,
                "{name},{},{},{},{},{},{}",
                b.bin, b.lower, b.upper, b.count, b.confidence, b.accuracy
            );
        }
    }
    Ok(Evaluation {
        metrics,
        temperature,
        val_points,
        roc_csv,
        pr_csv,
        reliability_csv: rel_csv,
    })
}

/// `inf` for the ROC curve's first point, empty for the PR curve's last.
fn fmt_threshold(t: f64) -> String {
    if t.is_nan() {
        String::new()
    } else if t.is_infinite() {
        "inf".into()
    } else {
        t.to_string()
    }
}
