//! Synthetic run folders in exactly the run-folder and `audit/` contract formats.

use std::fmt::Write as _;
use std::path::Path;

pub const METRICS: &str = r#"{
  "val": {"accuracy": 0.9, "precision": 0.9, "recall": 0.95, "specificity": 0.8, "f1": 0.92, "auc": 0.97,
          "threshold": 0.5, "tp": 19, "fp": 2, "tn": 8, "fn": 1},
  "test": {"accuracy": 0.75, "precision": 0.6667, "recall": 1.0, "specificity": 0.5, "f1": 0.8, "auc": 0.875,
           "threshold": 0.5, "tp": 2, "fp": 1, "tn": 1, "fn": 0},
  "best_epoch": 2, "model": "cnn", "timing": {"train_seconds": 12.5}
}"#;

/// The minimal run folder of the first report version (4-column predictions, no
/// curves, no audit).
pub fn write_minimal_run(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("metrics.json"), METRICS).unwrap();
    std::fs::write(
        dir.join("history.csv"),
        "epoch,train_loss,val_loss,val_auc\n1,0.6,0.5,0.9\n2,0.4,0.45,0.97\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("predictions.csv"),
        "split,index,label,prob\nval,0,1,0.9\ntest,0,0,0.2\ntest,1,0,0.7\ntest,2,1,0.8\ntest,3,1,0.95\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"train": {"seed": 3, "image_size": 28}}"#,
    )
    .unwrap();
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// A deterministic pseudo-random stream (SplitMix64) so fixtures need no RNG crate.
pub struct Stream(u64);
impl Stream {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes a small PNG (a gradient, or a colour overlay when `overlay`).
pub fn write_png(path: &Path, size: u32, overlay: bool) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(size, size, |x, y| {
        let v = ((x + y) * 255 / (2 * size)) as u8;
        if overlay {
            image::Rgb([v, 255 - v, 128])
        } else {
            image::Rgb([v, v, v])
        }
    });
    img.save(path).unwrap();
}

