//! Edge inputs give the right error variant, never NaN or a panic.

use cxr_metrics::{self as m, MetricsError as E};

type Scored = fn(&[u8], &[f64]) -> m::Result<f64>;
type Row = (&'static str, Scored, bool, bool);

fn row(name: &'static str, f: Scored, probs_only: bool, both_classes: bool) -> Row {
    (name, f, probs_only, both_classes)
}

/// Every function of (labels, scores) that returns one number, with whether it
/// needs probabilities in [0, 1] and whether it needs both classes.
fn scored() -> Vec<Row> {
    vec![
        row("roc_auc", m::roc_auc, false, true),
        row("average_precision", m::average_precision, false, false),
        row("brier", m::brier, true, false),
        row("log_loss", m::log_loss, true, false),
        row(
            "ece",
            |l, p| m::ece(l, p, m::Binning::default()),
            true,
            false,
        ),
        row(
            "ece_pos",
            |l, p| m::ece_pos(l, p, m::Binning::default()),
            true,
            false,
        ),
        row(
            "mce",
            |l, p| m::mce(l, p, m::Binning::default()),
            true,
            false,
        ),
        row("threshold_youden", m::threshold_youden, true, true),
        row(
            "threshold_for_sensitivity",
            |l, p| m::threshold_for_sensitivity(l, p, 0.9),
            true,
            true,
        ),
        row(
            "auc_ci_delong",
            |l, p| m::auc_ci_delong(l, p).map(|c| c.auc),
            false,
            true,
        ),
        row(
            "delong_test",
            |l, p| m::delong_test(l, p, p).map(|t| t.p_value),
            false,
            true,
        ),
        row(
            "fit_temperature",
            |l, z| m::fit_temperature(z, l),
            false,
            true,
        ),
        row(
            "temperature_nll",
            |l, z| m::temperature_nll(z, l, 1.0),
            false,
            false,
        ),
        row(
            "confusion",
            |l, p| m::confusion(l, p, 0.5).map(|c| c.f1()),
            false,
            false,
        ),
        row(
            "binary_report",
            |l, p| m::binary_report(l, p, 0.5).map(|r| r.f1),
            true,
            true,
        ),
        row(
            "operating_point",
            |l, p| m::operating_point("x", 0.5, l, p).map(|o| o.f1),
            true,
            false,
        ),
        row(
            "bootstrap_ci",
            |l, p| {
                let cfg = m::BootstrapConfig {
                    resamples: 20,
                    ..Default::default()
                };
                m::bootstrap_ci(l, p, 0.5, cfg).map(|c| c.f1.estimate)
            },
            true,
            true,
        ),
        row(
            "roc_curve",
            |l, p| m::roc_curve(l, p, true).map(|c| c[0].fpr),
            false,
            true,
        ),
        row(
            "precision_recall_curve",
            |l, p| m::precision_recall_curve(l, p).map(|c| c[0].recall),
            false,
            false,
        ),
        row(
            "reliability_bins",
            |l, p| {
                m::reliability_bins(l, p, m::Binning::default(), m::CalibrationKind::TopLabel)
                    .map(|b| b[0].accuracy)
            },
            true,
            false,
        ),
    ]
}

#[test]
fn every_function_rejects_bad_input_with_the_right_variant() {
    for (name, f, probs_only, both) in scored() {
        assert_eq!(f(&[], &[]), Err(E::Empty), "{name}: empty");
        assert_eq!(
            f(&[0, 1, 1], &[0.1, 0.2]),
            Err(E::LengthMismatch {
                labels: 3,
                scores: 2
            }),
            "{name}: lengths"
        );
        assert_eq!(
            f(&[0, 2, 1], &[0.1, 0.2, 0.3]),
            Err(E::BadLabel { index: 1, value: 2 }),
            "{name}: label"
        );
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(
                f(&[0, 1, 1], &[0.1, 0.2, bad]),
                Err(E::NonFinite { index: 2 }),
                "{name}: {bad}"
            );
        }
        let outside = f(&[0, 1], &[0.1, 1.5]);
        if probs_only {
            assert_eq!(
                outside,
                Err(E::NotAProbability {
                    index: 1,
                    value: 1.5
                }),
                "{name}: probability"
            );
        } else {
            assert!(outside.is_ok(), "{name}: scores need not be probabilities");
        }
        let ones = f(&[1, 1, 1], &[0.1, 0.5, 0.9]);
        let zeros = f(&[0, 0], &[0.1, 0.5]);
        if both {
            assert_eq!(
                ones,
                Err(E::SingleClass { class: 1 }),
                "{name}: positives only"
            );
            assert_eq!(
                zeros,
                Err(E::SingleClass { class: 0 }),
                "{name}: negatives only"
            );
        } else {
            let v = ones.unwrap_or_else(|e| panic!("{name}: positives only: {e}"));
            assert!(v.is_finite(), "{name}: positives only gave {v}");
        }
        // whatever succeeds is a number
        if let Ok(v) = f(&[0, 1, 0, 1], &[0.2, 0.7, 0.7, 0.1]) {
            assert!(v.is_finite(), "{name} gave {v}");
        }
    }
}

