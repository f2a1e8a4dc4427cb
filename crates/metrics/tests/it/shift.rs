//! The label-shift test: calibrated under pure label shift, powerful against a
//! shifted class, the statistic by hand, determinism, bad input.

use cxr_metrics::{self as m, BiasCorrectedScaling, MetricsError as E, PrevalenceConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A standard normal draw (Box–Muller; `rand_distr` is not a dependency).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln stays finite
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Logits of a good model: normals N(−2, 1), pneumonia N(2, 1) — equal spreads,
/// so Platt scaling is the true posterior. `shift` moves the normals.
fn draw(rng: &mut ChaCha8Rng, n: usize, prevalence: f64, shift: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            if rng.random::<f64>() < prevalence {
                2.0 + normal(rng)
            } else {
                -2.0 + shift + normal(rng)
            }
        })
        .collect()
}

/// A validation-like reference: 130 normals, 370 pneumonia (prevalence 0.74), and
/// the scaling fitted on it.
fn reference(seed: u64) -> (Vec<f64>, Vec<f64>, BiasCorrectedScaling, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let r0: Vec<f64> = (0..130).map(|_| -2.0 + normal(&mut rng)).collect();
    let r1: Vec<f64> = (0..370).map(|_| 2.0 + normal(&mut rng)).collect();
    let z: Vec<f64> = r0.iter().chain(&r1).copied().collect();
    let y: Vec<u8> = [0u8; 130].into_iter().chain([1u8; 370]).collect();
    let s = m::fit_bias_corrected_scaling(&z, &y).unwrap();
    (r0, r1, s, 370.0 / 500.0)
}

fn cfg(resamples: usize, seed: u64) -> PrevalenceConfig {
    PrevalenceConfig {
        resamples,
        seed,
        ..Default::default()
    }
}

#[test]
fn pure_label_shift_is_rarely_rejected() {
    // 20 repetitions: new reference, new site with prevalence 0.4 (not 0.74)
    let mut kept = 0;
    let mut ps = Vec::new();
    for rep in 0..20u64 {
        let (r0, r1, s, prev) = reference(100 + rep);
        let mut rng = ChaCha8Rng::seed_from_u64(500 + rep);
        let scores = draw(&mut rng, 300, 0.4, 0.0);
        let t = m::label_shift_test(&scores, &r0, &r1, s, prev, cfg(199, rep)).unwrap();
        assert!((t.prevalence - 0.4).abs() < 0.12, "{rep}: {t:?}");
        ps.push(t.p_value);
        kept += usize::from(t.p_value > 0.05);
    }
    eprintln!("label shift: p-values {ps:.3?}");
    assert!(kept >= 16, "only {kept} of 20 not rejected: {ps:?}");
}

#[test]
fn a_shifted_class_is_rejected() {
    let (r0, r1, s, prev) = reference(7);
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    // the test set's normals score 2 logits higher than the reference's
    let scores = draw(&mut rng, 300, 0.4, 2.0);
    let t = m::label_shift_test(&scores, &r0, &r1, s, prev, cfg(199, 1)).unwrap();
    eprintln!("shifted normals: {t:?}");
    assert!(t.p_value < 0.01, "{t:?}");
    assert_eq!(t.resamples, 199);
    // and the statistic is the documented one
    let d = m::mixture_ks_statistic(&scores, &r0, &r1, t.prevalence).unwrap();
    assert_eq!(t.statistic, d);
}

#[test]
fn the_reference_itself_fits_exactly() {
    let (r0, r1, s, prev) = reference(3);
    let pooled: Vec<f64> = r1.iter().chain(&r0).copied().collect();
    let t = m::label_shift_test(&pooled, &r0, &r1, s, prev, cfg(99, 0)).unwrap();
    assert!((t.prevalence - prev).abs() < 1e-9, "{t:?}");
    assert!(t.statistic < 1e-9, "{t:?}");
    assert!(t.p_value > 0.9, "{t:?}");
}

