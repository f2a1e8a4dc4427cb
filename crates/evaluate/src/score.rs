//! Figures with intervals: operating points, subgroup tables, the paired comparison.

use std::path::Path;

use cxr_metrics as m;
use cxr_predict::ChosenPoint;
use cxr_runfolder::{
    EstimateCi, EvaluatedPoint, HeterogeneityTest, ModelCard, ModelComparison, ProportionEstimate,
    SubgroupRow, SubgroupTable,
};

use crate::metadata::Group;
use crate::{CONFIDENCE, EvaluateError, Result};

/// `successes / n` with its Wilson interval and, when given, a bootstrap interval;
/// `None` when `n` is 0.
fn proportion(
    successes: u64,
    n: u64,
    boot: Option<m::Interval>,
) -> Result<Option<ProportionEstimate>> {
    if n == 0 {
        return Ok(None);
    }
    let w = m::wilson_interval(successes, n, CONFIDENCE)
        .map_err(EvaluateError::metrics("Wilson interval"))?;
    Ok(Some(ProportionEstimate {
        estimate: successes as f64 / n as f64,
        successes,
        n,
        wilson_low: w.low,
        wilson_high: w.high,
        bootstrap_low: boot.map(|b| b.low),
        bootstrap_high: boot.map(|b| b.high),
    }))
}

/// The confusion counts at `threshold` (pneumonia iff p ≥ threshold).
fn counts(labels: &[u8], probs: &[f64], threshold: f64) -> (u64, u64, u64, u64) {
    let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
    for (&y, &p) in labels.iter().zip(probs) {
        match (y == 1, p >= threshold) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (false, false) => tn += 1,
            (true, false) => fn_ += 1,
        }
    }
    (tp, fp, tn, fn_)
}

/// One operating point scored on the set, with Wilson intervals and (with both
/// classes) stratified bootstrap intervals.
pub(crate) fn evaluated_point(
    name: &str,
    threshold: f64,
    source: &str,
    labels: &[u8],
    probs: &[f64],
    boot: m::BootstrapConfig,
    (val_sensitivity, val_specificity): (Option<f64>, Option<f64>),
) -> Result<EvaluatedPoint> {
    let (tp, fp, tn, fn_) = counts(labels, probs, threshold);
    let ci = if tp + fn_ > 0 && tn + fp > 0 {
        Some(
            m::bootstrap_ci(labels, probs, threshold, boot)
                .map_err(EvaluateError::metrics("bootstrap intervals"))?,
        )
    } else {
        None
    };
    let accuracy = proportion(tp + tn, tp + fp + tn + fn_, ci.map(|c| c.accuracy))?
        .ok_or_else(|| EvaluateError::setting("data", "no images to score"))?;
    Ok(EvaluatedPoint {
        name: name.to_string(),
        threshold,
        source: source.to_string(),
        tp,
        fp,
        tn,
        fn_,
        sensitivity: proportion(tp, tp + fn_, ci.map(|c| c.sensitivity))?,
        specificity: proportion(tn, tn + fp, ci.map(|c| c.specificity))?,
        ppv: proportion(tp, tp + fp, ci.map(|c| c.ppv))?,
        npv: proportion(tn, tn + fn_, ci.map(|c| c.npv))?,
        accuracy,
        f1: ci.map(|c| EstimateCi {
            estimate: c.f1.estimate,
            low: c.f1.low,
            high: c.f1.high,
        }),
        val_sensitivity,
        val_specificity,
    })
}

fn heterogeneity(h: m::Heterogeneity) -> HeterogeneityTest {
    HeterogeneityTest {
        statistic: h.statistic,
        df: h.df,
        p_value: h.p_value,
    }
}