#[test]
fn precision_recall_needs_a_positive_and_says_so() {
    assert_eq!(
        m::precision_recall_curve(&[0, 0], &[0.1, 0.5]),
        Err(E::SingleClass { class: 0 })
    );
    assert_eq!(
        m::average_precision(&[0, 0], &[0.1, 0.5]),
        Err(E::SingleClass { class: 0 })
    );
}

#[test]
fn arguments_out_of_range_are_invalid() {
    let (l, p) = ([0u8, 1, 0, 1], [0.2, 0.7, 0.4, 0.9]);
    let invalid = |r: m::Result<f64>| matches!(r, Err(E::Invalid { .. }));
    assert!(invalid(m::ece(&l, &p, m::Binning::EqualWidth(0))));
    assert!(invalid(m::ece(&l, &p, m::Binning::EqualMass(5))));
    assert!(invalid(m::ece_pos(&l, &p, m::Binning::EqualMass(0))));
    assert!(invalid(m::threshold_for_sensitivity(&l, &p, 0.0)));
    assert!(invalid(m::threshold_for_sensitivity(&l, &p, 1.01)));
    assert!(invalid(m::temperature_nll(&p, &l, -1.0)));
    assert!(invalid(m::confusion(&l, &p, f64::NAN).map(|c| c.f1())));
    assert!(invalid(m::binary_report(&l, &p, f64::NAN).map(|r| r.f1)));
    let cfg = m::BootstrapConfig {
        resamples: 1,
        ..Default::default()
    };
    assert!(invalid(m::bootstrap_ci(&l, &p, 0.5, cfg).map(|c| c.f1.low)));
    assert_eq!(m::mean_std(&[]), Err(E::Empty));
    assert_eq!(
        m::mean_std(&[1.0, f64::NAN]),
        Err(E::NonFinite { index: 1 })
    );
    let e = m::delong_test(&l, &p, &p[..3]).unwrap_err();
    assert_eq!(
        e,
        E::LengthMismatch {
            labels: 4,
            scores: 3
        }
    );
    assert_eq!(
        e.to_string(),
        "length mismatch: 4 labels but 3 scores",
        "messages name the problem"
    );
}

#[test]
fn degenerate_but_valid_inputs_give_numbers() {
    // one item per class, all scores equal, extreme probabilities
    let r = m::binary_report(&[0, 1], &[0.5, 0.5], 0.5).unwrap();
    assert_eq!((r.auc, r.tp, r.fp), (0.5, 1, 1));
    let ci = m::auc_ci_delong(&[0, 1], &[0.5, 0.5]).unwrap();
    assert_eq!((ci.variance, ci.low, ci.high), (0.0, 0.5, 0.5));
    let r = m::binary_report(&[0, 1, 1], &[1.0, 0.0, 1.0], 0.5).unwrap();
    assert!(r.log_loss.is_finite() && r.ece.is_finite());
    let b = m::bootstrap_ci(&[0, 1], &[0.0, 1.0], 0.5, m::BootstrapConfig::default()).unwrap();
    assert_eq!((b.accuracy.low, b.accuracy.high), (1.0, 1.0));
}
