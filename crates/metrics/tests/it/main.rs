//! Integration tests for cxr-metrics: every figure against scikit-learn (and a
//! transcription of torchmetrics' binning, and the `roc_comparison` fast DeLong) in
//! the committed reference file made by `tests/reference/make_reference.py`;
//! property tests; edge inputs.

mod association;
mod edges;
mod evaluation;
mod prior;
mod properties;
mod scaling;
mod shift;

use cxr_metrics as m;
use serde_json::Value;

/// Absolute tolerance for comparisons with the reference values.
const TOL: f64 = 1e-12;

fn reference() -> Value {
    let text = include_str!("../reference/sklearn_reference.json");
    serde_json::from_str(text).expect("the committed reference file is JSON")
}

/// A reference number: a JSON number, or "inf" / "-inf" / "nan".
fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().expect("a float"),
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        Value::String(s) if s == "nan" => f64::NAN,
        other => panic!("not a reference number: {other}"),
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array").iter().map(num).collect()
}

fn labels_of(v: &Value) -> Vec<u8> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| u8::try_from(x.as_u64().expect("an integer")).expect("a small label"))
        .collect()
}

/// Asserts |a − b| ≤ TOL; equal infinities and NaN-vs-NaN also match. Names `what`.
fn check(what: &str, a: f64, b: f64) {
    let same = (a - b).abs() <= TOL || (a.is_nan() && b.is_nan()) || (a.is_infinite() && a == b);
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

fn cases() -> Vec<Value> {
    reference()["cases"].as_array().expect("cases").clone()
}

fn inputs(c: &Value) -> (String, Vec<u8>, Vec<f64>) {
    (
        c["name"].as_str().expect("a name").to_string(),
        labels_of(&c["labels"]),
        floats(&c["scores"]),
    )
}

#[test]
fn the_reference_file_is_what_the_tests_expect() {
    let r = reference();
    assert_eq!(num(&r["tolerance"]), TOL);
    assert!(r["versions"]["scikit-learn"].is_string());
    let names: Vec<String> = cases().iter().map(|c| inputs(c).0).collect();
    for want in [
        "random_200",
        "ties_rounded",
        "all_equal",
        "single_threshold",
        "perfect",
        "tiny_3",
        "logits_60",
        "extremes",
    ] {
        assert!(names.iter().any(|n| n == want), "case {want} missing");
    }
}

#[test]
fn roc_curves_match_scikit_learn() {
    for c in cases() {
        let (name, labels, scores) = inputs(&c);
        for (drop, key) in [(false, "roc_drop_false"), (true, "roc_drop_true")] {
            let pts = m::roc_curve(&labels, &scores, drop).unwrap();
            let what = format!("{name} {key}");
            let col = |f: fn(&m::RocPoint) -> f64| pts.iter().map(f).collect::<Vec<_>>();
            check_vec(
                &format!("{what} fpr"),
                &col(|p| p.fpr),
                &floats(&c[key]["fpr"]),
            );
            check_vec(
                &format!("{what} tpr"),
                &col(|p| p.tpr),
                &floats(&c[key]["tpr"]),
            );
            check_vec(
                &format!("{what} threshold"),
                &col(|p| p.threshold),
                &floats(&c[key]["threshold"]),
            );
        }
        check(
            &format!("{name} roc_auc"),
            m::roc_auc(&labels, &scores).unwrap(),
            num(&c["roc_auc"]),
        );
    }
}

#[test]
fn precision_recall_curves_match_scikit_learn() {
    for c in cases() {
        let (name, labels, scores) = inputs(&c);
        let pr = m::precision_recall_curve(&labels, &scores).unwrap();
        let col = |f: fn(&m::PrPoint) -> f64| pr.iter().map(f).collect::<Vec<_>>();
        check_vec(
            &format!("{name} pr precision"),
            &col(|p| p.precision),
            &floats(&c["pr"]["precision"]),
        );
        check_vec(
            &format!("{name} pr recall"),
            &col(|p| p.recall),
            &floats(&c["pr"]["recall"]),
        );
        // scikit-learn has one threshold fewer than points; ours ends in NaN
        let thr = col(|p| p.threshold);
        let (last, thr) = thr.split_last().unwrap();
        assert!(last.is_nan(), "{name}: last PR threshold {last}");
        check_vec(
            &format!("{name} pr threshold"),
            thr,
            &floats(&c["pr"]["threshold"]),
        );
        check(
            &format!("{name} average_precision"),
            m::average_precision(&labels, &scores).unwrap(),
            num(&c["average_precision"]),
        );
    }
}

#[test]
fn threshold_metrics_match_scikit_learn() {
    for c in cases() {
        let (name, labels, scores) = inputs(&c);
        let conf = m::confusion(&labels, &scores, 0.5).unwrap();
        let t = &c["at_0_5"];
        for (k, v) in [
            ("accuracy", conf.accuracy()),
            ("precision", conf.precision()),
            ("recall", conf.recall()),
            ("specificity", conf.specificity()),
            ("f1", conf.f1()),
        ] {
            check(&format!("{name} {k}"), v, num(&t[k]));
        }
        let want = ["tp", "fp", "tn", "fn"].map(|k| t[k].as_u64().unwrap());
        assert_eq!([conf.tp, conf.fp, conf.tn, conf.fn_], want, "{name} counts");
        let op = m::operating_point("x", 0.5, &labels, &scores);
        let report = m::binary_report(&labels, &scores, 0.5);
        if c.get("brier").is_none() {
            // logits: not probabilities
            assert!(matches!(op, Err(m::MetricsError::NotAProbability { .. })));
            assert!(matches!(
                report,
                Err(m::MetricsError::NotAProbability { .. })
            ));
            continue;
        }
        let op = op.unwrap();
        assert_eq!(
            [op.tp, op.fp, op.tn, op.fn_],
            want,
            "{name} operating point"
        );
        check(&format!("{name} op f1"), op.f1, num(&t["f1"]));
        let r = report.unwrap();
        assert_eq!([r.tp, r.fp, r.tn, r.fn_], want, "{name} report counts");
        for (k, v) in [
            ("accuracy", r.accuracy),
            ("precision", r.precision),
            ("recall", r.recall),
            ("specificity", r.specificity),
            ("f1", r.f1),
        ] {
            check(&format!("{name} report {k}"), v, num(&t[k]));
        }
        check(&format!("{name} report auc"), r.auc, num(&c["roc_auc"]));
        check(&format!("{name} report brier"), r.brier, num(&c["brier"]));
        check(
            &format!("{name} report log_loss"),
            r.log_loss,
            num(&c["log_loss"]),
        );
        let cal = &c["calibration"]["15"];
        check(&format!("{name} report ece"), r.ece, num(&cal["ece"]));
        check(
            &format!("{name} report ece_pos"),
            r.ece_pos,
            num(&cal["ece_pos"]),
        );
        check(&format!("{name} report mce"), r.mce, num(&cal["mce"]));
    }
}

#[test]
fn probability_scores_match_scikit_learn_and_torchmetrics_binning() {
    let mut seen = 0;
    for c in cases() {
        let (name, labels, probs) = inputs(&c);
        if c.get("brier").is_none() {
            continue;
        }
        seen += 1;
        check(
            &format!("{name} brier"),
            m::brier(&labels, &probs).unwrap(),
            num(&c["brier"]),
        );
        check(
            &format!("{name} log_loss"),
            m::log_loss(&labels, &probs).unwrap(),
            num(&c["log_loss"]),
        );
        for bins in [15usize, 10] {
            let cal = &c["calibration"][bins.to_string()];
            let b = m::Binning::EqualWidth(bins);
            let what = format!("{name} {bins} bins");
            check(
                &format!("{what} ece"),
                m::ece(&labels, &probs, b).unwrap(),
                num(&cal["ece"]),
            );
            check(
                &format!("{what} mce"),
                m::mce(&labels, &probs, b).unwrap(),
                num(&cal["mce"]),
            );
            check(
                &format!("{what} ece_pos"),
                m::ece_pos(&labels, &probs, b).unwrap(),
                num(&cal["ece_pos"]),
            );
            for (kind, key) in [
                (m::CalibrationKind::Positive, "bins_pos"),
                (m::CalibrationKind::TopLabel, "bins_top"),
            ] {
                let got = m::reliability_bins(&labels, &probs, b, kind).unwrap();
                let want = &cal[key];
                let counts: Vec<u64> = want["count"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap())
                    .collect();
                assert_eq!(
                    got.iter().map(|x| x.count as u64).collect::<Vec<_>>(),
                    counts,
                    "{what} {key} counts"
                );
                let col = |f: fn(&m::ReliabilityBin) -> f64| got.iter().map(f).collect::<Vec<_>>();
                check_vec(
                    &format!("{what} {key} confidence"),
                    &col(|x| x.confidence),
                    &floats(&want["confidence"]),
                );
                check_vec(
                    &format!("{what} {key} accuracy"),
                    &col(|x| x.accuracy),
                    &floats(&want["accuracy"]),
                );
            }
        }
    }
    assert!(seen >= 7, "only {seen} probability cases");
}

#[test]
fn delong_matches_the_reference_implementation() {
    for c in cases() {
        let (name, labels, scores) = inputs(&c);
        let ci = m::auc_ci_delong(&labels, &scores).unwrap();
        let d = &c["delong"];
        check(&format!("{name} delong auc"), ci.auc, num(&d["auc"]));
        check(
            &format!("{name} delong variance"),
            ci.variance,
            num(&d["variance"]),
        );
        check(&format!("{name} delong low"), ci.low, num(&d["low"]));
        check(&format!("{name} delong high"), ci.high, num(&d["high"]));
    }
}

#[test]
fn delong_test_matches_the_reference_implementation() {
    let r = reference();
    let d = &r["delong_test"];
    let case = cases()
        .into_iter()
        .find(|c| c["name"] == d["case"])
        .expect("the case of model A");
    let (_, labels, a) = inputs(&case);
    let t = m::delong_test(&labels, &a, &floats(&d["b"])).unwrap();
    check("auc_a", t.auc_a, num(&d["auc_a"]));
    check("auc_b", t.auc_b, num(&d["auc_b"]));
    check("variance", t.variance, num(&d["variance"]));
    // z and p pass through a square root and the normal tail: 1e-9 relative.
    let (z, p) = (num(&d["z"]), num(&d["p_value"]));
    assert!((t.z - z).abs() <= 1e-9 * z.abs(), "z {} vs {z}", t.z);
    assert!((t.p_value - p).abs() <= 1e-9 * p, "p {} vs {p}", t.p_value);
    assert!(
        p < 0.05,
        "the reference pair should differ clearly, p = {p}"
    );
    // swapping the models flips z and keeps p
    let s = m::delong_test(&labels, &floats(&d["b"]), &a).unwrap();
    assert!((s.z + t.z).abs() <= 1e-12 && (s.p_value - t.p_value).abs() <= 1e-15);
}
