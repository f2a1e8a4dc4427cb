//! Times [`cxr_metrics::bootstrap_ci`] with the pipeline's settings (2000 stratified
//! resamples, 95 %) on a 624-image test set shaped like PneumoniaMNIST's (390 pneumonia,
//! 234 normal): median of 11 runs after one warm-up.
//! `cargo run -p cxr-metrics --example bootstrap_speed`.

use std::time::Instant;

use cxr_metrics::{BootstrapConfig, bootstrap_ci};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let labels: Vec<u8> = (0..624).map(|i| u8::from(i < 390)).collect();
    // deterministic scores that overlap between the classes (AUC ≈ 0.95)
    let probs: Vec<f64> = labels
        .iter()
        .enumerate()
        .map(|(i, &y)| {
            let u = ((i * 7919) % 1000) as f64 / 1000.0;
            if y == 1 { 0.3 + 0.7 * u } else { 0.7 * u * u }
        })
        .collect();
    let mut times = Vec::new();
    for i in 0..12 {
        let t0 = Instant::now();
        let ci = bootstrap_ci(&labels, &probs, 0.5, BootstrapConfig::default())?;
        if i > 0 {
            times.push(t0.elapsed().as_secs_f64());
        } else {
            println!(
                "accuracy {:.4} [{:.4}, {:.4}]",
                ci.accuracy.estimate, ci.accuracy.low, ci.accuracy.high
            );
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "bootstrap_ci, 2000 resamples, 624 images, {} rayon threads: median {:.1} ms (min {:.1}, max {:.1})",
        rayon_threads(),
        times[times.len() / 2] * 1e3,
        times[0] * 1e3,
        times[times.len() - 1] * 1e3
    );
    Ok(())
}

fn rayon_threads() -> String {
    std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into())
}
