//! Measured failure modes: error rates by quartile of each image-quality measure,
//! tests of association, and verdicts on the study's hypotheses.

use cxr_data::Quality;
use cxr_metrics as m;
use serde_json::{Value, json};

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

/// Per-quartile counts of one measure.
#[derive(Debug, Clone, Copy, Default)]
struct QuartileCounts {
    normals: u64,
    fp: u64,
    pneumonia: u64,
    fn_: u64,
    lower: f64,
    upper: f64,
}

fn rate(k: u64, n: u64) -> Value {
    if n == 0 {
        Value::Null
    } else {
        json!(k as f64 / n as f64)
    }
}

/// A JSON number, or null for a non-finite value.
fn num(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

/// The logistic regression of an error indicator on the measure standardised
/// within the group (mean 0, SD 1), as JSON.
fn logit_json(values: &[f64], errors: &[u8]) -> Value {
    let n = values.len();
    let events = errors.iter().filter(|&&e| e == 1).count();
    let base = json!({"n": n, "events": events, "predictor": "measure standardised within the group (per SD)"});
    let fail = |reason: String| {
        let mut v = base.clone();
        for k in ["coef", "ci_low", "ci_high", "p_value", "odds_ratio_per_sd"] {
            v[k] = Value::Null;
        }
        v["error"] = reason.into();
        v
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
        Ok(f) => {
            let mut v = base;
            v["coef"] = num(f.coef);
            v["se"] = num(f.se_coef);
            v["ci_low"] = num(f.ci_low);
            v["ci_high"] = num(f.ci_high);
            v["p_value"] = num(f.p_value);
            v["odds_ratio_per_sd"] = num(f.coef.exp());
            v["intercept"] = num(f.intercept);
            v["mean"] = num(mean);
            v["sd"] = num(sd);
            v
        }
        Err(e) => fail(e.to_string()),
    }
}

fn trend_json(events: &[u64], totals: &[u64]) -> Value {
    match m::cochran_armitage(events, totals, None) {
        Ok(t) => json!({
            "test": "chi_square_trend",
            "method": "Cochran-Armitage trend over quartiles 1-4 (scores 1..4); z > 0: rate rises with the measure",
            "z": num(t.z),
            "chi_square": num(t.chi_square),
            "p_value": num(t.p_value),
        }),
        Err(e) => {
            json!({"test": "chi_square_trend", "z": null, "chi_square": null, "p_value": null, "error": e.to_string()})
        }
    }
}

fn fisher_json(bottom: (u64, u64), top: (u64, u64)) -> Value {
    // rows: bottom quartile, top quartile; columns: error, no error
    let table = [[bottom.0, bottom.1 - bottom.0], [top.0, top.1 - top.0]];
    match m::fisher_exact(table) {
        Ok(f) => json!({
            "test": "fisher_exact_bottom_vs_top_quartile",
            "table": table,
            "odds_ratio": f.odds_ratio.map(num).unwrap_or(Value::Null),
            "p_value": num(f.p_value),
        }),
        Err(e) => {
            json!({"test": "fisher_exact_bottom_vs_top_quartile", "p_value": null, "error": e.to_string()})
        }
    }
}

/// `failure_modes.json`: for each measure (columns of `measures`, named by
/// [`Quality::NAMES`]), quartile edges over all test images, FP and FN counts and
/// rates per quartile, the trend test and Fisher's test (bottom vs top quartile)
/// for each error, and the logistic regression of each error on the standardised
/// measure; then a verdict per hypothesis.
pub(crate) fn failure_modes(
    labels: &[u8],
    probs: &[f64],
    measures: &[Quality],
    threshold: f64,
) -> Value {
    let preds: Vec<u8> = probs.iter().map(|&p| u8::from(p >= threshold)).collect();
    let normals = labels.iter().filter(|&&l| l == 0).count();
    let pneumonia = labels.len() - normals;
    let mut out_measures = Vec::new();
    let mut logits: Vec<(String, Value, Value, Vec<QuartileCounts>)> = Vec::new();
    for (j, name) in Quality::NAMES.iter().enumerate() {
        let values: Vec<f64> = measures.iter().map(|q| q.values()[j]).collect();
        let Ok(edges) = m::quartile_edges(&values) else {
            continue;
        };
        let (min, max) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let mut q = [QuartileCounts::default(); 4];
        for (i, qc) in q.iter_mut().enumerate() {
            qc.lower = if i == 0 { min } else { edges[i - 1] };
            qc.upper = if i == 3 { max } else { edges[i] };
        }
        let mut fp_x = Vec::new();
        let mut fp_y = Vec::new();
        let mut fn_x = Vec::new();
        let mut fn_y = Vec::new();
        for i in 0..values.len() {
            let b = m::bucket_of(values[i], &edges);
            if labels[i] == 0 {
                q[b].normals += 1;
                let e = u8::from(preds[i] == 1);
                q[b].fp += e as u64;
                fp_x.push(values[i]);
                fp_y.push(e);
            } else {
                q[b].pneumonia += 1;
                let e = u8::from(preds[i] == 0);
                q[b].fn_ += e as u64;
                fn_x.push(values[i]);
                fn_y.push(e);
            }
        }
        let quartiles: Vec<Value> = q
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({
                    "q": i + 1,
                    "lower": num(c.lower),
                    "upper": num(c.upper),
                    "normals": c.normals,
                    "fp": c.fp,
                    "fp_rate": rate(c.fp, c.normals),
                    "pneumonia": c.pneumonia,
                    "fn": c.fn_,
                    "fn_rate": rate(c.fn_, c.pneumonia),
                })
            })
            .collect();
        let fp_events: Vec<u64> = q.iter().map(|c| c.fp).collect();
        let fp_totals: Vec<u64> = q.iter().map(|c| c.normals).collect();
        let fn_events: Vec<u64> = q.iter().map(|c| c.fn_).collect();
        let fn_totals: Vec<u64> = q.iter().map(|c| c.pneumonia).collect();
        let logit_fp = logit_json(&fp_x, &fp_y);
        let logit_fn = logit_json(&fn_x, &fn_y);
        out_measures.push(json!({
            "measure": name,
            "quartile_edges": edges.iter().map(|&e| num(e)).collect::<Vec<_>>(),
            "quartiles": quartiles,
            "fp_test": trend_json(&fp_events, &fp_totals),
            "fn_test": trend_json(&fn_events, &fn_totals),
            "fp_fisher": fisher_json((q[0].fp, q[0].normals), (q[3].fp, q[3].normals)),
            "fn_fisher": fisher_json((q[0].fn_, q[0].pneumonia), (q[3].fn_, q[3].pneumonia)),
            "logit_fp": logit_fp,
            "logit_fn": logit_fn,
        }));
        logits.push((
            name.to_string(),
            out_measures
                .last()
                .map(|v| v["logit_fp"].clone())
                .unwrap_or_default(),
            out_measures
                .last()
                .map(|v| v["logit_fn"].clone())
                .unwrap_or_default(),
            q.to_vec(),
        ));
    }
    let hypotheses: Vec<Value> = HYPOTHESES
        .iter()
        .map(|h| {
            let found = logits.iter().find(|(n, ..)| n == h.measure);
            let trend = out_measures
                .iter()
                .find(|v| v["measure"] == h.measure)
                .map(|v| match h.outcome {
                    Outcome::Fp => v["fp_test"].clone(),
                    Outcome::Fn => v["fn_test"].clone(),
                })
                .unwrap_or(Value::Null);
            verdict(h, found, &trend, threshold, normals, pneumonia)
        })
        .collect();
    json!({
        "threshold": threshold,
        "n_test": labels.len(),
        "normals": normals,
        "pneumonia": pneumonia,
        "false_positives": preds.iter().zip(labels).filter(|(p, l)| **p == 1 && **l == 0).count(),
        "false_negatives": preds.iter().zip(labels).filter(|(p, l)| **p == 0 && **l == 1).count(),
        "measures_note": "measures on the raw u8 test image scaled to [0,1]; sharpness = variance of the 3x3 Laplacian; entropy in bits over 256 bins; quartile q holds edges[q-2] < x <= edges[q-1]",
        "measures": out_measures,
        "decision_rule": format!(
            "supported iff the logistic regression of the error on the standardised measure has Wald p < {ALPHA} and its coefficient has the hypothesised sign (either sign for 'either direction')"
        ),
        "hypotheses": hypotheses,
    })
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

