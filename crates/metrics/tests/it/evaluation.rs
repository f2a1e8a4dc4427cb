//! Wilson intervals, McNemar's test, AUC and proportion heterogeneity and the
//! chi-square tail against statsmodels / scipy values in
//! `tests/reference/evaluation_reference.json` (made by
//! `make_evaluation_reference.py`), plus their documented edge cases.

use cxr_metrics as m;
use serde_json::Value;

fn reference() -> Value {
    let text = include_str!("../reference/evaluation_reference.json");
    serde_json::from_str(text).expect("the committed reference file is JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn u(v: &Value) -> u64 {
    v.as_u64().expect("an unsigned integer")
}

fn list(r: &Value, key: &str) -> Vec<Value> {
    r[key].as_array().expect("a list").clone()
}

/// |a − b| ≤ rel·|b| + abs.
#[track_caller]
fn close(what: &str, a: f64, b: f64, rel: f64, abs: f64) {
    assert!(
        (a - b).abs() <= rel * b.abs() + abs,
        "{what}: cxr {a:e} vs reference {b:e} (relative {:e})",
        (a - b).abs() / b.abs()
    );
}

#[test]
fn the_reference_file_is_what_the_tests_expect() {
    let r = reference();
    assert!(r["versions"]["statsmodels"].is_string());
    assert!(r["versions"]["scipy"].is_string());
    let wilson = list(&r, "wilson");
    let edges = |s: fn(&Value) -> bool| wilson.iter().any(s);
    assert!(edges(|c| u(&c["successes"]) == 0), "a successes = 0 case");
    assert!(
        edges(|c| u(&c["successes"]) == u(&c["n"])),
        "a successes = n case"
    );
    let grid = list(&r, "chi2_sf");
    let smallest = grid.iter().map(|row| f(&row[2])).fold(1.0, f64::min);
    let largest_df = grid.iter().map(|row| u(&row[0])).max().unwrap();
    assert!(smallest < 1e-100, "tails reach {smallest:e}");
    assert!(largest_df >= 10_000, "df up to {largest_df}");
}

/// scipy's `chi2.sf` to 1e-10 relative over df 1–100000 and tails below 1e-200,
/// and mpmath's 40-digit value to 1e-12 (scipy itself is ~1e-12 off in the far
/// tails at df 10000).
#[test]
fn chi2_sf_matches_scipy_and_mpmath() {
    let grid = list(&reference(), "chi2_sf");
    assert!(grid.len() > 200);
    for row in grid {
        let (df, x) = (u(&row[0]) as usize, f(&row[1]));
        let got = m::chi2_sf(x, df);
        close(
            &format!("chi2_sf({x}, {df}) vs scipy"),
            got,
            f(&row[2]),
            1e-10,
            0.0,
        );
        close(
            &format!("chi2_sf({x}, {df}) vs mpmath"),
            got,
            f(&row[3]),
            1e-12,
            0.0,
        );
    }
}

/// statsmodels' Wilson interval: 1e-12 relative, 1e-15 absolute (statsmodels'
/// upper bound at successes = n is 1 − 1 ulp; ours is exactly 1).
#[test]
fn wilson_matches_statsmodels() {
    for c in list(&reference(), "wilson") {
        let (s, n, conf) = (u(&c["successes"]), u(&c["n"]), f(&c["confidence"]));
        let ci = m::wilson_interval(s, n, conf).unwrap();
        let what = format!("wilson({s}, {n}, {conf})");
        assert_eq!(ci.estimate, f(&c["estimate"]), "{what} estimate");
        close(&format!("{what} low"), ci.low, f(&c["low"]), 1e-12, 1e-15);
        close(
            &format!("{what} high"),
            ci.high,
            f(&c["high"]),
            1e-12,
            1e-15,
        );
        if s == 0 {
            assert_eq!(ci.low, 0.0, "{what}");
        }
        if s == n {
            assert_eq!(ci.high, 1.0, "{what}");
        }
        assert!(ci.low <= ci.estimate && ci.estimate <= ci.high, "{what}");
    }
}

#[test]
fn wilson_rejects_bad_arguments() {
    assert_eq!(m::wilson_interval(0, 0, 0.95), Err(m::MetricsError::Empty));
    let e = m::wilson_interval(4, 3, 0.95).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid argument `successes`: 4 successes of 3 trials"
    );
    for conf in [0.0, 1.0, -0.5, 95.0, f64::NAN] {
        let e = m::wilson_interval(1, 3, conf).unwrap_err();
        assert!(e.to_string().contains("`confidence`"), "{conf}: {e}");
    }
    // the interval narrows as confidence falls
    let wide = m::wilson_interval(5, 20, 0.99).unwrap();
    let narrow = m::wilson_interval(5, 20, 0.8).unwrap();
    assert!(wide.low < narrow.low && narrow.high < wide.high);
}

