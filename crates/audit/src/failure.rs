//! Measured failure modes: error rates by quartile of each image-quality measure,
//! tests of association, and verdicts on the study's hypotheses.

use cxr_data::Quality;
use cxr_metrics as m;
use cxr_runfolder as rf;

/// Significance level of the hypothesis verdicts.
pub const ALPHA: f64 = 0.05;

/// Which error a hypothesis is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// False positives among normals.
    Fp,
    /// False negatives among pneumonia images.
    Fn,
}

/// The hypothesised direction of an association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// A lower measure gives more errors (negative coefficient).
    Lower,
    /// Either direction counts.
    Either,
}

/// One of the study's hypotheses.
pub(crate) struct Hypothesis {
    pub id: &'static str,
    pub statement: &'static str,
    pub measure: &'static str,
    pub outcome: Outcome,
    pub direction: Direction,
}

/// The hypotheses the audit judges: the study's two impressions, their
/// false-negative counterparts, and brightness in either direction.
pub(crate) const HYPOTHESES: [Hypothesis; 6] = [
    Hypothesis {
        id: "blur_causes_fp",
        statement: "Blur causes false positives",
        measure: "sharpness",
        outcome: Outcome::Fp,
        direction: Direction::Lower,
    },
    Hypothesis {
        id: "low_contrast_causes_fp",
        statement: "Low contrast causes false positives",
        measure: "contrast_rms",
        outcome: Outcome::Fp,
        direction: Direction::Lower,
    },
    Hypothesis {
        id: "blur_causes_fn",
        statement: "Blur causes false negatives",
        measure: "sharpness",
        outcome: Outcome::Fn,
        direction: Direction::Lower,
    },
    Hypothesis {
        id: "low_contrast_causes_fn",
        statement: "Low contrast causes false negatives",
        measure: "contrast_rms",
        outcome: Outcome::Fn,
        direction: Direction::Lower,
    },
    Hypothesis {
        id: "brightness_affects_fp",
        statement: "Brightness is associated with false positives",
        measure: "brightness",
        outcome: Outcome::Fp,
        direction: Direction::Either,
    },
    Hypothesis {
        id: "brightness_affects_fn",
        statement: "Brightness is associated with false negatives",
        measure: "brightness",
        outcome: Outcome::Fn,
        direction: Direction::Either,
    },
];

fn rate(k: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| k as f64 / n as f64)
}

