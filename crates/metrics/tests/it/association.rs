//! Fisher's exact test, the Cochran–Armitage trend test, logistic regression and
//! quartiles against scipy / statsmodels / numpy values in
//! `tests/reference/association_reference.json` (made by
//! `make_association_reference.py`).

use cxr_metrics as m;
use serde_json::Value;

fn reference() -> Value {
    let text = include_str!("../reference/association_reference.json");
    serde_json::from_str(text).expect("the committed reference file is JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array").iter().map(f).collect()
}

fn ints(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_u64().expect("an integer"))
        .collect()
}

/// |a − b| ≤ rel · max(1e-300, |b|) + abs.
#[track_caller]
fn close(what: &str, a: f64, b: f64, rel: f64, abs: f64) {
    assert!(
        (a - b).abs() <= rel * b.abs() + abs,
        "{what}: cxr {a} vs reference {b}"
    );
}

/// p-values: 1e-9 relative (log-factorials and the normal tail), 1e-14 absolute.
#[test]
fn fisher_matches_scipy() {
    for case in reference()["fisher"].as_array().unwrap() {
        let t = case["table"].as_array().unwrap();
        let row = |i: usize| {
            let r = ints(&t[i]);
            [r[0], r[1]]
        };
        let table = [row(0), row(1)];
        let r = m::fisher_exact(table).unwrap();
        close(
            &format!("{table:?} p"),
            r.p_value,
            f(&case["p_value"]),
            1e-9,
            1e-14,
        );
        match (&case["odds_ratio"], r.odds_ratio) {
            (Value::Null, None) => {}
            (v, Some(or)) => close(&format!("{table:?} odds ratio"), or, f(v), 1e-14, 0.0),
            (v, got) => panic!("{table:?}: odds ratio {got:?} vs reference {v}"),
        }
    }
}

/// z to 1e-10 relative, p to 1e-9 relative.
#[test]
fn cochran_armitage_matches_statsmodels() {
    for case in reference()["trend"].as_array().unwrap() {
        let events = ints(&case["events"]);
        let totals = ints(&case["totals"]);
        let scores = (!case["scores"].is_null()).then(|| floats(&case["scores"]));
        let r = m::cochran_armitage(&events, &totals, scores.as_deref()).unwrap();
        let what = format!("{events:?}/{totals:?}");
        close(&format!("{what} z"), r.z, f(&case["z"]), 1e-10, 0.0);
        close(
            &format!("{what} chi2"),
            r.chi_square,
            f(&case["chi_square"]),
            1e-10,
            0.0,
        );
        close(
            &format!("{what} p"),
            r.p_value,
            f(&case["p_value"]),
            1e-9,
            1e-15,
        );
    }
}

/// Coefficients and standard errors to 1e-8 relative (both are Newton fits to
/// 1e-12, but statsmodels stops on its own criterion), p to 1e-7 relative.
#[test]
fn logistic_regression_matches_statsmodels() {
    for case in reference()["logistic"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let x = floats(&case["x"]);
        let y: Vec<u8> = ints(&case["y"]).iter().map(|&v| v as u8).collect();
        let r = m::logistic_regression(&x, &y).unwrap();
        for (field, got, rel) in [
            ("intercept", r.intercept, 1e-8),
            ("coef", r.coef, 1e-8),
            ("se_intercept", r.se_intercept, 1e-8),
            ("se_coef", r.se_coef, 1e-8),
            ("z", r.z, 1e-8),
            ("p_value", r.p_value, 1e-7),
            ("ci_low", r.ci_low, 1e-8),
            ("ci_high", r.ci_high, 1e-8),
            ("log_likelihood", r.log_likelihood, 1e-10),
        ] {
            close(&format!("{name}.{field}"), got, f(&case[field]), rel, 1e-14);
        }
    }
}

#[test]
fn quartiles_match_numpy() {
    for case in reference()["quantiles"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let values = floats(&case["values"]);
        let edges = m::quartile_edges(&values).unwrap();
        let want = floats(&case["edges"]);
        for i in 0..3 {
            close(&format!("{name} edge {i}"), edges[i], want[i], 1e-14, 1e-15);
        }
        let buckets: Vec<usize> = floats(&case["probes"])
            .iter()
            .map(|&p| m::bucket_of(p, &want))
            .collect();
        let expect: Vec<usize> = ints(&case["buckets"]).iter().map(|&b| b as usize).collect();
        assert_eq!(buckets, expect, "{name}");
    }
}