/// statsmodels' McNemar: the chi-square statistic to 1e-14 relative, its p-value
/// to 1e-12, the exact p-value to 1e-10 (log-factorials; b + c up to 2500).
#[test]
fn mcnemar_matches_statsmodels() {
    for c in list(&reference(), "mcnemar") {
        let (b, cc) = (u(&c["b"]), u(&c["c"]));
        let t = m::mcnemar(b, cc).unwrap();
        let what = format!("mcnemar({b}, {cc})");
        assert_eq!((t.b, t.c, t.exact), (b, cc, b + cc < 25), "{what}");
        close(
            &format!("{what} p_exact"),
            t.p_exact,
            f(&c["p_exact"]),
            1e-10,
            0.0,
        );
        if b + cc == 0 {
            // documented choice: no disagreement is no evidence (statsmodels: inf, 0)
            assert_eq!(c["statsmodels_chi2"]["statistic"], "inf");
            assert_eq!((t.statistic, t.p_chi2, t.p_value()), (0.0, 1.0, 1.0));
            continue;
        }
        close(
            &format!("{what} statistic"),
            t.statistic,
            f(&c["statistic"]),
            1e-14,
            0.0,
        );
        close(
            &format!("{what} p_chi2"),
            t.p_chi2,
            f(&c["p_chi2"]),
            1e-12,
            0.0,
        );
        let report = if t.exact { t.p_exact } else { t.p_chi2 };
        assert_eq!(t.p_value(), report, "{what}");
    }
}