/// The value, or `None` (JSON null) for a non-finite one.
fn num(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The logistic regression of an error indicator on the measure standardised
/// within the group (mean 0, SD 1).
fn logit_fit(values: &[f64], errors: &[u8]) -> rf::Logit {
    let n = values.len();
    let events = errors.iter().filter(|&&e| e == 1).count();
    let fail = |reason: String| rf::Logit {
        n: Some(n as u64),
        events: Some(events as u64),
        predictor: Some("measure standardised within the group (per SD)".into()),
        coef: None,
        se: None,
        ci_low: None,
        ci_high: None,
        p_value: None,
        odds_ratio_per_sd: None,
        intercept: None,
        mean: None,
        sd: None,
        error: Some(reason),
    };
    if n < 3 {
        return fail(format!("only {n} images in the group"));
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    if !(sd > 0.0 && sd.is_finite()) {
        return fail("the measure is constant in this group".into());
    }
    let z: Vec<f64> = values.iter().map(|v| (v - mean) / sd).collect();
    match m::logistic_regression(&z, errors) {
        Ok(f) => rf::Logit {
            coef: num(f.coef),
            se: num(f.se_coef),
            ci_low: num(f.ci_low),
            ci_high: num(f.ci_high),
            p_value: num(f.p_value),
            odds_ratio_per_sd: num(f.coef.exp()),
            intercept: num(f.intercept),
            mean: num(mean),
            sd: num(sd),
            error: None,
            ..fail(String::new())
        },
        Err(e) => fail(e.to_string()),
    }
}

/// A test that could not be computed, and why.
fn untestable(test: &str, error: String) -> rf::AssociationTest {
    rf::AssociationTest {
        test: test.into(),
        method: None,
        p_value: None,
        z: None,
        chi_square: None,
        odds_ratio: None,
        table: None,
        error: Some(error),
    }
}

const TREND: &str = "chi_square_trend";
const FISHER: &str = "fisher_exact_bottom_vs_top_quartile";

fn trend_test(events: &[u64], totals: &[u64]) -> rf::AssociationTest {
    match m::cochran_armitage(events, totals, None) {
        Ok(t) => rf::AssociationTest {
            method: Some(
                "Cochran-Armitage trend over quartiles 1-4 (scores 1..4); z > 0: rate rises with the measure".into(),
            ),
            p_value: num(t.p_value),
            z: num(t.z),
            chi_square: num(t.chi_square),
            error: None,
            ..untestable(TREND, String::new())
        },
        Err(e) => untestable(TREND, e.to_string()),
    }
}

fn fisher_test(bottom: (u64, u64), top: (u64, u64)) -> rf::AssociationTest {
    // rows: bottom quartile, top quartile; columns: error, no error
    let table = [[bottom.0, bottom.1 - bottom.0], [top.0, top.1 - top.0]];
    match m::fisher_exact(table) {
        Ok(f) => rf::AssociationTest {
            table: Some(table),
            odds_ratio: f.odds_ratio.and_then(num),
            p_value: num(f.p_value),
            error: None,
            ..untestable(FISHER, String::new())
        },
        Err(e) => untestable(FISHER, e.to_string()),
    }
}

/// One row of the robustness sweep, for the interventional check.
#[derive(Debug, Clone)]
pub(crate) struct RobustRow {
    pub corruption: String,
    pub severity: u8,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
}

/// Corruptions that move a measure, and the sign of the move (−1: lower).
fn interventions(measure: &str) -> &'static [(&'static str, f64)] {
    match measure {
        "sharpness" => &[("gaussian_blur", -1.0), ("motion_blur", -1.0)],
        "contrast_rms" | "contrast_michelson" => &[("contrast", -1.0)],
        "brightness" => &[("brightness", 1.0)],
        _ => &[],
    }
}

/// Per-quartile counts of one measure over all test images (descriptive table).
#[derive(Debug, Clone, Copy, Default)]
struct QuartileCounts {
    normals: u64,
    fp: u64,
    pneumonia: u64,
    fn_: u64,
    lower: f64,
    upper: f64,
}

/// `(n, errors, lower, upper)` of one within-class quartile.
type Bucket = (u64, u64, f64, f64);

/// An error indicator against a measure within one class: quartiles of the
/// measure within the class, the tests, and the regression.
struct Group {
    /// The quartile edges and the four buckets, if computable.
    quartiles: Option<([f64; 3], [Bucket; 4])>,
    trend: rf::AssociationTest,
    fisher: rf::AssociationTest,
    logit: rf::Logit,
}

impl Group {
    fn new(values: &[f64], errors: &[u8]) -> Self {
        let quartiles = m::quartile_edges(values).ok().map(|edges| {
            let (min, max) = min_max(values);
            let mut q = [(0u64, 0u64, 0.0, 0.0); 4];
            for (i, b) in q.iter_mut().enumerate() {
                b.2 = if i == 0 { min } else { edges[i - 1] };
                b.3 = if i == 3 { max } else { edges[i] };
            }
            for (&v, &e) in values.iter().zip(errors) {
                let b = m::bucket_of(v, &edges);
                q[b].0 += 1;
                q[b].1 += e as u64;
            }
            (edges, q)
        });
        let (trend, fisher) = match &quartiles {
            Some((_, q)) => {
                let events: Vec<u64> = q.iter().map(|b| b.1).collect();
                let totals: Vec<u64> = q.iter().map(|b| b.0).collect();
                (
                    trend_test(&events, &totals),
                    fisher_test((q[0].1, q[0].0), (q[3].1, q[3].0)),
                )
            }
            None => (
                untestable(TREND, "no images in this class".into()),
                untestable(FISHER, "no images in this class".into()),
            ),
        };
        Group {
            quartiles,
            trend,
            fisher,
            logit: logit_fit(values, errors),
        }
    }

