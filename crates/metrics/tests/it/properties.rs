//! Property tests (proptest).

use cxr_metrics as m;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

/// Labels with both classes and matching finite scores.
fn labelled_scores() -> impl Strategy<Value = (Vec<u8>, Vec<f64>)> {
    (2usize..120).prop_flat_map(|n| {
        (
            proptest::collection::vec(0u8..=1, n),
            proptest::collection::vec(-50.0f64..50.0, n),
        )
            .prop_filter("both classes", |(l, _)| l.contains(&0) && l.contains(&1))
    })
}

proptest! {
    #[test]
    fn auc_is_invariant_to_monotone_transforms((labels, scores) in labelled_scores()) {
        let a = m::roc_auc(&labels, &scores).unwrap();
        let t: Vec<f64> = scores.iter().map(|s| (s / 10.0).exp() * 3.0 + 1.0).collect();
        let b = m::roc_auc(&labels, &t).unwrap();
        prop_assert!((a - b).abs() < 1e-12, "{} vs {}", a, b);
    }

    #[test]
    fn auc_of_negated_scores_is_one_minus_auc((labels, scores) in labelled_scores()) {
        let a = m::roc_auc(&labels, &scores).unwrap();
        let neg: Vec<f64> = scores.iter().map(|s| -s).collect();
        let b = m::roc_auc(&labels, &neg).unwrap();
        prop_assert!((a + b - 1.0).abs() < 1e-12);
    }

    #[test]
    fn temperature_scaling_never_increases_nll((labels, logits) in labelled_scores()) {
        let t = m::fit_temperature(&logits, &labels).unwrap();
        let before = m::temperature_nll(&logits, &labels, 1.0).unwrap();
        let after = m::temperature_nll(&logits, &labels, t).unwrap();
        prop_assert!(after <= before + 1e-12, "T {}: {} > {}", t, after, before);
    }
}

#[test]
fn ece_of_calibrated_data_is_small() {
    // Labels drawn Bernoulli(p): both ECEs are sampling noise only (n = 20000).
    for seed in 0..3 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let probs: Vec<f64> = (0..20_000).map(|_| rng.random::<f64>()).collect();
        let labels: Vec<u8> = probs
            .iter()
            .map(|&p| u8::from(rng.random::<f64>() < p))
            .collect();
        let b = m::Binning::default();
        let e = m::ece_pos(&labels, &probs, b).unwrap();
        let t = m::ece(&labels, &probs, b).unwrap();
        assert!(e < 0.02 && t < 0.02, "seed {seed}: ece_pos {e}, ece {t}");
        // a miscalibrated copy (probabilities squashed) is clearly worse
        let squashed: Vec<f64> = probs.iter().map(|p| 0.5 + (p - 0.5) * 0.3).collect();
        assert!(m::ece_pos(&labels, &squashed, b).unwrap() > 0.1);
    }
}