/// The subgroup table of one column at the operating point `point`.
pub(crate) fn subgroup_table(
    column: &str,
    kind: &str,
    groups: &[Group],
    labels: &[u8],
    probs: &[f64],
    point: &ChosenPoint,
    min_size: usize,
) -> Result<SubgroupTable> {
    let mut rows = Vec::with_capacity(groups.len());
    let mut aucs = Vec::new();
    let mut sens = Vec::new();
    let mut spec = Vec::new();
    for g in groups {
        let l: Vec<u8> = g.rows.iter().map(|&i| labels[i]).collect();
        let p: Vec<f64> = g.rows.iter().map(|&i| probs[i]).collect();
        let n = l.len() as u64;
        let positives = l.iter().filter(|&&y| y == 1).count() as u64;
        let mut row = SubgroupRow {
            group: g.label.clone(),
            n,
            positives,
            prevalence: if n > 0 {
                positives as f64 / n as f64
            } else {
                0.0
            },
            too_small: (n as usize) < min_size,
            auc: None,
            auc_low: None,
            auc_high: None,
            sensitivity: None,
            specificity: None,
            note: String::new(),
        };
        if row.too_small {
            row.note = format!("too small (n < {min_size})");
            rows.push(row);
            continue;
        }
        let (tp, fp, tn, fn_) = counts(&l, &p, point.threshold);
        row.sensitivity = proportion(tp, tp + fn_, None)?;
        row.specificity = proportion(tn, tn + fp, None)?;
        if positives > 0 && positives < n {
            let ci = m::auc_ci_delong(&l, &p).map_err(EvaluateError::metrics(&format!(
                "AUC of {column} = {}",
                g.label
            )))?;
            row.auc = Some(m::roc_auc(&l, &p).map_err(EvaluateError::metrics("AUC"))?);
            row.auc_low = Some(ci.low);
            row.auc_high = Some(ci.high);
            if ci.variance > 0.0 {
                aucs.push((ci.auc, ci.variance));
            } else {
                row.note =
                    "AUC with zero DeLong variance: left out of the heterogeneity test".into();
            }
        } else {
            row.note = "one class only: no AUC".into();
        }
        if tp + fn_ > 0 {
            sens.push((tp, tp + fn_));
        }
        if tn + fp > 0 {
            spec.push((tn, tn + fp));
        }
        rows.push(row);
    }
    let test_of = |what: &str, r: m::Result<m::Heterogeneity>| -> Result<HeterogeneityTest> {
        r.map(heterogeneity)
            .map_err(EvaluateError::metrics(&format!(
                "{what} heterogeneity of {column}"
            )))
    };
    Ok(SubgroupTable {
        column: column.to_string(),
        kind: kind.to_string(),
        operating_point: point.name.clone(),
        threshold: point.threshold,
        groups: rows,
        auc_heterogeneity: if aucs.len() >= 2 {
            Some(test_of("AUC", m::auc_heterogeneity(&aucs))?)
        } else {
            None
        },
        sensitivity_heterogeneity: if sens.len() >= 2 {
            Some(test_of("sensitivity", m::proportion_heterogeneity(&sens))?)
        } else {
            None
        },
        specificity_heterogeneity: if spec.len() >= 2 {
            Some(test_of("specificity", m::proportion_heterogeneity(&spec))?)
        } else {
            None
        },
    })
}

/// Model A against model B on the same images: paired DeLong test of the AUCs and
/// McNemar's test of the calls at each model's operating point.
pub(crate) fn comparison(
    labels: &[u8],
    probs_a: &[f64],
    probs_b: &[f64],
    (point_a, run_a, card_a): (&ChosenPoint, &Path, &ModelCard),
    (point_b, run_b, card_b): (&ChosenPoint, &Path, &ModelCard),
) -> Result<ModelComparison> {
    let d = m::delong_test(labels, probs_a, probs_b)
        .map_err(EvaluateError::metrics("paired DeLong test"))?;
    // Trapezoidal AUCs, as metrics.json; DeLong's midrank sums agree to the last bit or so.
    let auc = |p: &[f64]| m::roc_auc(labels, p).map_err(EvaluateError::metrics("AUC"));
    let (auc_a, auc_b) = (auc(probs_a)?, auc(probs_b)?);
    let diff = auc_a - auc_b;
    let half = 1.959_963_984_540_054 * d.variance.max(0.0).sqrt();
    let (mut only_a, mut only_b, mut right_a, mut right_b) = (0u64, 0u64, 0u64, 0u64);
    for ((&y, &pa), &pb) in labels.iter().zip(probs_a).zip(probs_b) {
        let a = (pa >= point_a.threshold) == (y == 1);
        let b = (pb >= point_b.threshold) == (y == 1);
        right_a += u64::from(a);
        right_b += u64::from(b);
        match (a, b) {
            (true, false) => only_a += 1,
            (false, true) => only_b += 1,
            _ => {}
        }
    }
    let mc = m::mcnemar(only_a, only_b).map_err(EvaluateError::metrics("McNemar's test"))?;
    let n = labels.len();
    Ok(ModelComparison {
        run_a: run_a.display().to_string(),
        network_a: card_a.network.as_str().into(),
        run_b: run_b.display().to_string(),
        network_b: card_b.network.as_str().into(),
        n,
        auc_a,
        auc_b,
        auc_difference: diff,
        auc_difference_low: diff - half,
        auc_difference_high: diff + half,
        delong_z: d.z,
        delong_p: d.p_value,
        operating_point_a: point_a.name.clone(),
        threshold_a: point_a.threshold,
        operating_point_b: point_b.name.clone(),
        threshold_b: point_b.threshold,
        accuracy_a: right_a as f64 / n as f64,
        accuracy_b: right_b as f64 / n as f64,
        only_a_correct: only_a,
        only_b_correct: only_b,
        mcnemar_statistic: mc.statistic,
        mcnemar_p: mc.p_value(),
        mcnemar_exact: mc.exact,
    })
}