    /// The within-class quartile table; `fp` says which error it counts.
    fn table(&self, fp: bool) -> Option<rf::GroupTable> {
        let (edges, q) = self.quartiles.as_ref()?;
        Some(rf::GroupTable {
            quartile_edges: edges.iter().map(|&e| num(e)).collect(),
            quartiles: q
                .iter()
                .enumerate()
                .map(|(i, b)| rf::GroupQuartile {
                    q: i as u8 + 1,
                    lower: num(b.2),
                    upper: num(b.3),
                    n: b.0,
                    fp: fp.then_some(b.1),
                    fn_: (!fp).then_some(b.1),
                    rate: rate(b.1, b.0),
                })
                .collect(),
        })
    }

    /// (errors, n) in the bottom and top within-class quartiles.
    fn extremes(&self) -> Option<((u64, u64), (u64, u64))> {
        self.quartiles
            .as_ref()
            .map(|(_, q)| ((q[0].1, q[0].0), (q[3].1, q[3].0)))
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        })
}

/// What the hypotheses need of one measure.
struct MeasureResult {
    name: &'static str,
    fp: Group,
    fn_: Group,
    class_auc: Option<f64>,
}

/// `failure_modes.json`: for each measure (named by [`Quality::NAMES`]), quartile
/// edges over all test images with FP and FN counts per quartile (descriptive);
/// within-class quartiles (among normals for FP, among pneumonia images for FN)
/// with the trend test and Fisher's test (bottom vs top quartile); the logistic
/// regression of each error on the measure standardised within its class; the
/// measure's own AUC for pneumonia vs normal; then a verdict per hypothesis, with
/// the robustness sweep's corruption of the same measure as an interventional
/// check when `robustness` is given.
pub(crate) fn failure_modes(
    labels: &[u8],
    probs: &[f64],
    measures: &[Quality],
    threshold: f64,
    robustness: Option<&[RobustRow]>,
) -> rf::FailureModes {
    let preds: Vec<u8> = probs.iter().map(|&p| u8::from(p >= threshold)).collect();
    let normals = labels.iter().filter(|&&l| l == 0).count();
    let pneumonia = labels.len() - normals;
    let mut out_measures = Vec::new();
    let mut results: Vec<MeasureResult> = Vec::new();
    for (j, name) in Quality::NAMES.iter().enumerate() {
        let values: Vec<f64> = measures.iter().map(|q| q.values()[j]).collect();
        let Ok(edges) = m::quartile_edges(&values) else {
            continue;
        };
        let (min, max) = min_max(&values);
        let mut q = [QuartileCounts::default(); 4];
        for (i, qc) in q.iter_mut().enumerate() {
            qc.lower = if i == 0 { min } else { edges[i - 1] };
            qc.upper = if i == 3 { max } else { edges[i] };
        }
        let (mut fp_x, mut fp_y, mut fn_x, mut fn_y) = (vec![], vec![], vec![], vec![]);
        for i in 0..values.len() {
            let b = m::bucket_of(values[i], &edges);
            if labels[i] == 0 {
                let e = u8::from(preds[i] == 1);
                q[b].normals += 1;
                q[b].fp += e as u64;
                fp_x.push(values[i]);
                fp_y.push(e);
            } else {
                let e = u8::from(preds[i] == 0);
                q[b].pneumonia += 1;
                q[b].fn_ += e as u64;
                fn_x.push(values[i]);
                fn_y.push(e);
            }
        }
        let quartiles: Vec<rf::Quartile> = q
            .iter()
            .enumerate()
            .map(|(i, c)| rf::Quartile {
                q: i as u8 + 1,
                lower: num(c.lower),
                upper: num(c.upper),
                normals: c.normals,
                fp: c.fp,
                fp_rate: rate(c.fp, c.normals),
                pneumonia: c.pneumonia,
                r#fn: c.fn_,
                fn_rate: rate(c.fn_, c.pneumonia),
            })
            .collect();
        let fp = Group::new(&fp_x, &fp_y);
        let fn_ = Group::new(&fn_x, &fn_y);
        let class_auc = m::roc_auc(labels, &values).ok();
        out_measures.push(rf::MeasureModes {
            measure: name.to_string(),
            class_auc: class_auc.and_then(num),
            quartile_edges: edges.iter().map(|&e| num(e)).collect(),
            quartiles,
            fp_by_quartile: fp.table(true),
            fn_by_quartile: fn_.table(false),
            fp_test: fp.trend.clone(),
            fn_test: fn_.trend.clone(),
            fp_fisher: Some(fp.fisher.clone()),
            fn_fisher: Some(fn_.fisher.clone()),
            logit_fp: fp.logit.clone(),
            logit_fn: fn_.logit.clone(),
        });
        results.push(MeasureResult {
            name,
            fp,
            fn_,
            class_auc,
        });
    }
    let hypotheses: Vec<rf::Hypothesis> = HYPOTHESES
        .iter()
        .map(|h| {
            let found = results.iter().find(|r| r.name == h.measure);
            verdict(h, found, threshold, normals, pneumonia, robustness)
        })
        .collect();
    let count = |pred: u8, label: u8| {
        preds
            .iter()
            .zip(labels)
            .filter(|(p, l)| **p == pred && **l == label)
            .count() as u64
    };
    rf::FailureModes {
        threshold,
        n_test: Some(labels.len() as u64),
        normals: Some(normals as u64),
        pneumonia: Some(pneumonia as u64),
        false_positives: Some(count(1, 0)),
        false_negatives: Some(count(0, 1)),
        measures_note: Some("measures on the raw u8 test image scaled to [0,1]; sharpness = variance of the 3x3 Laplacian; entropy in bits over 256 bins. quartile_edges/quartiles: quartiles over ALL test images (descriptive; the classes differ in these measures, so class sizes per quartile are unequal). fp_by_quartile / fn_by_quartile: quartiles WITHIN normals / pneumonia images, on which fp_test/fn_test (Cochran-Armitage trend) and fp_fisher/fn_fisher (bottom vs top quartile) are computed. Quartile q holds edges[q-2] < x <= edges[q-1]. class_auc: the measure's AUC for pneumonia vs normal (0.5 = same distribution; far from 0.5 = the measure is itself a proxy for the label)".into()),
        measures: out_measures,
        decision_rule: Some(format!(
            "supported iff the logistic regression of the error on the measure standardised within its class has Wald p < {ALPHA} and its coefficient has the hypothesised sign (either sign for 'either direction'); the interventional check (the robustness sweep's corruption of the same measure) is reported beside it and does not change the verdict"
        )),
        hypotheses,
    }
}

