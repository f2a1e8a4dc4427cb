//! Property tests (proptest).

use cxr_metrics as m;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

/// Labels with both classes and matching finite scores: either continuous, or
/// drawn from a few integer values so that ties are common.
fn labelled_scores() -> impl Strategy<Value = (Vec<u8>, Vec<f64>)> {
    (2usize..150, any::<bool>()).prop_flat_map(|(n, tied)| {
        let scores = if tied {
            proptest::collection::vec((-4i32..=4).prop_map(f64::from), n).boxed()
        } else {
            proptest::collection::vec(-50.0f64..50.0, n).boxed()
        };
        (proptest::collection::vec(0u8..=1, n), scores)
            .prop_filter("both classes", |(l, _)| l.contains(&0) && l.contains(&1))
    })
}

/// Probabilities in [0, 1] with labels (both classes).
fn labelled_probs() -> impl Strategy<Value = (Vec<u8>, Vec<f64>)> {
    labelled_scores().prop_map(|(l, s)| {
        let p = s.iter().map(|x| 1.0 / (1.0 + (-x / 10.0).exp())).collect();
        (l, p)
    })
}

proptest! {
    #[test]
    fn auc_is_invariant_to_strictly_monotone_transforms((labels, scores) in labelled_scores()) {
        let a = m::roc_auc(&labels, &scores).unwrap();
        // strictly increasing on [−50, 50] and injective on these doubles
        let affine: Vec<f64> = scores.iter().map(|s| 3.0 * s + 7.0).collect();
        let cubic: Vec<f64> = scores.iter().map(|s| s * s * s + s).collect();
        let sigm: Vec<f64> = scores.iter().map(|s| 1.0 / (1.0 + (-s / 20.0).exp())).collect();
        for t in [affine, cubic, sigm] {
            let b = m::roc_auc(&labels, &t).unwrap();
            prop_assert!((a - b).abs() <= 1e-12, "{} vs {}", a, b);
        }
    }

    #[test]
    fn auc_of_negated_scores_is_one_minus_auc((labels, scores) in labelled_scores()) {
        let a = m::roc_auc(&labels, &scores).unwrap();
        let neg: Vec<f64> = scores.iter().map(|s| -s).collect();
        let b = m::roc_auc(&labels, &neg).unwrap();
        prop_assert!((a + b - 1.0).abs() <= 1e-12, "{} + {} ≠ 1", a, b);
    }

    #[test]
    fn auc_agrees_with_delong_and_the_pair_count((labels, scores) in labelled_scores()) {
        let a = m::roc_auc(&labels, &scores).unwrap();
        let ci = m::auc_ci_delong(&labels, &scores).unwrap();
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (i, &yi) in labels.iter().enumerate() {
            for (j, &yj) in labels.iter().enumerate() {
                if yi == 1 && yj == 0 {
                    pairs += 1.0;
                    if scores[i] > scores[j] { wins += 1.0 } else if scores[i] == scores[j] { wins += 0.5 }
                }
            }
        }
        prop_assert!((a - wins / pairs).abs() <= 1e-12);
        prop_assert!((ci.auc - a).abs() <= 1e-12);
        prop_assert!(ci.variance >= 0.0 && ci.low <= ci.auc && ci.auc <= ci.high);
        prop_assert!((0.0..=1.0).contains(&ci.low) && (0.0..=1.0).contains(&ci.high));
    }

    #[test]
    fn roc_curve_is_monotone_and_dropping_keeps_the_area((labels, scores) in labelled_scores()) {
        let full = m::roc_curve(&labels, &scores, false).unwrap();
        let kept = m::roc_curve(&labels, &scores, true).unwrap();
        for w in full.windows(2) {
            prop_assert!(w[0].fpr <= w[1].fpr && w[0].tpr <= w[1].tpr && w[0].threshold > w[1].threshold);
        }
        let area = |p: &[m::RocPoint]| -> f64 {
            p.windows(2).map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0).sum()
        };
        prop_assert!((area(&full) - area(&kept)).abs() <= 1e-12);
        prop_assert!(kept.len() <= full.len());
        let last = full.last().unwrap();
        prop_assert!(last.fpr == 1.0 && last.tpr == 1.0);
    }

    #[test]
    fn temperature_scaling_never_increases_nll((labels, logits) in labelled_scores()) {
        let t = m::fit_temperature(&logits, &labels).unwrap();
        prop_assert!((m::MIN_TEMPERATURE..=m::MAX_TEMPERATURE).contains(&t));
        let before = m::temperature_nll(&logits, &labels, 1.0).unwrap();
        let after = m::temperature_nll(&logits, &labels, t).unwrap();
        prop_assert!(after <= before, "T {}: {} > {}", t, after, before);
        // and no grid temperature does noticeably better than the fit
        for g in [0.05, 0.1, 0.3, 0.7, 1.5, 3.0, 8.0, 20.0] {
            let other = m::temperature_nll(&logits, &labels, g).unwrap();
            prop_assert!(after <= other + 1e-9, "T {}: {} > {} at {}", t, after, other, g);
        }
    }

    #[test]
    fn calibration_errors_are_bounded((labels, probs) in labelled_probs(), bins in 1usize..30) {
        for b in [m::Binning::EqualWidth(bins), m::Binning::EqualMass(bins.min(labels.len()))] {
            let e = m::ece(&labels, &probs, b).unwrap();
            let mc = m::mce(&labels, &probs, b).unwrap();
            let p = m::ece_pos(&labels, &probs, b).unwrap();
            prop_assert!((0.0..=1.0).contains(&e) && (0.0..=1.0).contains(&p));
            prop_assert!(e <= mc + 1e-15, "ECE {} above MCE {}", e, mc);
            let rb = m::reliability_bins(&labels, &probs, b, m::CalibrationKind::Positive).unwrap();
            prop_assert_eq!(rb.iter().map(|x| x.count).sum::<usize>(), labels.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn ece_of_perfectly_calibrated_data_is_small(seed in any::<u64>()) {
        // Labels drawn Bernoulli(p) from a seeded generator: both ECEs are
        // sampling noise only (n = 20000, expected ≈ 0.01, sd ≈ 0.002).
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let probs: Vec<f64> = (0..20_000).map(|_| rng.random::<f64>()).collect();
        let labels: Vec<u8> = probs.iter().map(|&p| u8::from(rng.random::<f64>() < p)).collect();
        let b = m::Binning::default();
        let pos = m::ece_pos(&labels, &probs, b).unwrap();
        let top = m::ece(&labels, &probs, b).unwrap();
        prop_assert!(pos < 0.02 && top < 0.02, "seed {}: ece_pos {}, ece {}", seed, pos, top);
        prop_assert!(m::ece_pos(&labels, &probs, m::Binning::EqualMass(15)).unwrap() < 0.02);
        // squashing the probabilities towards 0.5 is clearly miscalibrated
        let squashed: Vec<f64> = probs.iter().map(|p| 0.5 + (p - 0.5) * 0.3).collect();
        prop_assert!(m::ece_pos(&labels, &squashed, b).unwrap() > 0.1);
        prop_assert!(m::ece(&labels, &squashed, b).unwrap() > 0.1);
    }
}
