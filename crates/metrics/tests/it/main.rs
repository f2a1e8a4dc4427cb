//! Integration tests for cxr-metrics: every figure against scikit-learn (and an
//! independent O(m·n) DeLong) on the committed reference file made by
//! `tests/reference/make_reference.py`, property tests, and edge inputs.

mod edges;
mod properties;

use cxr_metrics as m;
use serde_json::Value;

/// Absolute tolerance for comparisons with the reference values.
const TOL: f64 = 1e-12;

fn reference() -> Value {
    let text = include_str!("../reference/sklearn_reference.json");
    serde_json::from_str(text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

/// Asserts |a − b| ≤ TOL (NaN equals NaN, +∞ equals a null/NaN reference), naming `what`.
fn check(what: &str, a: f64, b: f64) {
    let same =
        (a - b).abs() <= TOL || (a.is_nan() && b.is_nan()) || (a.is_infinite() && b.is_nan());
    assert!(same, "{what}: cxr {a} vs reference {b}");
}

fn check_vec(what: &str, a: &[f64], b: &[f64]) {
    assert_eq!(
        a.len(),
        b.len(),
        "{what}: length {} vs reference {}",
        a.len(),
        b.len()
    );
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        check(&format!("{what}[{i}]"), *x, *y);
    }
}

#[test]
fn every_case_matches_scikit_learn() {
    let r = reference();
    for c in r["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let labels: Vec<u8> = c["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        let scores = floats(&c["scores"]);

        for (drop, key) in [(false, "roc_drop_false"), (true, "roc_drop_true")] {
            let pts = m::roc_curve(&labels, &scores, drop).unwrap();
            let what = format!("{name} {key}");
            check_vec(
                &format!("{what} fpr"),
                &pts.iter().map(|p| p.fpr).collect::<Vec<_>>(),
                &floats(&c[key]["fpr"]),
            );
            check_vec(
                &format!("{what} tpr"),
                &pts.iter().map(|p| p.tpr).collect::<Vec<_>>(),
                &floats(&c[key]["tpr"]),
            );
            check_vec(
                &format!("{what} threshold"),
                &pts.iter().map(|p| p.threshold).collect::<Vec<_>>(),
                &floats(&c[key]["threshold"]),
            );
        }
        let pr = m::precision_recall_curve(&labels, &scores).unwrap();
        check_vec(
            &format!("{name} pr precision"),
            &pr.iter().map(|p| p.precision).collect::<Vec<_>>(),
            &floats(&c["pr"]["precision"]),
        );
        check_vec(
            &format!("{name} pr recall"),
            &pr.iter().map(|p| p.recall).collect::<Vec<_>>(),
            &floats(&c["pr"]["recall"]),
        );
        let thr: Vec<f64> = pr.iter().take(pr.len() - 1).map(|p| p.threshold).collect();
        check_vec(
            &format!("{name} pr threshold"),
            &thr,
            &floats(&c["pr"]["threshold"]),
        );

        check(
            &format!("{name} roc_auc"),
            m::roc_auc(&labels, &scores).unwrap(),
            c["roc_auc"].as_f64().unwrap(),
        );
        check(
            &format!("{name} average_precision"),
            m::average_precision(&labels, &scores).unwrap(),
            c["average_precision"].as_f64().unwrap(),
        );
        let conf = m::confusion(&labels, &scores, 0.5).unwrap();
        let t = &c["at_0_5"];
        for (k, v) in [
            ("accuracy", conf.accuracy()),
            ("precision", conf.precision()),
            ("recall", conf.recall()),
            ("specificity", conf.specificity()),
            ("f1", conf.f1()),
        ] {
            check(&format!("{name} {k}"), v, t[k].as_f64().unwrap());
        }
        assert_eq!(
            [conf.tp, conf.fp, conf.tn, conf.fn_],
            ["tp", "fp", "tn", "fn"].map(|k| t[k].as_u64().unwrap()),
            "{name} counts"
        );
        if c.get("brier").is_some() {
            check(
                &format!("{name} brier"),
                m::brier(&labels, &scores).unwrap(),
                c["brier"].as_f64().unwrap(),
            );
            check(
                &format!("{name} log_loss"),
                m::log_loss(&labels, &scores).unwrap(),
                c["log_loss"].as_f64().unwrap(),
            );
            let b = m::Binning::EqualWidth(15);
            check(
                &format!("{name} ece"),
                m::ece(&labels, &scores, b).unwrap(),
                c["ece_top_15"].as_f64().unwrap(),
            );
            check(
                &format!("{name} mce"),
                m::mce(&labels, &scores, b).unwrap(),
                c["mce_top_15"].as_f64().unwrap(),
            );
            check(
                &format!("{name} ece_pos"),
                m::ece_pos(&labels, &scores, b).unwrap(),
                c["ece_pos_15"].as_f64().unwrap(),
            );
        }
        let ci = m::auc_ci_delong(&labels, &scores).unwrap();
        let d = &c["delong"];
        check(
            &format!("{name} delong auc"),
            ci.auc,
            d["auc"].as_f64().unwrap(),
        );
        check(
            &format!("{name} delong variance"),
            ci.variance,
            d["variance"].as_f64().unwrap(),
        );
        check(
            &format!("{name} delong low"),
            ci.low,
            d["low"].as_f64().unwrap(),
        );
        check(
            &format!("{name} delong high"),
            ci.high,
            d["high"].as_f64().unwrap(),
        );
    }
}

#[test]
fn delong_test_matches_the_direct_computation() {
    let r = reference();
    let d = &r["delong_test"];
    let labels: Vec<u8> = d["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    let t = m::delong_test(&labels, &floats(&d["a"]), &floats(&d["b"])).unwrap();
    check("auc_a", t.auc_a, d["auc_a"].as_f64().unwrap());
    check("auc_b", t.auc_b, d["auc_b"].as_f64().unwrap());
    // z and p pass through a square root and the normal CDF: 1e-9 relative.
    let (z, p) = (d["z"].as_f64().unwrap(), d["p_value"].as_f64().unwrap());
    assert!((t.z - z).abs() <= 1e-9 * z.abs(), "z {} vs {z}", t.z);
    assert!((t.p_value - p).abs() <= 1e-9 * p, "p {} vs {p}", t.p_value);
}