fn fmt_rate(k: u64, n: u64) -> String {
    if n == 0 {
        "n/a".into()
    } else {
        format!("{:.1}% ({k}/{n})", 100.0 * k as f64 / n as f64)
    }
}

fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

/// The interventional check: for each corruption that moves the hypothesis'
/// measure, the error rate on the clean test set and at severities 1–5, and
/// whether its change agrees with the sign of the observational association.
fn intervention(
    h: &Hypothesis,
    coef: Option<f64>,
    robustness: Option<&[RobustRow]>,
) -> (Option<Vec<rf::Intervention>>, String) {
    let Some(rows) = robustness else {
        return (None, String::new());
    };
    let error_rate = |r: &RobustRow| match h.outcome {
        Outcome::Fp => r.specificity.map(|s| 1.0 - s),
        Outcome::Fn => r.sensitivity.map(|s| 1.0 - s),
    };
    let clean = rows
        .iter()
        .find(|r| r.corruption == "none")
        .and_then(error_rate);
    let mut out = Vec::new();
    let mut text = Vec::new();
    for &(corruption, effect) in interventions(h.measure) {
        let mut rates: Vec<Option<f64>> = vec![clean];
        let mut sev: Vec<&RobustRow> = rows.iter().filter(|r| r.corruption == corruption).collect();
        if sev.is_empty() {
            continue;
        }
        sev.sort_by_key(|r| r.severity);
        rates.extend(sev.iter().map(|r| error_rate(r)));
        let (Some(first), Some(Some(last))) = (clean, rates.last().copied()) else {
            continue;
        };
        let change = last - first;
        // the corruption moves the measure by `effect`; the observational
        // association predicts the error to move by effect × sign(coef)
        let consistent = coef
            .filter(|c| *c != 0.0 && change != 0.0)
            .map(|c| (effect * c).signum() == change.signum());
        out.push(rf::Intervention {
            corruption: corruption.to_string(),
            moves_measure: if effect < 0.0 { "lower" } else { "higher" }.into(),
            error_rate: rates.iter().map(|r| r.and_then(num)).collect(),
            change: num(change),
            consistent_with_association: consistent,
        });
        text.push(format!(
            "{corruption} (severity 1-5) moves it from {:.1}% to {:.1}%",
            100.0 * first,
            100.0 * last
        ));
    }
    if out.is_empty() {
        return (None, String::new());
    }
    let err = match h.outcome {
        Outcome::Fp => "FP rate among normals",
        Outcome::Fn => "FN rate among pneumonia images",
    };
    (
        Some(out),
        format!(" Interventional check on the {err}: {}.", text.join("; ")),
    )
}

