//! Label-shift prevalence estimation: the EM and Bayes' prior correction against
//! the `abstention` package (Alexandari et al. 2020) in
//! `tests/reference/prior_reference.json` (made by `make_prior_reference.py`);
//! recovery of a known prevalence; the fixed point; bad input; determinism.

use cxr_metrics::{self as m, EmSettings, MetricsError as E, PrevalenceConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// Relative tolerance against abstention's EM. Both sides stop at a change below
/// 1e-14 (the reference file's "tolerance"); with linear convergence at rate r the
/// stopping error is about 1e-14 · r / (1 − r), a few ulp for these cases; what
/// is left is rounding (numpy's pairwise sum against a sequential one). Observed:
/// at most 1.3e-15 relative.
const EM_REL: f64 = 1e-12;

/// Relative tolerance of the default settings (stop below 1e-8) against the tight
/// reference: the estimate is then off by about 1e-8 · r / (1 − r). Observed: at
/// most 1.8e-7 relative.
const DEFAULT_REL: f64 = 1e-5;

fn reference() -> Value {
    let text = include_str!("../reference/prior_reference.json");
    serde_json::from_str(text).expect("the committed reference file is JSON")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array").iter().map(f).collect()
}

fn tight() -> EmSettings {
    let r = reference();
    EmSettings {
        tolerance: f(&r["tolerance"]),
        max_iterations: usize::try_from(r["max_iterations"].as_u64().unwrap()).unwrap(),
    }
}

#[test]
fn the_prior_reference_file_is_what_the_tests_expect() {
    let r = reference();
    assert!(r["versions"]["abstention"].is_string());
    assert_eq!(f(&r["tolerance"]), 1e-14);
    let names: Vec<&str> = r["em"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in [
        "beta_mix_1000",
        "calibrated_2000_up",
        "weak_200",
        "extremes_600",
        "calibrated_1500",
        "tiny_low_train_7",
    ] {
        assert!(names.contains(&want), "case {want} missing");
    }
    // the extremes case really has exact 0s and 1s
    let ext = r["em"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "extremes_600")
        .unwrap();
    let p = floats(&ext["probs"]);
    assert!(p.contains(&0.0) && p.contains(&1.0));
}

#[test]
fn em_matches_abstention() {
    let (mut worst, mut worst_default): (f64, f64) = (0.0, 0.0);
    for c in reference()["em"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let probs = floats(&c["probs"]);
        let train = f(&c["train_prevalence"]);
        let want = f(&c["estimate"]);
        let got = m::em_prevalence(&probs, train, tight()).unwrap();
        assert!(got.converged, "{name}: {got:?}");
        let rel = (got.estimate - want).abs() / want;
        worst = worst.max(rel);
        assert!(
            rel <= EM_REL,
            "{name}: cxr {} vs abstention {want} (rel {rel:e})",
            got.estimate
        );
        // the default stopping rule is close too, and faster
        let d = m::em_prevalence(&probs, train, EmSettings::default()).unwrap();
        assert!(
            d.converged && d.iterations <= got.iterations,
            "{name}: {d:?}"
        );
        let rel = (d.estimate - want).abs() / want;
        worst_default = worst_default.max(rel);
        assert!(rel <= DEFAULT_REL, "{name}: default {d:?} vs {want}");
    }
    eprintln!(
        "largest relative difference from abstention's EM: {worst:e} \
         (default settings: {worst_default:e})"
    );
}

#[test]
fn adapted_probabilities_match_abstention() {
    let mut worst: f64 = 0.0;
    for c in reference()["adapt"].as_array().unwrap() {
        let (from, to) = (f(&c["from_prior"]), f(&c["to_prior"]));
        for (p, want) in floats(&c["probs"]).into_iter().zip(floats(&c["adapted"])) {
            let got = m::adapt_probability(p, from, to);
            let diff = (got - want).abs();
            worst = worst.max(if want > 0.0 { diff / want } else { diff });
            assert!(
                diff <= 1e-14 * want,
                "{p}: {from} → {to}: cxr {got} vs abstention {want}"
            );
            // the threshold form is the inverse map
            let back = m::adapt_threshold(got, from, to);
            assert!((back - p).abs() <= 1e-12, "{p}: back {back}");
        }
    }
    eprintln!("largest relative difference from abstention's adapted probabilities: {worst:e}");
}

/// `n` items with prevalence `prevalence`; scores s | y ~ Beta-like power laws
/// `(k+1)·s^k` (y = 1) and `(k+1)·(1 − s)^k` (y = 0), so the likelihood ratio is
/// `(s / (1 − s))^k`; returned probabilities are the exact posteriors for prior
/// `calibrated_for`. Also returns the realised share of positives.
fn calibrated(n: usize, prevalence: f64, calibrated_for: f64, seed: u64) -> (Vec<f64>, f64) {
    const K: i32 = 3;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut positives = 0usize;
    let probs = (0..n)
        .map(|_| {
            let y = rng.random::<f64>() < prevalence;
            let u: f64 = rng.random();
            let s = if y {
                positives += 1;
                u.powf(1.0 / f64::from(K + 1))
            } else {
                1.0 - u.powf(1.0 / f64::from(K + 1))
            };
            let lr = (s / (1.0 - s)).powi(K);
            let odds = lr * calibrated_for / (1.0 - calibrated_for);
            if odds.is_infinite() {
                1.0
            } else {
                odds / (1.0 + odds)
            }
        })
        .collect();
    (probs, positives as f64 / n as f64)
}

#[test]
fn recovers_a_known_prevalence_from_calibrated_probabilities() {
    // the model was calibrated where 70 % were positive; the new site has 30 %
    let (probs, realised) = calibrated(4000, 0.3, 0.7, 11);
    assert!((realised - 0.3).abs() < 0.02);
    let mean = probs.iter().sum::<f64>() / probs.len() as f64;
    assert!(
        mean > realised + 0.05,
        "unadapted mean {mean} is biased towards 0.7"
    );
    let r = m::estimate_prevalence(&probs, 0.7, PrevalenceConfig::default()).unwrap();
    eprintln!("realised {realised}, mean p {mean}: {r:?}");
    assert!(r.converged, "{r:?}");
    assert!(r.ci_low <= 0.3 && 0.3 <= r.ci_high, "{r:?}");
    assert!(r.ci_low <= realised && realised <= r.ci_high, "{r:?}");
    assert!((r.estimate - realised).abs() < 0.02, "{r:?}");
    assert!(r.ci_high - r.ci_low < 0.06, "interval too wide: {r:?}");
    assert!(r.ci_low < r.estimate && r.estimate < r.ci_high, "{r:?}");
    assert!(r.differs && r.train_prevalence == 0.7);

    // same site prevalence as training: no difference flagged
    let (probs, _) = calibrated(4000, 0.7, 0.7, 12);
    let r = m::estimate_prevalence(&probs, 0.7, PrevalenceConfig::default()).unwrap();
    eprintln!("{r:?}");
    assert!(!r.differs, "{r:?}");
    assert!((r.estimate - 0.7).abs() < 0.03, "{r:?}");
}

#[test]
fn the_mean_probability_is_a_fixed_point() {
    // when the calibrated probabilities already average π_train, the EM stays
    let probs = [0.1, 0.25, 0.9, 0.65, 0.3, 0.05, 0.8, 0.45];
    let train = probs.iter().sum::<f64>() / probs.len() as f64;
    let r = m::em_prevalence(&probs, train, EmSettings::default()).unwrap();
    assert_eq!(r.estimate, train);
    assert_eq!((r.iterations, r.converged), (1, true));
    // and elsewhere the estimate is a fixed point of the update it documents
    let r = m::em_prevalence(&probs, 0.2, tight()).unwrap();
    let again: f64 = probs
        .iter()
        .map(|&p| m::adapt_probability(p, 0.2, r.estimate))
        .sum::<f64>()
        / probs.len() as f64;
    assert!((again - r.estimate).abs() < 1e-13, "{r:?} → {again}");
}

#[test]
fn bad_input_is_an_error() {
    let s = EmSettings::default();
    let ok = [0.2, 0.7];
    assert_eq!(m::em_prevalence(&[], 0.5, s), Err(E::Empty));
    assert_eq!(
        m::em_prevalence(&[0.2, f64::NAN], 0.5, s),
        Err(E::NonFinite { index: 1 })
    );
    assert_eq!(
        m::em_prevalence(&[f64::INFINITY], 0.5, s),
        Err(E::NonFinite { index: 0 })
    );
    assert_eq!(
        m::em_prevalence(&[0.2, 1.5], 0.5, s),
        Err(E::NotAProbability {
            index: 1,
            value: 1.5
        })
    );
    assert!(m::em_prevalence(&[-0.1], 0.5, s).is_err());
    for train in [0.0, 1.0, -0.2, 1.2, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(m::em_prevalence(&ok, train, s), Err(E::Invalid { ref name, .. }) if name == "train_prevalence"),
            "train {train}"
        );
    }
    for tolerance in [0.0, -1e-8, f64::NAN, f64::INFINITY] {
        let bad = EmSettings { tolerance, ..s };
        assert!(m::em_prevalence(&ok, 0.5, bad).is_err(), "tol {tolerance}");
    }
    let none = EmSettings {
        max_iterations: 0,
        ..s
    };
    assert!(m::em_prevalence(&ok, 0.5, none).is_err());

    let d = PrevalenceConfig::default();
    let bad = |cfg: PrevalenceConfig| m::estimate_prevalence(&ok, 0.5, cfg).is_err();
    assert!(bad(PrevalenceConfig { resamples: 1, ..d }));
    for confidence in [0.0, 1.0, f64::NAN] {
        assert!(bad(PrevalenceConfig { confidence, ..d }));
    }
    assert!(bad(PrevalenceConfig { em: none, ..d }));
    assert_eq!(m::estimate_prevalence(&[], 0.5, d), Err(E::Empty));
    assert!(m::estimate_prevalence(&ok, 1.0, d).is_err());
    assert!(m::estimate_prevalence(&[0.3, 2.0], 0.5, d).is_err());
}

#[test]
fn the_bootstrap_is_deterministic_per_seed() {
    let (probs, _) = calibrated(500, 0.4, 0.6, 5);
    let cfg = PrevalenceConfig {
        resamples: 300,
        seed: 42,
        ..Default::default()
    };
    let a = m::estimate_prevalence(&probs, 0.6, cfg).unwrap();
    assert_eq!(a, m::estimate_prevalence(&probs, 0.6, cfg).unwrap());
    let b = m::estimate_prevalence(&probs, 0.6, PrevalenceConfig { seed: 43, ..cfg }).unwrap();
    assert_eq!(a.estimate, b.estimate, "the estimate does not resample");
    assert_ne!((a.ci_low, a.ci_high), (b.ci_low, b.ci_high), "another seed");
    // a lower level gives a nested interval
    let narrow = m::estimate_prevalence(
        &probs,
        0.6,
        PrevalenceConfig {
            confidence: 0.5,
            ..cfg
        },
    )
    .unwrap();
    assert!(a.ci_low <= narrow.ci_low && narrow.ci_high <= a.ci_high);
    // the estimate is em_prevalence's
    let em = m::em_prevalence(&probs, 0.6, cfg.em).unwrap();
    assert_eq!(
        (a.estimate, a.iterations, a.converged),
        (em.estimate, em.iterations, em.converged)
    );
    // the result serialises with the documented field names
    let json = serde_json::to_value(a).unwrap();
    for key in [
        "estimate",
        "ci_low",
        "ci_high",
        "iterations",
        "converged",
        "train_prevalence",
        "differs",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
}
