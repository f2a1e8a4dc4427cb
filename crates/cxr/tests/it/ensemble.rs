//! `cxr ensemble` and the pipeline's headline ensemble: a normal run folder whose
//! logits are the mean of its members', applied by predict and evaluate as the run
//! scored itself; members that cannot be combined are refused by name.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{check, cxr};

/// Logits of `split` in a run folder's predictions.csv, by index.
fn logits(run: &Path, split: &str) -> BTreeMap<usize, f64> {
    let text = std::fs::read_to_string(run.join("predictions.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (s, i, z) = (col("split"), col("index"), col("logit"));
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[s] == split)
        .map(|f| (f[i].parse().unwrap(), f[z].parse().unwrap()))
        .collect()
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn an_ensemble_is_a_run_folder_of_mean_logits_that_predict_and_evaluate_reproduce() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let npz = d.join("tiny.npz");
    cxr_testkit::write_tiny_npz(&npz, &[("train", 64), ("val", 32), ("test", 32)]);
    let train = |seed: &str, extra: &[&str]| {
        let run = d.join(format!("cnn-{seed}{}", extra.join("")));
        let mut args = vec![
            "train".to_string(),
            "--offline".into(),
            "--data".into(),
            s(&npz),
            "--epochs".into(),
            "1".into(),
            "--seed".into(),
            seed.into(),
            "--out".into(),
            s(&run),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        check(&cxr(&args), 0, &[]);
        run
    };
    let (a, b) = (train("0", &[]), train("1", &[]));
    let ens = d.join("ens");
    let out = cxr(&["ensemble", &s(&a), &s(&b), "--out", &s(&ens)]);
    check(&out, 0, &[]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("ensemble of 2 runs: test AUC"),
        "{printed}"
    );
    for f in [
        "model.json",
        "model.safetensors",
        "metrics.json",
        "report.html",
        "audit",
    ] {
        assert!(ens.join(f).exists(), "{f} missing");
    }
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ens.join("model.json")).unwrap()).unwrap();
    let members = card["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["weight"], 0.5);
    assert_eq!(members[1]["seed"], 1);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ens.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["model"], "ensemble of 2 cnn");
    // Each member alone against the ensemble, in metrics.json and the report.
    let scored = metrics["members"].as_array().unwrap();
    assert_eq!(scored.len(), 2);
    for m in scored {
        let gain = m["test_auc_gain"].as_f64().unwrap();
        let p = m["delong_p"].as_f64().unwrap();
        assert!(gain.is_finite() && (0.0..=1.0).contains(&p), "{m}");
    }
    let report = std::fs::read_to_string(ens.join("report.md")).unwrap();
    assert!(
        report.contains("# Ensemble") && report.contains("ensemble gain"),
        "{report}"
    );

    // The ensemble's logit is the mean of its members' (f32 arithmetic on both sides:
    // 1e-5 relative).
    for split in ["val", "test"] {
        let (za, zb, ze) = (logits(&a, split), logits(&b, split), logits(&ens, split));
        assert_eq!(ze.len(), 32);
        for (i, z) in &ze {
            let want = (za[i] + zb[i]) / 2.0;
            assert!(
                (z - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{split} {i}: {z} vs {want}"
            );
        }
    }

    // evaluate scores the test split through the model card, as the run did.
    let eval = d.join("eval");
    check(
        &cxr(&[
            "evaluate",
            "--run",
            &s(&ens),
            "--data",
            &s(&npz),
            "--split",
            "test",
            "--out",
            &s(&eval),
        ]),
        0,
        &[],
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval.join("metrics.json")).unwrap()).unwrap();
    let run_auc = metrics["test"]["auc"].as_f64().unwrap();
    assert!(
        (m["auc"].as_f64().unwrap() - run_auc).abs() < 1e-12,
        "{m} vs {run_auc}"
    );

    // What cannot be combined is refused, naming the folder and the reason.
    check(
        &cxr(&["ensemble", &s(&ens), &s(&a), "--out", &s(&d.join("e2"))]),
        1,
        &["ens", "itself an ensemble"],
    );
    let other_size = train("2", &["--image-size", "32"]);
    check(
        &cxr(&[
            "ensemble",
            &s(&a),
            &s(&other_size),
            "--out",
            &s(&d.join("e3")),
        ]),
        1,
        &["input size (32)", "(28)"],
    );
    check(
        &cxr(&[
            "ensemble",
            &s(&a),
            &s(&d.join("nope")),
            "--out",
            &s(&d.join("e4")),
        ]),
        1,
        &["nope"],
    );
    check(&cxr(&["ensemble", &s(&a)]), 2, &["2"]);
}

#[test]
fn the_pipeline_builds_its_headline_ensemble_from_its_resnet18_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let npz = d.join("tiny.npz");
    cxr_testkit::write_tiny_npz(&npz, &[("train", 64), ("val", 32), ("test", 32)]);
    let out = d.join("pipe");
    let run = cxr(&[
        "pipeline",
        "--offline",
        "--data",
        &s(&npz),
        "--models",
        "resnet18",
        "--weights",
        "none",
        "--image-size",
        "28",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--headline-members",
        "2",
        "--out",
        &s(&out),
    ]);
    check(&run, 0, &[]);
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("headline/model.json")).unwrap())
            .unwrap();
    let seeds: Vec<u64> = card["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, [0, 1000]);
    assert!(
        out.join("headline-members/resnet18-seed1000/model.safetensors")
            .is_file()
    );
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert!(
        summary.contains("headline") && summary.contains("ensemble of 2 resnet18"),
        "{summary}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Headline model: headline"), "{report}");
    // The headline ensemble evaluated on the test split: its Youden threshold moved to
    // the test split's prevalence, shown in the report with the evaluation's accuracy.
    let e: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("headline-evaluation/evaluation.json")).unwrap(),
    )
    .unwrap();
    assert!(e["run"].as_str().unwrap().ends_with("headline"), "{e}");
    assert_eq!(e["set"]["images"], 32);
    let youden = e["prevalence"]["adapted_points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "youden")
        .expect("an adapted Youden point");
    let shown = format!(
        "{:.4} at the Youden threshold moved to the test split's prevalence {:.3}",
        youden["accuracy"]["estimate"].as_f64().unwrap(),
        e["prevalence"]["true_prevalence"].as_f64().unwrap()
    );
    assert!(report.contains(&shown), "{shown}\n{report}");
}