/// A complete run folder: metrics with calibration, operating points and bootstrap;
/// 6-column predictions; roc/pr/reliability/lr_find curves; and every `audit/` file.
/// `seed` varies the predictions; `model` names the model.
pub fn write_full_run(dir: &Path, model: &str, seed: u64) {
    std::fs::create_dir_all(dir.join("audit/gallery")).unwrap();
    let mut s = Stream::new(seed);
    let mut preds = String::from("split,index,label,prob,logit,prob_calibrated\n");
    let mut test: Vec<(u8, f64)> = Vec::new();
    for (split, n) in [("val", 30), ("test", 60)] {
        for i in 0..n {
            let label = u8::from(i % 5 < 3);
            let z = if label == 1 { 1.5 } else { -1.5 } + 2.5 * (s.next_f64() - 0.5) * 2.0;
            let p = sigmoid(z);
            let _ = writeln!(preds, "{split},{i},{label},{p},{z},{}", sigmoid(z / 1.3));
            if split == "test" {
                test.push((label, p));
            }
        }
    }
    std::fs::write(dir.join("predictions.csv"), preds).unwrap();

    // ROC and PR from the test predictions (val reuses them for brevity).
    let mut sorted = test.clone();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    let pos = test.iter().filter(|t| t.0 == 1).count() as f64;
    let neg = test.len() as f64 - pos;
    let mut roc = String::from("split,fpr,tpr,threshold\n");
    let mut pr = String::from("split,recall,precision,threshold\n");
    for split in ["val", "test"] {
        let _ = writeln!(roc, "{split},0,0,inf");
        let (mut tp, mut fp) = (0.0, 0.0);
        let mut pr_points = Vec::new();
        for (l, p) in &sorted {
            if *l == 1 {
                tp += 1.0
            } else {
                fp += 1.0
            }
            let _ = writeln!(roc, "{split},{},{},{p}", fp / neg, tp / pos);
            pr_points.push(format!("{split},{},{},{p}", tp / pos, tp / (tp + fp)));
        }
        // scikit-learn's order: increasing threshold, then (recall 0, precision 1).
        for line in pr_points.iter().rev() {
            let _ = writeln!(pr, "{line}");
        }
        let _ = writeln!(pr, "{split},0,1,");
    }
    std::fs::write(dir.join("roc.csv"), roc).unwrap();
    std::fs::write(dir.join("pr.csv"), pr).unwrap();

    let mut rel = String::from("split,bin,lower,upper,count,confidence,accuracy\n");
    for split in ["val", "test", "test_calibrated"] {
        for b in 0..15 {
            let lo = b as f64 / 15.0;
            let hi = (b + 1) as f64 / 15.0;
            let inbin: Vec<&(u8, f64)> = test
                .iter()
                .filter(|t| t.1 >= lo && (t.1 < hi || b == 14))
                .collect();
            let n = inbin.len();
            let (conf, acc) = if n == 0 {
                (0.0, 0.0)
            } else {
                (
                    inbin.iter().map(|t| t.1).sum::<f64>() / n as f64,
                    inbin.iter().filter(|t| t.0 == 1).count() as f64 / n as f64,
                )
            };
            let _ = writeln!(rel, "{split},{b},{lo},{hi},{n},{conf},{acc}");
        }
    }
    std::fs::write(dir.join("reliability.csv"), rel).unwrap();

    let mut lr = String::from("step,lr,loss,smoothed_loss\n");
    for i in 0..60 {
        let lrv = 1e-6 * 10f64.powf(i as f64 / 10.0);
        let loss =
            0.7 - 0.3 * (i as f64 / 40.0).min(1.0) + if i > 50 { (i - 50) as f64 } else { 0.0 };
        let _ = writeln!(lr, "{i},{lrv},{},{loss}", loss + 0.02 * s.next_f64());
    }
    std::fs::write(dir.join("lr_find.csv"), lr).unwrap();

    std::fs::write(
        dir.join("history.csv"),
        "epoch,train_loss,val_loss,val_auc\n1,0.6,0.5,0.9\n2,0.4,0.45,0.93\n3,0.3,0.41,0.95\n4,0.25,0.44,0.94\n",
    )
    .unwrap();
    let auc = 0.9 + 0.01 * seed as f64;
    std::fs::write(
        dir.join("metrics.json"),
        format!(
            r#"{{
  "val": {{"accuracy": 0.9, "precision": 0.9, "recall": 0.95, "specificity": 0.8, "f1": 0.92, "auc": 0.95,
          "threshold": 0.5, "tp": 17, "fp": 2, "tn": 10, "fn": 1, "average_precision": 0.96, "brier": 0.08,
          "log_loss": 0.3, "ece": 0.05, "ece_pos": 0.04, "mce": 0.2, "auc_ci_low": 0.9, "auc_ci_high": 0.99}},
  "test": {{"accuracy": 0.8, "precision": 0.82, "recall": 0.9, "specificity": 0.65, "f1": 0.86, "auc": {auc},
           "threshold": 0.5, "tp": 32, "fp": 8, "tn": 16, "fn": 4, "average_precision": 0.93, "brier": 0.12,
           "log_loss": 0.4, "ece": 0.09, "ece_pos": 0.07, "mce": 0.3, "auc_ci_low": {lo}, "auc_ci_high": {hi}}},
  "calibration": {{"temperature": 1.3, "ece_before": 0.09, "ece_after": 0.04, "ece_pos_before": 0.07,
                   "ece_pos_after": 0.03, "brier_before": 0.12, "brier_after": 0.11, "log_loss_before": 0.4,
                   "log_loss_after": 0.35, "split": "test", "fitted_on": "val"}},
  "operating_points": [
    {{"name": "youden", "threshold": 0.61, "accuracy": 0.82, "precision": 0.85, "recall": 0.86, "specificity": 0.75,
      "f1": 0.855, "tp": 31, "fp": 6, "tn": 18, "fn": 5}},
    {{"name": "sensitivity_0.95", "threshold": 0.3, "accuracy": 0.78, "precision": 0.76, "recall": 0.97,
      "specificity": 0.5, "f1": 0.85, "tp": 35, "fp": 12, "tn": 12, "fn": 1}},
    {{"name": "default_0.5", "threshold": 0.5, "accuracy": 0.8, "precision": 0.82, "recall": 0.9,
      "specificity": 0.65, "f1": 0.86, "tp": 32, "fp": 8, "tn": 16, "fn": 4}}
  ],
  "bootstrap": {{"split": "test", "seed": 0, "ci": {{"resamples": 1000, "seed": 0, "confidence": 0.95, "threshold": 0.5,
     "accuracy": {{"estimate": 0.8, "low": 0.7, "high": 0.9}},
     "sensitivity": {{"estimate": 0.9, "low": 0.8, "high": 0.97}},
     "specificity": {{"estimate": 0.65, "low": 0.45, "high": 0.83}},
     "f1": {{"estimate": 0.86, "low": 0.78, "high": 0.92}},
     "ece": {{"estimate": 0.09, "low": 0.05, "high": 0.15}}}}}},
  "prevalence": {{"val": 0.6, "test": 0.6}},
  "best_epoch": 3, "model": "{model}", "timing": {{"train_seconds": 42.0, "train_images_per_second": 900.0}}
}}"#,
            lo = auc - 0.05,
            hi = (auc + 0.04).min(1.0)
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("config.json"),
        format!(
            r#"{{"train": {{"model": "{train_model}", "seed": {seed}, "image_size": 28, "epochs": 4}},
  "data": {{"source": "/data/pneumoniamnist.npz", "sha256": "abc123", "train": 4708, "val": 524, "test": 624}},
  "git_commit": "0123abcd", "command": "train --epochs 4", "device_resolved": "cpu", "cxr_version": "0.1.0",
  "status": "finished"}}"#,
            // config.json names the network as cxr-train does; metrics.json's `model`
            // is free text.
            train_model = if model == "cnn" { "cnn" } else { "resnet18" },
        ),
    )
    .unwrap();
    write_audit(dir);
}