fn verdict(
    h: &Hypothesis,
    found: Option<&(String, Value, Value, Vec<QuartileCounts>)>,
    trend: &Value,
    threshold: f64,
    normals: usize,
    pneumonia: usize,
) -> Value {
    let (error_name, group, group_n) = match h.outcome {
        Outcome::Fp => ("false-positive", "normals", normals),
        Outcome::Fn => ("false-negative", "pneumonia images", pneumonia),
    };
    let mut out = json!({
        "id": h.id,
        "statement": h.statement,
        "measure": h.measure,
        "outcome": match h.outcome { Outcome::Fp => "fp", Outcome::Fn => "fn" },
        "direction": match (h.outcome, h.direction) {
            (Outcome::Fp, Direction::Lower) => "lower measure -> more FP",
            (Outcome::Fn, Direction::Lower) => "lower measure -> more FN",
            (Outcome::Fp, Direction::Either) => "either direction -> FP",
            (Outcome::Fn, Direction::Either) => "either direction -> FN",
        },
    });
    let Some((_, logit_fp, logit_fn, q)) = found else {
        out["supported"] = false.into();
        out["verdict"] = "not testable".into();
        out["summary"] =
            format!("Not testable: the measure {} was not computed.", h.measure).into();
        return out;
    };
    let logit = match h.outcome {
        Outcome::Fp => logit_fp,
        Outcome::Fn => logit_fn,
    };
    let (k_lo, n_lo, k_hi, n_hi) = match h.outcome {
        Outcome::Fp => (q[0].fp, q[0].normals, q[3].fp, q[3].normals),
        Outcome::Fn => (q[0].fn_, q[0].pneumonia, q[3].fn_, q[3].pneumonia),
    };
    let rates = format!(
        "the {error_name} rate is {} in the lowest {} quartile vs {} in the highest",
        fmt_rate(k_lo, n_lo),
        h.measure,
        fmt_rate(k_hi, n_hi)
    );
    let trend_txt = trend["p_value"]
        .as_f64()
        .map(|p| format!("; trend test p = {}", fmt_p(p)))
        .unwrap_or_default();
    let (coef, p) = (logit["coef"].as_f64(), logit["p_value"].as_f64());
    let (Some(coef), Some(p)) = (coef, p) else {
        let why = logit["error"].as_str().unwrap_or("no fit").to_string();
        out["supported"] = false.into();
        out["verdict"] = "not testable".into();
        out["summary"] = format!(
            "Not testable at threshold {threshold}: among {group_n} {group}, {rates}; the logistic regression could not be fitted ({why}){trend_txt}."
        )
        .into();
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
        logit["ci_low"].as_f64().unwrap_or(f64::NAN).exp(),
        logit["ci_high"].as_f64().unwrap_or(f64::NAN).exp(),
    );
    let head = match verdict {
        "supported" => "Supported",
        "opposite direction" => "Not supported (significant in the opposite direction)",
        _ => "Not supported",
    };
    out["supported"] = supported.into();
    out["verdict"] = verdict.into();
    out["evidence"] = json!({
        "coef": num(coef),
        "odds_ratio_per_sd": num(or),
        "ci_low": num(lo),
        "ci_high": num(hi),
        "p_value": num(p),
        "trend_p_value": trend["p_value"].clone(),
        "rate_bottom_quartile": rate(k_lo, n_lo),
        "rate_top_quartile": rate(k_hi, n_hi),
    });
    out["summary"] = format!(
        "{head}: among {group_n} {group} at threshold {threshold}, {rates}; odds ratio per SD of {} {:.2} (95% CI {:.2}-{:.2}), p = {}{trend_txt}.",
        h.measure,
        or,
        lo,
        hi,
        fmt_p(p)
    )
    .into();
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
        let v = failure_modes(&labels, &probs, &qs, 0.5);
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
    }

    #[test]
    fn no_errors_is_not_testable_not_a_panic() {
        let labels = vec![0, 0, 0, 1, 1, 1];
        let probs = vec![0.1, 0.2, 0.3, 0.7, 0.8, 0.9];
        let qs: Vec<Quality> = (0..6).map(|i| q(i as f64, i as f64)).collect();
        let v = failure_modes(&labels, &probs, &qs, 0.5);
        for h in v["hypotheses"].as_array().unwrap() {
            assert_eq!(h["supported"], false);
            assert_eq!(h["verdict"], "not testable", "{h}");
        }
        // the JSON has no NaN (serde_json would have written null)
        assert!(!serde_json::to_string(&v).unwrap().contains("NaN"));
    }
}