fn verdict(
    h: &Hypothesis,
    found: Option<&MeasureResult>,
    threshold: f64,
    normals: usize,
    pneumonia: usize,
    robustness: Option<&[RobustRow]>,
) -> rf::Hypothesis {
    let (error_name, group, group_n) = match h.outcome {
        Outcome::Fp => ("false-positive", "normals", normals),
        Outcome::Fn => ("false-negative", "pneumonia images", pneumonia),
    };
    let mut out = rf::Hypothesis {
        id: h.id.into(),
        statement: h.statement.into(),
        measure: h.measure.into(),
        outcome: Some(
            match h.outcome {
                Outcome::Fp => "fp",
                Outcome::Fn => "fn",
            }
            .into(),
        ),
        direction: match (h.outcome, h.direction) {
            (Outcome::Fp, Direction::Lower) => "lower measure -> more FP",
            (Outcome::Fn, Direction::Lower) => "lower measure -> more FN",
            (Outcome::Fp, Direction::Either) => "either direction -> FP",
            (Outcome::Fn, Direction::Either) => "either direction -> FN",
        }
        .into(),
        supported: false,
        verdict: Some("not testable".into()),
        summary: format!("Not testable: the measure {} was not computed.", h.measure),
        evidence: None,
        intervention: None,
        class_auc: None,
    };
    let Some(res) = found else {
        return out;
    };
    let g = match h.outcome {
        Outcome::Fp => &res.fp,
        Outcome::Fn => &res.fn_,
    };
    let rates = match g.extremes() {
        Some(((k_lo, n_lo), (k_hi, n_hi))) => format!(
            "the {error_name} rate is {} in their lowest {} quartile vs {} in their highest",
            fmt_rate(k_lo, n_lo),
            h.measure,
            fmt_rate(k_hi, n_hi)
        ),
        None => format!("there are no {group}"),
    };
    let trend_txt = g
        .trend
        .p_value
        .map(|p| format!("; trend test p = {}", fmt_p(p)))
        .unwrap_or_default();
    let caveat = res
        .class_auc
        .filter(|a| (a - 0.5).abs() >= 0.15)
        .map(|a| {
            format!(
                " Caveat: {} itself differs between the classes (AUC {a:.2} for pneumonia vs normal), so the model may use it as a proxy for the label.",
                h.measure
            )
        })
        .unwrap_or_default();
    let (coef, p) = (g.logit.coef, g.logit.p_value);
    let (interv, interv_txt) = intervention(h, coef, robustness);
    out.intervention = interv;
    out.class_auc = res.class_auc.and_then(num);
    let (Some(coef), Some(p)) = (coef, p) else {
        let why = g.logit.error.as_deref().unwrap_or("no fit");
        out.summary = format!(
            "Not testable at threshold {threshold}: among {group_n} {group}, {rates}; the logistic regression could not be fitted ({why}){trend_txt}.{interv_txt}"
        );
        return out;
    };
    let significant = p < ALPHA;
    let right_way = match h.direction {
        Direction::Lower => coef < 0.0,
        Direction::Either => true,
    };
    let supported = significant && right_way;
    let verdict = if supported {
        "supported"
    } else if significant {
        "opposite direction"
    } else {
        "not supported"
    };
    let or = coef.exp();
    let (lo, hi) = (
        g.logit.ci_low.unwrap_or(f64::NAN).exp(),
        g.logit.ci_high.unwrap_or(f64::NAN).exp(),
    );
    let head = match verdict {
        "supported" if h.direction == Direction::Either => {
            if coef > 0.0 {
                "Supported (higher measure, more errors)"
            } else {
                "Supported (lower measure, more errors)"
            }
        }
        "supported" => "Supported",
        "opposite direction" => "Not supported (significant in the opposite direction)",
        _ => "Not supported",
    };
    let extremes = g.extremes();
    out.supported = supported;
    out.verdict = Some(verdict.into());
    out.evidence = Some(rf::Evidence {
        coef: num(coef),
        odds_ratio_per_sd: num(or),
        ci_low: num(lo),
        ci_high: num(hi),
        p_value: num(p),
        trend_p_value: g.trend.p_value,
        fisher_p_value: g.fisher.p_value,
        rate_bottom_quartile: extremes.and_then(|((k, n), _)| rate(k, n)),
        rate_top_quartile: extremes.and_then(|(_, (k, n))| rate(k, n)),
    });
    out.summary = format!(
        "{head}: among {group_n} {group} at threshold {threshold}, {rates}; odds ratio per SD of {} {:.2} (95% CI {:.2}-{:.2}), p = {}{trend_txt}.{interv_txt}{caveat}",
        h.measure,
        or,
        lo,
        hi,
        fmt_p(p)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(sharp: f64, contrast: f64) -> Quality {
        Quality {
            contrast_rms: contrast,
            contrast_michelson: 1.0,
            sharpness: sharp,
            brightness: 0.5,
            entropy: 6.0,
        }
    }

    /// Normals whose false positives are concentrated at low sharpness: the blur
    /// hypothesis is supported, the contrast one (contrast unrelated) is not.
    #[test]
    fn planted_blur_effect_is_found_and_contrast_is_not() {
        let mut labels = Vec::new();
        let mut probs = Vec::new();
        let mut qs = Vec::new();
        for i in 0..200 {
            let sharp = i as f64 / 200.0;
            // FP probability falls with sharpness: every 2nd image in the lowest
            // quarter, every 10th above
            let fp = if i < 50 { i % 2 == 0 } else { i % 10 == 0 };
            labels.push(0);
            probs.push(if fp { 0.8 } else { 0.2 });
            // contrast cycles independently of the errors
            qs.push(q(sharp, ((i * 37) % 200) as f64 / 200.0));
        }
        for i in 0..100 {
            labels.push(1);
            probs.push(if i % 5 == 0 { 0.3 } else { 0.9 });
            qs.push(q(i as f64 / 100.0, ((i * 53) % 100) as f64 / 100.0));
        }
        let v = serde_json::to_value(failure_modes(&labels, &probs, &qs, 0.5, None)).unwrap();
        assert_eq!(v["false_positives"], 25 + 15);
        let hyp = |id: &str| {
            v["hypotheses"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["id"] == id)
                .unwrap()
                .clone()
        };
        let blur = hyp("blur_causes_fp");
        assert_eq!(blur["supported"], true, "{blur}");
        assert!(blur["summary"].as_str().unwrap().starts_with("Supported"));
        assert!(blur["evidence"]["coef"].as_f64().unwrap() < 0.0);
        let contrast = hyp("low_contrast_causes_fp");
        assert_eq!(contrast["supported"], false, "{contrast}");
        // michelson is constant: its regression cannot be fitted, reported as such
        let mich = v["measures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["measure"] == "contrast_michelson")
            .unwrap();
        assert!(mich["logit_fp"]["coef"].is_null());
        assert!(mich["logit_fp"]["error"].is_string());
        // quartile counts add up
        let sharp = v["measures"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["measure"] == "sharpness")
            .unwrap();
        let total: u64 = sharp["quartiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["normals"].as_u64().unwrap() + q["pneumonia"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 300);
        assert_eq!(sharp["fp_test"]["test"], "chi_square_trend");
        assert!(sharp["fp_test"]["z"].as_f64().unwrap() < 0.0);
        // within-class quartiles among the 200 normals: 50 each, the bottom one
        // holding the 25 planted false positives
        let by_q = &sharp["fp_by_quartile"]["quartiles"];
        assert_eq!(
            (by_q[0]["n"].as_u64(), by_q[0]["fp"].as_u64()),
            (Some(50), Some(25))
        );
        assert_eq!(by_q[3]["n"], 50);
    }

    /// The robustness sweep's blur is reported as an interventional check that
    /// agrees with the observational association.
    #[test]
    fn intervention_is_reported_and_checked_for_consistency() {
        let mut labels = Vec::new();
        let mut probs = Vec::new();
        let mut qs = Vec::new();
        for i in 0..200 {
            let fp = if i < 50 { i % 2 == 0 } else { i % 10 == 0 };
            labels.push(u8::from(i >= 150));
            probs.push(if fp || i >= 150 { 0.8 } else { 0.2 });
            qs.push(q(i as f64 / 200.0, 0.5 + (i % 7) as f64 / 100.0));
        }
        let row = |c: &str, s: u8, spec: f64| RobustRow {
            corruption: c.into(),
            severity: s,
            sensitivity: Some(1.0),
            specificity: Some(spec),
        };
        let mut rows = vec![row("none", 0, 0.8)];
        for s in 1..=5u8 {
            rows.push(row("gaussian_blur", s, 0.8 - 0.15 * s as f64));
            rows.push(row("motion_blur", s, 0.8 - 0.1 * s as f64));
        }
        let v =
            serde_json::to_value(failure_modes(&labels, &probs, &qs, 0.5, Some(&rows))).unwrap();
        let blur = v["hypotheses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == "blur_causes_fp")
            .unwrap();
        assert_eq!(blur["supported"], true, "{blur}");
        let iv = blur["intervention"].as_array().unwrap();
        assert_eq!(iv.len(), 2);
        assert_eq!(iv[0]["corruption"], "gaussian_blur");
        assert_eq!(iv[0]["error_rate"].as_array().unwrap().len(), 6);
        assert!((iv[0]["change"].as_f64().unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(iv[0]["consistent_with_association"], true);
        let summary = blur["summary"].as_str().unwrap();
        assert!(
            summary.contains("gaussian_blur (severity 1-5) moves it from 20.0% to 95.0%"),
            "{summary}"
        );
        // no contrast corruption in the sweep: no interventional check
        let contrast = v["hypotheses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == "low_contrast_causes_fp")
            .unwrap();
        assert!(contrast["intervention"].is_null());
    }

    #[test]
    fn no_errors_is_not_testable_not_a_panic() {
        let labels = vec![0, 0, 0, 1, 1, 1];
        let probs = vec![0.1, 0.2, 0.3, 0.7, 0.8, 0.9];
        let qs: Vec<Quality> = (0..6).map(|i| q(i as f64, i as f64)).collect();
        let v = serde_json::to_value(failure_modes(&labels, &probs, &qs, 0.5, None)).unwrap();
        for h in v["hypotheses"].as_array().unwrap() {
            assert_eq!(h["supported"], false);
            assert_eq!(h["verdict"], "not testable", "{h}");
        }
        // the JSON has no NaN (serde_json would have written null)
        assert!(!serde_json::to_string(&v).unwrap().contains("NaN"));
    }
}