/// Every `audit/` file with two gallery tiles per kind, in the format the audit step
/// writes (the contract's columns and fields plus its documented additions: gallery
/// `pred,...`, robustness `parameter`, verdicts, Fisher tests, `audit.json`).
pub fn write_audit(dir: &Path) {
    let a = dir.join("audit");
    std::fs::create_dir_all(a.join("gallery")).unwrap();
    let mut q = String::from(
        "split,index,label,prob,pred,contrast_rms,contrast_michelson,sharpness,brightness,entropy\n",
    );
    for i in 0..8 {
        let p = 0.1 + 0.1 * i as f64;
        let _ = writeln!(
            q,
            "test,{i},{},{p},{},0.2,0.9,{},0.5,6.5",
            i % 2,
            u8::from(p >= 0.5),
            0.001 * (i + 1) as f64
        );
    }
    std::fs::write(a.join("quality.csv"), q).unwrap();

    let mut g = String::from(
        "kind,rank,split,index,label,prob,loss,image,gradcam,occlusion,pred,explained_class,gradcam_raw_max,occlusion_max_drop\n",
    );
    for (kind, short, label, prob) in [
        ("false_positive", "fp", 0, 0.97_f64),
        ("false_negative", "fn", 1, 0.04),
        ("confident_normal", "cn", 0, 0.01),
        ("confident_pneumonia", "cp", 1, 0.995),
    ] {
        for rank in 1..=2 {
            let base = format!("audit/gallery/{short}_{rank:02}");
            write_png(&dir.join(format!("{base}.png")), 224, false);
            write_png(&dir.join(format!("{base}_gradcam.png")), 224, true);
            write_png(&dir.join(format!("{base}_occlusion.png")), 224, true);
            let loss: f64 = if label == 1 {
                -prob.ln()
            } else {
                -(1.0 - prob).ln()
            };
            let pred = u8::from(prob >= 0.5);
            let class = if pred == 1 { "pneumonia" } else { "normal" };
            let _ = writeln!(
                g,
                "{kind},{rank},test,{},{label},{prob},{loss},{base}.png,{base}_gradcam.png,{base}_occlusion.png,{pred},{class},0.8,0.3",
                10 * rank
            );
        }
    }
    std::fs::write(a.join("gallery.csv"), g).unwrap();

    let mut r =
        String::from("corruption,severity,auc,sensitivity,specificity,accuracy,parameter\n");
    r.push_str("none,0,0.95,0.9,0.7,0.82,\n");
    for (k, c) in [
        "gaussian_blur",
        "motion_blur",
        "gaussian_noise",
        "contrast",
        "brightness",
        "jpeg",
    ]
    .iter()
    .enumerate()
    {
        for sev in 1..=5 {
            let drop = 0.01 * sev as f64 * (k + 1) as f64;
            let _ = writeln!(
                r,
                "{c},{sev},{},{},{},{},{}",
                0.95 - drop,
                (0.9 + drop / 2.0).min(1.0),
                0.7 - drop,
                0.82 - drop / 2.0,
                0.5 * sev as f64
            );
        }
    }
    std::fs::write(a.join("robustness.csv"), r).unwrap();

    let measure = |name: &str, fp: [u64; 4]| {
        let quart: Vec<String> = (0..4)
            .map(|i| {
                format!(
                    r#"{{"q": {}, "lower": {}, "upper": {}, "normals": 40, "fp": {}, "fp_rate": {}, "pneumonia": 100, "fn": {}, "fn_rate": {}}}"#,
                    i + 1,
                    i as f64 * 0.1,
                    (i + 1) as f64 * 0.1,
                    fp[i],
                    fp[i] as f64 / 40.0,
                    3 - i.min(3),
                    (3 - i.min(3)) as f64 / 100.0
                )
            })
            .collect();
        format!(
            r#"{{"measure": "{name}", "quartile_edges": [0.1, 0.2, 0.3], "quartiles": [{}],
      "fp_test": {{"test": "chi_square_trend", "z": -3.1, "chi_square": 9.6, "p_value": 0.0021}},
      "fn_test": {{"test": "chi_square_trend", "z": 0.5, "chi_square": 0.25, "p_value": 0.62}},
      "fp_fisher": {{"test": "fisher_exact_bottom_vs_top_quartile", "table": [[12, 28], [2, 38]], "odds_ratio": 8.1, "p_value": 0.0071}},
      "fn_fisher": {{"test": "fisher_exact_bottom_vs_top_quartile", "p_value": null, "error": "no events"}},
      "logit_fp": {{"coef": -0.81, "ci_low": -1.2, "ci_high": -0.4, "p_value": 0.0004, "se": 0.2, "odds_ratio_per_sd": 0.44}},
      "logit_fn": {{"coef": null, "ci_low": null, "ci_high": null, "p_value": null, "error": "the measure is constant in this group"}}}}"#,
            quart.join(", ")
        )
    };
    std::fs::write(
        a.join("failure_modes.json"),
        format!(
            r#"{{"threshold": 0.5, "n_test": 560, "normals": 160, "pneumonia": 400, "false_positives": 26,
  "false_negatives": 6, "measures_note": "measures on the raw u8 test image scaled to [0,1]",
  "decision_rule": "supported iff the logistic regression has Wald p < 0.05 with the hypothesised sign",
  "measures": [{}, {}, {}],
  "hypotheses": [
    {{"id": "blur_causes_fp", "statement": "Blur causes false positives", "measure": "sharpness", "outcome": "fp",
      "direction": "lower measure -> more FP", "supported": true, "verdict": "supported",
      "summary": "FP rate 30.0% in the blurriest quartile vs 5.0% in the sharpest (Fisher p = 0.0021)",
      "evidence": {{"coef": -0.81, "odds_ratio_per_sd": 0.44, "ci_low": 0.3, "ci_high": 0.67, "p_value": 0.0004}}}},
    {{"id": "low_contrast_causes_fp", "statement": "Low contrast causes false positives", "measure": "contrast_rms",
      "direction": "lower measure -> more FP", "supported": false, "verdict": "not supported",
      "summary": "FP rate 12.5% vs 10.0% (Fisher p = 0.74)"}},
    {{"id": "brightness_affects_fp", "statement": "Brightness affects false positives", "measure": "brightness",
      "direction": "either direction -> FP", "supported": false, "verdict": "opposite direction",
      "summary": "significant, but bright images have more FP"}},
    {{"id": "low_contrast_causes_fn", "statement": "Low contrast causes false negatives", "measure": "contrast_rms",
      "direction": "lower measure -> more FN", "supported": false, "verdict": "not testable",
      "summary": "Not testable: the logistic regression could not be fitted"}}
  ]}}"#,
            measure("sharpness", [12, 8, 4, 2]),
            measure("contrast_rms", [5, 4, 6, 4]),
            measure("brightness", [3, 4, 5, 6]),
        ),
    )
    .unwrap();

    std::fs::write(
        a.join("data_audit.json"),
        r#"{"splits": [
    {"split": "train", "n": 4708, "normal": 1214, "pneumonia": 3494, "prevalence": 0.7421},
    {"split": "val", "n": 524, "normal": 135, "pneumonia": 389, "prevalence": 0.7424},
    {"split": "test", "n": 624, "normal": 234, "pneumonia": 390, "prevalence": 0.625}],
  "prevalence_shift": [{"a": "train", "b": "val", "difference": 0.0003},
    {"a": "train", "b": "test", "difference": -0.1171}, {"a": "val", "b": "test", "difference": -0.1174}],
  "duplicates": {"exact_within": {"train": 2, "val": 0, "test": 0},
    "near_within": {"train": 5, "val": 1, "test": 0},
    "exact_across": [{"a": "train", "b": "val", "pairs": 3, "images_a": 3, "images_b": 3, "examples": [[1, 2]]},
                     {"a": "train", "b": "test", "pairs": 0, "images_a": 0, "images_b": 0, "examples": []}],
    "near_across": [{"a": "train", "b": "val", "pairs": 7, "images_a": 6, "images_b": 7, "examples": []}],
    "method": "exact: hash of pixels; near: 64-bit dHash hamming <= 4"},
  "excluded": 0}"#,
    )
    .unwrap();
    std::fs::write(
        a.join("audit.json"),
        r#"{"model": "cnn", "image_size": 28, "threshold": 0.5, "n_test": 624,
  "overlay": {"colormap": "turbo", "alpha": 0.5}, "seconds": 12.5,
  "stage_seconds": {"gallery": 2.5, "robustness": 9.0}}"#,
    )
    .unwrap();
}

