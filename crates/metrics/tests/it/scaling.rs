//! Bias-corrected temperature scaling against scikit-learn's unpenalised logistic
//! regression in `tests/reference/scaling_reference.json` (made by
//! `make_scaling_reference.py`); the mean-matches-prevalence property; bad input.

use cxr_metrics::{self as m, BiasCorrectedScaling, EmSettings, MetricsError as E};
use proptest::prelude::*;
use serde_json::Value;

/// Relative tolerance against scikit-learn's Newton–Cholesky fit. Both sides are
/// Newton to convergence; what is left is rounding and cxr's 1e-12 ridge on the
/// standardised slope (about 1e-11 relative). Observed: about 1e-13 at most.
const REL: f64 = 1e-6;

fn reference() -> Value {
    let text = include_str!("../reference/scaling_reference.json");
    serde_json::from_str(text).expect("the committed reference file is JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn case(c: &Value) -> (String, Vec<f64>, Vec<u8>) {
    let z = c["logits"].as_array().unwrap().iter().map(f).collect();
    let y = c["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| u8::try_from(v.as_u64().unwrap()).unwrap())
        .collect();
    (c["name"].as_str().unwrap().to_string(), z, y)
}

fn mean(v: impl Iterator<Item = f64>, n: usize) -> f64 {
    v.sum::<f64>() / n as f64
}

#[test]
fn the_scaling_reference_file_is_what_the_tests_expect() {
    let r = reference();
    assert!(r["versions"]["scikit-learn"].is_string());
    let names: Vec<&str> = r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in [
        "mixture_1000",
        "imbalanced_074_524",
        "overlap_2000",
        "overconfident_300",
        "ties_700",
    ] {
        assert!(names.contains(&want), "case {want} missing");
    }
}

#[test]
fn fits_match_scikit_learn() {
    let mut worst: f64 = 0.0;
    for c in reference()["cases"].as_array().unwrap() {
        let (name, z, y) = case(c);
        let got = m::fit_bias_corrected_scaling(&z, &y).unwrap();
        let (scale, bias) = (f(&c["scale"]), f(&c["bias"]));
        let rel_scale = (got.scale - scale).abs() / scale.abs();
        let rel_bias = (got.bias - bias).abs() / bias.abs();
        worst = worst.max(rel_scale).max(rel_bias);
        assert!(
            rel_scale <= REL && rel_bias <= REL,
            "{name}: cxr {got:?} vs scikit-learn ({scale}, {bias})"
        );
        // the fitted probabilities average the labels ...
        let p = mean(z.iter().map(|&v| got.apply(v)), z.len());
        let prevalence = f(&c["prevalence"]);
        assert!(
            (p - prevalence).abs() <= 1e-9,
            "{name}: {p} vs {prevalence}"
        );
        // ... so the EM on the fitting set returns its prevalence
        let probs: Vec<f64> = z.iter().map(|&v| got.apply(v)).collect();
        let em = m::em_prevalence(&probs, prevalence, EmSettings::default()).unwrap();
        assert!((em.estimate - prevalence).abs() <= 1e-9, "{name}: {em:?}");
        assert_eq!(em.iterations, 1, "{name}: {em:?}");
    }
    eprintln!("largest relative difference from scikit-learn's logistic regression: {worst:e}");
}

#[test]
fn the_bias_fixes_what_temperature_scaling_leaves() {
    // the validation-like case: temperature scaling alone misses the prevalence
    let r = reference();
    let c = r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "imbalanced_074_524")
        .unwrap();
    let (_, z, y) = case(c);
    let prevalence = f(&c["prevalence"]);
    let t = m::fit_temperature(&z, &y).unwrap();
    let p_ts = mean(m::apply_temperature(&z, t).into_iter(), z.len());
    let s = m::fit_bias_corrected_scaling(&z, &y).unwrap();
    let p_bcts = mean(z.iter().map(|&v| s.apply(v)), z.len());
    assert!((p_ts - prevalence).abs() > 0.01, "TS mean {p_ts}");
    assert!((p_bcts - prevalence).abs() < 1e-12, "BCTS mean {p_bcts}");
    // and a lower NLL than temperature scaling (one more free parameter)
    let nll = |p: &dyn Fn(f64) -> f64| {
        -mean(
            z.iter().zip(&y).map(|(&v, &l)| {
                let q = p(v);
                if l == 1 { q.ln() } else { (1.0 - q).ln() }
            }),
            z.len(),
        )
    };
    let ts = BiasCorrectedScaling {
        scale: 1.0 / t,
        bias: 0.0,
    };
    assert!(nll(&|v| s.apply(v)) < nll(&|v| ts.apply(v)));
    // serialised with the documented names
    let json = serde_json::to_value(s).unwrap();
    assert!(json.get("scale").is_some() && json.get("bias").is_some());
}

#[test]
fn bad_input_is_an_error() {
    let fit = m::fit_bias_corrected_scaling;
    assert_eq!(
        fit(&[0.1, 0.2], &[0]),
        Err(E::LengthMismatch {
            labels: 1,
            scores: 2
        })
    );
    assert_eq!(fit(&[], &[]), Err(E::Empty));
    assert_eq!(
        fit(&[0.1, 0.2], &[0, 2]),
        Err(E::BadLabel { index: 1, value: 2 })
    );
    assert_eq!(
        fit(&[0.1, f64::NAN], &[0, 1]),
        Err(E::NonFinite { index: 1 })
    );
    assert_eq!(
        fit(&[0.1, f64::INFINITY], &[0, 1]),
        Err(E::NonFinite { index: 1 })
    );
    assert_eq!(fit(&[0.1, 0.2], &[1, 1]), Err(E::SingleClass { class: 1 }));
    assert_eq!(fit(&[0.1, 0.2], &[0, 0]), Err(E::SingleClass { class: 0 }));
}

/// Labels with both classes and finite logits: continuous, on a coarse grid
/// (ties), or separated (class 1 above every class 0).
fn labelled_logits() -> impl Strategy<Value = (Vec<f64>, Vec<u8>)> {
    (2usize..200, 0u8..3).prop_flat_map(|(n, kind)| {
        let z = match kind {
            0 => proptest::collection::vec(-30.0f64..30.0, n).boxed(),
            _ => proptest::collection::vec((-4i32..=4).prop_map(f64::from), n).boxed(),
        };
        (z, proptest::collection::vec(0u8..=1, n), Just(kind))
            .prop_map(|(z, y, kind)| {
                if kind == 2 {
                    // separate: label by the sign, ties at 0 to either class
                    let y = z
                        .iter()
                        .zip(&y)
                        .map(|(&v, &l)| if v == 0.0 { l } else { u8::from(v > 0.0) })
                        .collect();
                    (z, y)
                } else {
                    (z, y)
                }
            })
            .prop_filter("both classes", |(_, y)| y.contains(&0) && y.contains(&1))
    })
}

proptest! {
    #[test]
    fn fitted_probabilities_average_the_labels((z, y) in labelled_logits()) {
        let s = m::fit_bias_corrected_scaling(&z, &y).unwrap();
        prop_assert!(s.scale.is_finite() && s.bias.is_finite(), "{:?}", s);
        let p = mean(z.iter().map(|&v| s.apply(v)), z.len());
        let prevalence = mean(y.iter().map(|&v| f64::from(v)), y.len());
        prop_assert!((p - prevalence).abs() <= 1e-9, "{} vs {} ({:?})", p, prevalence, s);
        // the same fit for the same data, whatever the order
        let mut pairs: Vec<(f64, u8)> = z.iter().copied().zip(y.iter().copied()).collect();
        pairs.reverse();
        let (zr, yr): (Vec<f64>, Vec<u8>) = pairs.into_iter().unzip();
        let r = m::fit_bias_corrected_scaling(&zr, &yr).unwrap();
        prop_assert!((r.scale - s.scale).abs() <= 1e-6 * (1.0 + s.scale.abs()), "{:?} vs {:?}", r, s);
        prop_assert!((r.bias - s.bias).abs() <= 1e-6 * (1.0 + s.bias.abs()), "{:?} vs {:?}", r, s);
    }
}