#[test]
fn the_statistic_by_hand() {
    // scores {0, 2, 2, 5}; normals {1, 3}; pneumonia {2, 4, 6, 8}; π = 0.25.
    // Jump points and (Fₙ, F = ¼F₁ + ¾F₀, |diff|):
    //   0: (1/4, 0, 1/4)          1: (1/4, 3/8, 1/8)
    //   2: (3/4, 1/16 + 3/8, 5/16) 3: (3/4, 1/16 + 3/4, 1/16)
    //   4: (3/4, 1/8 + 3/4, 1/8)   5: (1, 7/8, 1/8)
    //   6: (1, 3/16 + 3/4, 1/16)   8: (1, 1, 0)
    let d = m::mixture_ks_statistic(
        &[5.0, 2.0, 0.0, 2.0],
        &[3.0, 1.0],
        &[8.0, 2.0, 6.0, 4.0],
        0.25,
    )
    .unwrap();
    assert_eq!(d, 5.0 / 16.0);
    // π = 0 and 1 compare with one class alone: two-sample KS distances
    let d0 = m::mixture_ks_statistic(&[5.0, 2.0, 0.0, 2.0], &[3.0, 1.0], &[8.0], 0.0).unwrap();
    assert_eq!(d0, 0.25); // 1/4 vs 0, 1/4 vs 1/2, 3/4 vs 1/2, 3/4 vs 1 at 0, 1, 2, 3
    let d1 = m::mixture_ks_statistic(&[1.0], &[0.0], &[1.0], 1.0).unwrap();
    assert_eq!(d1, 0.0);
    // disjoint supports: D = 1
    let d = m::mixture_ks_statistic(&[10.0, 11.0], &[0.0], &[1.0], 0.5).unwrap();
    assert_eq!(d, 1.0);
    // through the test: scores that are certain (probabilities exactly 0 or 1
    // after a steep scaling) make the EM prevalence their share of positives
    let steep = BiasCorrectedScaling {
        scale: 1000.0,
        bias: 0.0,
    };
    let t = m::label_shift_test(
        &[5.0, -2.0, -1.0, 2.0],
        &[-3.0, -1.0],
        &[8.0, 2.0, 6.0, 4.0],
        steep,
        0.5,
        cfg(9, 0),
    )
    .unwrap();
    assert_eq!(t.prevalence, 0.5);
    // Fₙ vs F = ½F₀ + ½F₁ at −3: 0 vs 1/4; −2: 1/4 vs 1/4; −1: 1/2 vs 1/2;
    // 2: 3/4 vs 5/8; 4: 3/4 vs 3/4; 5: 1 vs 3/4; 6: 1 vs 7/8; 8: 1 vs 1
    assert_eq!(t.statistic, 0.25);
}

#[test]
fn deterministic_per_seed_and_thread_count() {
    let (r0, r1, s, prev) = reference(11);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let scores = draw(&mut rng, 250, 0.5, 0.6);
    let c = cfg(300, 42);
    let run = |threads, c| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| m::label_shift_test(&scores, &r0, &r1, s, prev, c).unwrap())
    };
    let one = run(1, c);
    assert_eq!(one, run(3, c));
    assert_eq!(
        one,
        m::label_shift_test(&scores, &r0, &r1, s, prev, c).unwrap()
    );
    let other = run(3, cfg(300, 43));
    assert_eq!(
        (one.statistic, one.prevalence),
        (other.statistic, other.prevalence),
        "the statistic does not resample"
    );
    eprintln!("seed 42: {one:?}; seed 43: {other:?}");
    assert!(one.p_value > 0.0 && one.p_value <= 1.0);
    // the prevalence is em_prevalence's on the scaled scores
    let probs: Vec<f64> = scores.iter().map(|&z| s.apply(z)).collect();
    let em = m::em_prevalence(&probs, prev, c.em).unwrap();
    assert_eq!(one.prevalence, em.estimate);
    let json = serde_json::to_value(one).unwrap();
    for key in ["statistic", "p_value", "prevalence", "resamples"] {
        assert!(json.get(key).is_some(), "{key}");
    }
}

/// An `Invalid` error naming `want`.
fn named<T>(r: m::Result<T>, want: &str) -> bool {
    matches!(r, Err(E::Invalid { ref name, .. }) if name == want)
}

#[test]
fn bad_input_is_an_error() {
    let s = BiasCorrectedScaling::IDENTITY;
    let c = cfg(10, 0);
    let (z, r0, r1) = ([0.1, 0.5], [-1.0, 0.0], [1.0, 2.0]);
    let test =
        |z: &[f64], r0: &[f64], r1: &[f64], s, prev, c| m::label_shift_test(z, r0, r1, s, prev, c);
    assert_eq!(test(&[], &r0, &r1, s, 0.5, c), Err(E::Empty));
    assert_eq!(
        test(&[0.1, f64::NAN], &r0, &r1, s, 0.5, c),
        Err(E::NonFinite { index: 1 })
    );
    assert!(named(test(&z, &[], &r1, s, 0.5, c), "reference_normal"));
    assert!(named(test(&z, &r0, &[], s, 0.5, c), "reference_pneumonia"));
    assert!(named(
        test(&z, &r0, &[1.0, f64::INFINITY], s, 0.5, c),
        "reference_pneumonia"
    ));
    for bad in [
        BiasCorrectedScaling {
            scale: f64::NAN,
            bias: 0.0,
        },
        BiasCorrectedScaling {
            scale: 1.0,
            bias: f64::INFINITY,
        },
    ] {
        assert!(named(test(&z, &r0, &r1, bad, 0.5, c), "scaling"));
    }
    for prev in [0.0, 1.0, f64::NAN] {
        assert!(named(test(&z, &r0, &r1, s, prev, c), "train_prevalence"));
    }
    assert!(named(test(&z, &r0, &r1, s, 0.5, cfg(0, 0)), "resamples"));
    let mut no_em = c;
    no_em.em.max_iterations = 0;
    assert!(test(&z, &r0, &r1, s, 0.5, no_em).is_err());
    // the statistic alone
    assert_eq!(m::mixture_ks_statistic(&[], &r0, &r1, 0.5), Err(E::Empty));
    for prev in [-0.1, 1.1, f64::NAN] {
        assert!(named(
            m::mixture_ks_statistic(&z, &r0, &r1, prev),
            "prevalence"
        ));
    }
    assert!(named(
        m::mixture_ks_statistic(&z, &[f64::NAN], &r1, 0.5),
        "reference_normal"
    ));
}