/// A prediction folder as `cxr predict --explain` writes it: 40 rows (two unreadable),
/// a site check, two explained images with their PNGs.
pub fn write_predict_folder(dir: &Path) {
    use cxr_runfolder::{
        ErrorCount, Explained, LabelShiftCheck, PredictRow, PredictSummary, SiteCheck,
        write_predict_rows,
    };
    std::fs::create_dir_all(dir.join("explain")).unwrap();
    let mut s = Stream::new(7);
    let mut rows = Vec::new();
    for i in 0..40 {
        let path = format!("/site/images/img_{i:03}.png");
        if i % 17 == 5 {
            rows.push(PredictRow {
                path,
                frame: 0,
                logit: None,
                prob: None,
                prob_calibrated: None,
                prob_adapted: None,
                decision: None,
                threshold: None,
                operating_point: "youden".into(),
                error: "not a recognised image format (PNG/JPEG/BMP/TIFF)".into(),
            });
            continue;
        }
        let p = sigmoid(6.0 * (s.next_f64() - 0.4));
        rows.push(PredictRow {
            path,
            frame: 0,
            logit: Some((p / (1.0 - p)).ln()),
            prob: Some(p),
            prob_calibrated: Some(sigmoid(0.8 * (p / (1.0 - p)).ln())),
            prob_adapted: None,
            decision: Some(if p >= 0.6 { "pneumonia" } else { "normal" }.into()),
            threshold: Some(0.6),
            operating_point: "youden".into(),
            error: String::new(),
        });
    }
    write_predict_rows(&dir.join("predictions.csv"), &rows).unwrap();
    let mut explained = Vec::new();
    for k in 1..=2 {
        let stem = format!("explain/{k:03}");
        write_png(&dir.join(format!("{stem}.png")), 64, false);
        write_png(&dir.join(format!("{stem}_gradcam.png")), 64, true);
        write_png(&dir.join(format!("{stem}_occlusion.png")), 64, true);
        explained.push(Explained {
            path: format!("/site/images/img_{k:03}.png"),
            frame: 0,
            prob: 0.9,
            image: format!("{stem}.png"),
            gradcam: format!("{stem}_gradcam.png"),
            occlusion: format!("{stem}_occlusion.png"),
        });
    }
    let predicted = rows.iter().filter(|r| r.is_ok()).count();
    PredictSummary {
        run: "/runs/resnet18-seed0".into(),
        network: "resnet18".into(),
        card_derived: false,
        inputs: vec!["/site/images".into()],
        shard: None,
        files: 40,
        rows: 40,
        predicted,
        unreadable: 40 - predicted,
        errors: vec![ErrorCount {
            reason: "not a recognised image format (PNG/JPEG/BMP/TIFF)".into(),
            count: 40 - predicted,
        }],
        operating_point: "youden".into(),
        threshold: 0.6,
        threshold_source: "operating point youden chosen on the validation split".into(),
        threshold_unadapted: 0.6,
        positives: rows.iter().filter(|r| r.decision.as_deref() == Some("pneumonia")).count(),
        positives_unadapted: 0,
        adapt_prior: false,
        site_check: Some(SiteCheck {
            method: "EM".into(),
            estimate: 0.41,
            ci_low: 0.3,
            ci_high: 0.52,
            level: 0.95,
            resamples: 100,
            train_prevalence: 0.742,
            reference_prevalence: 0.742,
            calibration: "bias-corrected temperature scaling fitted on validation".into(),
            label_shift_test: Some(LabelShiftCheck {
                statistic: 0.12,
                p_value: 0.2,
                resamples: 100,
                rejected: false,
            }),
            differs: true,
            iterations: 12,
            converged: true,
            mean_probability: 0.45,
            verdict: "The estimated pneumonia prevalence of these images differs from the training prevalence.".into(),
        }),
        explained,
        seconds: 0.5,
        images_per_second: 76.0,
        device: "cpu".into(),
        cxr_version: "0.1.0".into(),
    }
    .write(&dir.join("summary.json"))
    .unwrap();
}
