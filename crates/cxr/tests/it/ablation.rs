//! `cxr ablation`: pairs of runs scored on the same images, grouped by change, with
//! medians; the pipeline report shows a given ablation; bad input is refused by name.

use std::path::{Path, PathBuf};

use crate::{check, cxr};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A one-epoch CNN run on `npz` with `seed` and `extra` flags, in `d/<name>`.
fn train(d: &Path, npz: &Path, name: &str, seed: u64, extra: &[&str]) -> PathBuf {
    let run = d.join(name);
    let (npz, seed, out) = (s(npz), seed.to_string(), s(&run));
    let mut args = vec![
        "train",
        "--offline",
        "--data",
        &npz,
        "--epochs",
        "1",
        "--seed",
        &seed,
        "--out",
        &out,
    ];
    args.extend_from_slice(extra);
    check(&cxr(&args), 0, &[]);
    run
}

#[test]
fn an_ablation_scores_each_pair_on_the_same_images_and_groups_rows_by_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let npz = d.join("tiny.npz");
    cxr_testkit::write_tiny_npz(&npz, &[("train", 64), ("val", 32), ("test", 32)]);
    let regularised = [
        "--mixup",
        "0.4",
        "--label-smoothing",
        "0.1",
        "--ema",
        "0.99",
    ];
    let base: Vec<PathBuf> = (0..2)
        .map(|seed| train(d, &npz, &format!("base-{seed}"), seed, &[]))
        .collect();
    let mixed: Vec<PathBuf> = (0..2)
        .map(|seed| train(d, &npz, &format!("mix-{seed}"), seed, &regularised))
        .collect();
    let config = json(&mixed[0].join("config.json"));
    assert_eq!(config["train"]["mixup"], 0.4);
    assert_eq!(config["train"]["label_smoothing"], 0.1);
    assert_eq!(config["train"]["ema"], 0.99);
    assert_eq!(
        json(&base[0].join("config.json"))["train"]["ema"],
        serde_json::Value::Null
    );
    let report = std::fs::read_to_string(mixed[0].join("report.md")).unwrap();
    assert!(
        report
            .contains("mixup α = 0.4, label smoothing ε = 0.1, weights averaged (EMA decay 0.99)"),
        "{report}"
    );
    let distilled = train(d, &npz, "distilled", 0, &["--self-distill", "0.8"]);
    assert_eq!(
        json(&distilled.join("config.json"))["train"]["self_distillation"],
        0.8
    );
    let report = std::fs::read_to_string(distilled.join("report.md")).unwrap();
    assert!(
        report.contains("self-distilled (PS-KD α_T = 0.8)"),
        "{report}"
    );

    let out = d.join("ablation");
    let change = "mixup and smoothing";
    let (b0, b1, m0, m1) = (s(&base[0]), s(&base[1]), s(&mixed[0]), s(&mixed[1]));
    let args = [
        "ablation",
        "--data",
        &s(&npz),
        "--out",
        &s(&out),
        "--resamples",
        "50",
        "--pair",
        change,
        &b0,
        &m0,
        "--pair",
        "seed",
        &b0,
        &b1,
        "--pair",
        change,
        &b1,
        &m1,
    ];
    let run = cxr(&args);
    check(&run, 0, &[]);
    let a = json(&out.join("ablation.json"));
    assert_eq!(a["split"], "test");
    assert_eq!(a["images"], 32);
    let rows = a["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{a}");
    assert_eq!(rows[0]["change"], change);
    assert_eq!(rows[1]["change"], "seed");
    let pairs = rows[0]["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2);
    // Each run's AUC is its own test AUC (the same images, the same model).
    let tol = 1e-9; // relative; both are the same f64 computation on the same logits
    let test_auc = |run: &Path| {
        json(&run.join("metrics.json"))["test"]["auc"]
            .as_f64()
            .unwrap()
    };
    let close = |a: f64, b: f64| (a - b).abs() <= tol * b.abs().max(1.0);
    for (p, (before, after)) in pairs
        .iter()
        .zip([(&base[0], &mixed[0]), (&base[1], &mixed[1])])
    {
        let (ab, aa) = (
            p["auc_before"].as_f64().unwrap(),
            p["auc_after"].as_f64().unwrap(),
        );
        assert!(close(ab, test_auc(before)), "{p}");
        assert!(close(aa, test_auc(after)), "{p}");
        assert!(close(p["difference"].as_f64().unwrap(), aa - ab), "{p}");
        let pv = p["delong_p"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&pv), "{p}");
        assert!(
            out.join(p["evaluation"].as_str().unwrap())
                .join("evaluation.json")
                .is_file()
        );
    }
    assert_eq!(pairs[1]["seed"], 1);
    let diffs: Vec<f64> = pairs
        .iter()
        .map(|p| p["difference"].as_f64().unwrap())
        .collect();
    let median = rows[0]["median_difference"].as_f64().unwrap();
    assert!(close(median, (diffs[0] + diffs[1]) / 2.0), "{a}");
    let md = std::fs::read_to_string(out.join("ablation.md")).unwrap();
    assert!(md.contains(&format!("| {change} | 0 / 1 |")), "{md}");
    assert!(String::from_utf8_lossy(&run.stdout).contains("| seed | 1 |"));

    // The same folder again: refused, naming it, nothing overwritten.
    let again = cxr(&args);
    check(&again, 1, &["already holds an ablation"]);

    // Extending it: its rows first, unchanged; the new pair's folder numbered after its
    // three; a change it already has, or other images, refused.
    let extended = d.join("extended");
    let out_json = out.join("ablation.json");
    let extend = |change: &str, data: &Path, out: &Path| {
        cxr(&[
            "ablation",
            "--data",
            &s(data),
            "--out",
            &s(out),
            "--resamples",
            "50",
            "--extend",
            &s(&out_json),
            "--pair",
            change,
            &b1,
            &b0,
        ])
    };
    check(&extend("seed reversed", &npz, &extended), 0, &[]);
    let e = json(&extended.join("ablation.json"));
    let e_rows = e["rows"].as_array().unwrap();
    assert_eq!(e_rows.len(), 3, "{e}");
    assert_eq!(
        e_rows[..2],
        rows[..],
        "the earlier rows are kept as they were"
    );
    assert_eq!(e_rows[2]["change"], "seed reversed");
    assert_eq!(e_rows[2]["pairs"][0]["evaluation"], "pairs/04");
    assert!(extended.join("pairs/04/evaluation.json").is_file());
    check(
        &extend("seed", &npz, &d.join("again")),
        1,
        &["already has the change \"seed\""],
    );
    let other = d.join("other.npz");
    std::fs::copy(&npz, &other).unwrap();
    check(
        &extend("other images", &other, &d.join("other")),
        1,
        &["`extend`", "other.npz"],
    );

    // The pipeline report shows an ablation it is given; a broken file stops the
    // pipeline before it trains.
    let bad = d.join("bad.json");
    std::fs::write(&bad, b"{\"rows\": 3}").unwrap();
    let pipeline = |ablation: &Path, out: &Path| {
        cxr(&[
            "pipeline",
            "--offline",
            "--data",
            &s(&npz),
            "--models",
            "cnn",
            "--seeds",
            "0",
            "--epochs",
            "1",
            "--ablation",
            &s(ablation),
            "--out",
            &s(out),
        ])
    };
    check(&pipeline(&bad, &d.join("pipe-bad")), 1, &["bad.json"]);
    assert!(!d.join("pipe-bad").exists());
    let pipe = d.join("pipe");
    check(&pipeline(&out.join("ablation.json"), &pipe), 0, &[]);
    let report = std::fs::read_to_string(pipe.join("report.md")).unwrap();
    assert!(report.contains("Ablation behind the recipe"), "{report}");
    assert!(
        report.contains(&format!("| {change} | 0 / 1 |")),
        "{report}"
    );
}

#[test]
fn ablation_settings_are_checked() {
    check(
        &cxr(&["ablation", "--data", "x.npz", "--out", "o"]),
        2,
        &["--pair"],
    );
    check(
        &cxr(&[
            "ablation", "--data", "x.npz", "--out", "o", "--pair", "a", "b",
        ]),
        2,
        &["--pair"],
    );
    check(&cxr(&["train", "--mixup", "-1"]), 1, &["mixup", "positive"]);
    check(
        &cxr(&["train", "--label-smoothing", "0.5"]),
        1,
        &["label-smoothing"],
    );
    check(&cxr(&["train", "--ema", "1"]), 1, &["ema", "(0, 1)"]);
    check(
        &cxr(&["train", "--self-distill", "1.5"]),
        1,
        &["self-distill", "(0, 1]"],
    );
    check(
        &cxr(&["train", "--self-distill", "0.8", "--mixup", "0.4"]),
        1,
        &["self-distill", "mixup"],
    );
}
