//! `predict` against PyTorch: the seed CNN run in `tests/fixtures/torch/` (a finished
//! 15-epoch run's `model.json` and `model.safetensors`) on twelve synthetic images —
//! gray 28 × 28, centre-cropped non-square, cropped and resized down and up, and RGB —
//! gives the probabilities that the PyTorch code of `docs/pytorch.md` computes in
//! float64 (`torch_reference.csv`, written by `make_torch_reference.py`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::options;

/// Largest accepted |cxr − PyTorch| on `prob` and on `prob_calibrated`.
///
/// Both sides decode the images to the same 8-bit pixels (the fixture's images keep
/// resized pixels and RGB luma clear of rounding ties, so the decoders agree exactly),
/// so what is left is cxr's float32 network against PyTorch's float64 one. σ′ ≤ 1/4, so
/// a logit error ε moves `prob` by at most ε/4 and `prob_calibrated` (T = 0.854) by at
/// most ε/(4T). Measured on the CPU fast path: at most 1.1e-7 here, and 2.4e-7 over 324
/// PneumoniaMNIST and synthetic images; 1e-6 leaves room for other CPUs' kernels.
/// What it catches: one grey level on one input pixel moves `prob` by 7e-5 (the median
/// over these images' pixels; 96 % of pixels by more than 2e-6), and decoding with
/// Pillow's Rec. 601 `convert("L")` or its BILINEAR resize by 7e-4 to 0.16.
const TOLERANCE: f64 = 1e-6;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch")
}

/// `torch_reference.csv`: file name → (prob, prob_calibrated).
fn reference(dir: &Path) -> BTreeMap<String, (f64, f64)> {
    let path = dir.join("torch_reference.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("file,prob,prob_calibrated"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 3, "{}: bad line {l}", path.display());
            (
                f[0].to_string(),
                (f[1].parse().unwrap(), f[2].parse().unwrap()),
            )
        })
        .collect()
}

#[test]
fn predict_gives_pytorchs_probabilities_on_the_fixture() {
    let dir = fixture();
    let want = reference(&dir);
    assert_eq!(want.len(), 12);
    // The reference spreads over (0, 1), away from σ's flat tails where any logit
    // would give nearly the same probability.
    let mid = want
        .values()
        .filter(|(p, _)| (0.1..0.9).contains(p))
        .count();
    assert!(mid >= 8, "only {mid} reference probabilities in (0.1, 0.9)");

    // `out` keeps the committed run folder untouched.
    let tmp = tempfile::tempdir().unwrap();
    let got = cxr_predict::predict(
        &dir,
        &[dir.join("images")],
        &options(&tmp.path().join("pred")),
    )
    .unwrap();
    assert_eq!(got.rows.len(), want.len());
    let mut worst = (0.0f64, 0.0f64);
    for row in &got.rows {
        assert!(row.error.is_empty(), "{}: {}", row.path, row.error);
        let name = Path::new(&row.path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap();
        let (p, c) = want[name];
        let dp = (row.prob.unwrap() - p).abs();
        let dc = (row.prob_calibrated.unwrap() - c).abs();
        assert!(
            dp <= TOLERANCE && dc <= TOLERANCE,
            "{name}: cxr prob {:?} calibrated {:?}, PyTorch {p} {c} (|Δ| {dp:e}, {dc:e} > {TOLERANCE:e})",
            row.prob,
            row.prob_calibrated
        );
        worst = (worst.0.max(dp), worst.1.max(dc));
    }
    eprintln!(
        "largest |cxr − PyTorch|: prob {:e}, prob_calibrated {:e}",
        worst.0, worst.1
    );
}