/// statsmodels' `combine_effects` Q, which it forms as Σwθ² − (Σwθ)²/Σw: that
/// cancellation leaves an absolute error of a few ulps of Σwθ², so Q is compared to
/// 1e-13·Σwθ²; the p-value to 1e-9 relative.
#[test]
fn auc_heterogeneity_matches_statsmodels() {
    for c in list(&reference(), "auc_heterogeneity") {
        let est: Vec<(f64, f64)> = c["estimates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (f(&g[0]), f(&g[1])))
            .collect();
        let h = m::auc_heterogeneity(&est).unwrap();
        let scale: f64 = est.iter().map(|(a, v)| a * a / v).sum();
        let what = format!("{est:?}");
        assert_eq!(h.df, u(&c["df"]) as usize, "{what} df");
        close(
            &format!("{what} Q"),
            h.statistic,
            f(&c["statistic"]),
            0.0,
            1e-13 * scale,
        );
        close(&format!("{what} p"), h.p_value, f(&c["p_value"]), 1e-9, 0.0);
    }
    // identical AUCs: no heterogeneity (up to the rounding of the weighted mean)
    let h = m::auc_heterogeneity(&[(0.87, 0.001), (0.87, 0.003), (0.87, 0.0005)]).unwrap();
    assert!(h.statistic.abs() < 1e-25, "{}", h.statistic);
    assert_eq!((h.df, h.p_value), (2, 1.0));
}

#[test]
fn auc_heterogeneity_takes_delong_variances_and_rejects_zero_variance() {
    // two subgroups scored by one model: one separates well, one does not
    let a_labels = [0, 0, 0, 1, 1, 0, 1, 1, 0, 1];
    let a_scores = [0.1, 0.3, 0.2, 0.8, 0.7, 0.4, 0.9, 0.35, 0.5, 0.6];
    let b_labels = [1, 0, 1, 0, 1, 0, 0, 1];
    let b_scores = [0.3, 0.6, 0.5, 0.2, 0.4, 0.7, 0.45, 0.8];
    let a = m::auc_ci_delong(&a_labels, &a_scores).unwrap();
    let b = m::auc_ci_delong(&b_labels, &b_scores).unwrap();
    let h = m::auc_heterogeneity(&[(a.auc, a.variance), (b.auc, b.variance)]).unwrap();
    // k = 2: Q = (θ₁ − θ₂)² / (v₁ + v₂)
    let q = (a.auc - b.auc).powi(2) / (a.variance + b.variance);
    close("two-group Q", h.statistic, q, 1e-14, 0.0);
    assert_eq!(h.df, 1);
    close("two-group p", h.p_value, m::chi2_sf(q, 1), 1e-15, 0.0);

    // a perfectly separated subgroup: DeLong variance 0 → an error naming it
    let perfect = m::auc_ci_delong(&[0, 0, 1, 1], &[0.1, 0.2, 0.8, 0.9]).unwrap();
    assert_eq!(perfect.variance, 0.0);
    let e =
        m::auc_heterogeneity(&[(a.auc, a.variance), (perfect.auc, perfect.variance)]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("group 1") && msg.contains("variance 0"),
        "{msg}"
    );
    for bad in [
        (0.8, -1e-3),
        (0.8, f64::NAN),
        (0.8, f64::INFINITY),
        (0.8, 5e-324),
    ] {
        let e = m::auc_heterogeneity(&[(0.7, 1e-3), bad]).unwrap_err();
        assert!(e.to_string().contains("group 1"), "{bad:?}: {e}");
    }
    for bad in [(1.5, 1e-3), (f64::NAN, 1e-3), (-0.1, 1e-3)] {
        let e = m::auc_heterogeneity(&[bad, (0.7, 1e-3)]).unwrap_err();
        assert!(e.to_string().contains("group 0: AUC"), "{bad:?}: {e}");
    }
    assert_eq!(m::auc_heterogeneity(&[]), Err(m::MetricsError::Empty));
    assert!(m::auc_heterogeneity(&[(0.7, 1e-3)]).is_err());
}

/// scipy's `chi2_contingency(correction=False)`: statistic 1e-12 relative, p-value
/// 1e-10 relative. Where scipy errors (a zero column), statistic 0 and p 1.
#[test]
fn proportion_heterogeneity_matches_scipy() {
    let mut zero_columns = 0;
    for c in list(&reference(), "proportion_heterogeneity") {
        let counts: Vec<(u64, u64)> = c["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (u(&g[0]), u(&g[1])))
            .collect();
        let h = m::proportion_heterogeneity(&counts).unwrap();
        let what = format!("{counts:?}");
        assert_eq!(h.df, counts.len() - 1, "{what} df");
        if c.get("scipy_error").is_some() {
            zero_columns += 1;
            assert_eq!((h.statistic, h.p_value), (0.0, 1.0), "{what}");
            continue;
        }
        assert_eq!(h.df, u(&c["df"]) as usize, "{what} df");
        close(
            &format!("{what} statistic"),
            h.statistic,
            f(&c["statistic"]),
            1e-12,
            0.0,
        );
        close(
            &format!("{what} p"),
            h.p_value,
            f(&c["p_value"]),
            1e-10,
            0.0,
        );
    }
    assert_eq!(zero_columns, 2, "both all-none and all-success cases");
}

#[test]
fn proportion_heterogeneity_rejects_bad_groups() {
    let e = m::proportion_heterogeneity(&[(3, 10), (0, 0), (1, 4)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid argument `counts`: group 1: no trials (n = 0)"
    );
    let e = m::proportion_heterogeneity(&[(3, 10), (1, 4), (6, 5)]).unwrap_err();
    assert!(e.to_string().contains("group 2: 6 successes of 5"), "{e}");
    assert_eq!(
        m::proportion_heterogeneity(&[]),
        Err(m::MetricsError::Empty)
    );
    assert!(m::proportion_heterogeneity(&[(3, 10)]).is_err());
}

/// Serialised field names are part of `cxr evaluate`'s output.
#[test]
fn results_serialise_with_their_field_names() {
    let ci = m::wilson_interval(3, 10, 0.95).unwrap();
    let v = serde_json::to_value(ci).unwrap();
    assert_eq!(v["estimate"], 0.3);
    let back: m::ProportionCi = serde_json::from_value(v).unwrap();
    assert_eq!(back, ci);
    let t = m::mcnemar(3, 12).unwrap();
    let v = serde_json::to_value(t).unwrap();
    assert_eq!(
        (v["b"].as_u64(), v["exact"].as_bool()),
        (Some(3), Some(true))
    );
    assert_eq!(serde_json::from_value::<m::McNemar>(v).unwrap(), t);
    let h = m::proportion_heterogeneity(&[(3, 10), (8, 10)]).unwrap();
    let v = serde_json::to_value(h).unwrap();
    assert_eq!(v["df"], 1);
    assert_eq!(serde_json::from_value::<m::Heterogeneity>(v).unwrap(), h);
}
