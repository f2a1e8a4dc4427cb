//! Integration tests of cxr: the command line as a user meets it — exit codes and error
//! messages for bad input, settings checked before data, resume from a run folder's
//! recorded settings — and crash safety (kill, resume, divergence) of real training
//! processes.

mod ablation;
mod crash_safety;
mod ensemble;
mod patients;

use std::process::{Command, Output};

fn cxr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cxr"))
        .args(args)
        .env_remove("CXR_DATA_DIR")
        .env("CXR_LOG", "warn")
        .output()
        .unwrap()
}

use cxr_testkit::assert_exit as check;

/// A tiny npz (64/32/32 images) in `d` and a one-epoch CNN run trained on it by the
/// binary: (npz, run folder).
fn tiny_run(d: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let npz = d.join("tiny.npz");
    cxr_testkit::write_tiny_npz(&npz, &[("train", 64), ("val", 32), ("test", 32)]);
    let run = d.join("run");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let trained = cxr(&[
        "train",
        "--offline",
        "--data",
        &s(&npz),
        "--epochs",
        "1",
        "--out",
        &s(&run),
    ]);
    check(&trained, 0, &[]);
    (npz, run)
}

#[test]
fn usage_errors_exit_2() {
    check(&cxr(&["train", "--no-such-flag"]), 2, &["--no-such-flag"]);
    check(&cxr(&["train", "--epochs", "many"]), 2, &["--epochs"]);
    check(&cxr(&["train", "--model", "vgg"]), 2, &["vgg"]);
    check(
        &cxr(&["train", "--precision", "int8"]),
        2,
        &["--precision", "int8"],
    );
}

#[test]
fn missing_data_file_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.npz");
    let out = cxr(&["train", "--offline", "--data", missing.to_str().unwrap()]);
    check(&out, 1, &["nope.npz"]);
}

#[test]
fn truncated_npz_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("pneumoniamnist.npz");
    std::fs::write(&bad, b"PK\x03\x04 this is not a whole zip file").unwrap();
    let out = cxr(&["train", "--offline", "--data", bad.to_str().unwrap()]);
    check(&out, 1, &["pneumoniamnist.npz"]);
}

#[test]
fn report_on_a_folder_without_a_run_exits_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = cxr(&["report", "--run", dir.path().to_str().unwrap()]);
    check(&out, 1, &["metrics.json"]);
}

#[test]
fn audit_on_a_folder_without_a_run_exits_1_naming_the_file() {
    check(&cxr(&["audit"]), 2, &["--run"]);
    let Some(data) = cxr_testkit::pneumoniamnist() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = cxr(&[
        "audit",
        "--offline",
        "--run",
        dir.path().to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    check(&out, 1, &["config.json"]);
}

fn offline_hub(args: &[&str], cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cxr"))
        .args(args)
        .env_remove("CXR_DATA_DIR")
        .env("CXR_LOG", "warn")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", cache)
        .output()
        .unwrap()
}

/// An explicit hub id that cannot be fetched is an error that says what to do;
/// without `--weights` the run falls back to training from scratch, loudly (here it
/// then stops at the missing data file).
#[test]
fn unreachable_hub_weights_fail_when_explicit_and_fall_back_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.npz");
    let data = missing.to_str().unwrap();
    let out = offline_hub(
        &[
            "train",
            "--model",
            "resnet18",
            "--weights",
            "hub:timm/resnet18.a1_in1k",
            "--offline",
            "--data",
            data,
        ],
        dir.path(),
    );
    check(
        &out,
        1,
        &["--weights hub:timm/resnet18.a1_in1k", "--weights none"],
    );
    let out = offline_hub(
        &["train", "--model", "resnet18", "--offline", "--data", data],
        dir.path(),
    );
    check(
        &out,
        1,
        &["NO PRETRAINED WEIGHTS", "trained from scratch", "nope.npz"],
    );
    check(
        &cxr(&["train", "--weights", "hub:a/b", "--offline", "--data", data]),
        1,
        &["only resnet18"],
    );
}

/// Settings are checked before the data is looked for: no data anywhere, and the
/// error is about the setting.
#[test]
fn bad_settings_are_reported_before_the_data_is_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    for (flags, needle) in [
        (&["--lr", "nan"][..], "`lr`"),
        (&["--epochs", "0"], "`epochs`"),
        (&["--image-size", "3"], "`image-size`"),
        (&["--lr", "-1"], "`lr`"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cxr"))
            .arg("train")
            .args(flags)
            .arg("--offline")
            .current_dir(dir.path())
            .env_remove("CXR_DATA_DIR")
            .env("CXR_LOG", "warn")
            .output()
            .unwrap();
        check(&out, 1, &[needle]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("pneumoniamnist"), "{flags:?}: {stderr}");
    }
}

/// `--resume` continues from the settings and data recorded in the run folder: no
/// flag needs repeating, `--epochs` extends the run, a disagreeing flag is refused.
#[test]
fn resume_takes_the_recorded_settings_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny.npz");
    crash_safety::tiny_npz(&data);
    let run = dir.path().join("run");
    let train = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_cxr"))
            .arg("train")
            .args(args)
            .arg("--out")
            .arg(&run)
            .env_remove("CXR_DATA_DIR")
            .env("RAYON_NUM_THREADS", "1")
            .env("CXR_LOG", "warn")
            .output()
            .unwrap()
    };
    let first = train(&[
        "--offline",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--seed",
        "3",
        "--data",
        data.to_str().unwrap(),
    ]);
    check(&first, 0, &[]);
    let refused = train(&["--resume", "--epochs", "2", "--batch-size", "8"]);
    check(&refused, 1, &["batch_size", "only --epochs may change"]);
    let resumed = train(&["--resume", "--epochs", "2", "--offline"]);
    check(&resumed, 0, &[]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["epochs"], 2);
    assert_eq!(config["train"]["batch_size"], 4);
    assert_eq!(config["train"]["seed"], 3);
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 3, "{history}");
}

#[test]
fn predict_writes_rows_and_a_report_and_exits_by_what_it_could_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, run) = tiny_run(d);
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let good = d.join("a, b.png");
    image::GrayImage::from_fn(40, 30, |x, y| image::Luma([(x * 6 + y) as u8]))
        .save(&good)
        .unwrap();
    let junk = d.join("junk.dcm");
    std::fs::write(&junk, b"junk").unwrap();

    let out = d.join("pred");
    let ok = cxr(&[
        "predict",
        "--run",
        &s(&run),
        &s(&good),
        &s(&junk),
        "--out",
        &s(&out),
        "--explain",
    ]);
    check(&ok, 0, &[]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        stdout.contains("1 frames predicted (1 files unreadable)"),
        "{stdout}"
    );
    let rows = cxr_runfolder::read_predict_rows(&out.join("predictions.csv")).unwrap();
    assert_eq!(rows[0].path, s(&good));
    assert!(
        rows[1].error.contains("not a recognised image format"),
        "{rows:?}"
    );
    let images = cxr_report::check_embedded_images(&out.join("report.html")).unwrap();
    assert!(
        images.len() >= 4,
        "histogram and three overlays: {images:?}"
    );
    assert!(out.join("predictions.parquet").is_file());
    // `report --run` rebuilds a prediction folder's report.
    check(&cxr(&["report", "--run", &s(&out)]), 0, &[]);

    let strict = cxr(&[
        "predict",
        "--run",
        &s(&run),
        &s(&good),
        &s(&junk),
        "--strict",
        "--out",
        &s(&d.join("p2")),
    ]);
    check(&strict, 1, &["--strict", "junk.dcm"]);
    let none = cxr(&[
        "predict",
        "--run",
        &s(&run),
        &s(&junk),
        "--out",
        &s(&d.join("p3")),
    ]);
    check(&none, 1, &["none of the 1 input files", "junk.dcm"]);
    let bad_point = cxr(&[
        "predict",
        "--run",
        &s(&run),
        &s(&good),
        "--operating-point",
        "1.5",
    ]);
    check(&bad_point, 1, &["--operating-point"]);
    let no_run = cxr(&["predict", "--run", &s(&d.join("nothing")), &s(&good)]);
    check(&no_run, 1, &["not a cxr run folder"]);
}

#[test]
fn sharded_pipeline_and_prediction_merge_into_what_one_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let npz = d.join("tiny.npz");
    cxr_testkit::write_tiny_npz(&npz, &[("train", 64), ("val", 32), ("test", 32)]);
    let out = d.join("pipe");
    for shard in ["1/2", "2/2"] {
        let args = [
            "pipeline",
            "--offline",
            "--data",
            &s(&npz),
            "--models",
            "cnn",
            "--seeds",
            "0,1,2",
            "--epochs",
            "1",
            "--out",
            &s(&out),
            "--shard",
            shard,
        ];
        check(&cxr(&args), 0, &[]);
        assert!(
            !out.join("summary.csv").exists(),
            "a shard writes no comparison"
        );
    }
    check(
        &cxr(&["pipeline", "--models", "cnn", "--shard", "1/2"]),
        1,
        &["--out"],
    );
    check(&cxr(&["pipeline", "--shard", "3/2"]), 2, &["K ≤ N"]);
    check(&cxr(&["report", "--run", &s(&out)]), 0, &[]);
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 4, "{summary}");
    for seed in 0..3 {
        assert!(summary.contains(&format!("cnn-seed{seed}")), "{summary}");
    }

    // Prediction in 3 shards, merged by `report`, equals one process's rows.
    let run = out.join("cnn-seed0");
    let images = d.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 0..7u32 {
        image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((x * y + 9 * i) % 256) as u8]))
            .save(images.join(format!("{i}.png")))
            .unwrap();
    }
    std::fs::write(images.join("3b.png"), b"broken").unwrap();
    let whole = d.join("whole");
    check(
        &cxr(&[
            "predict",
            "--run",
            &s(&run),
            &s(&images),
            "--out",
            &s(&whole),
        ]),
        0,
        &[],
    );
    let sharded = d.join("sharded");
    for shard in ["1/3", "2/3", "3/3"] {
        let args = [
            "predict",
            "--run",
            &s(&run),
            &s(&images),
            "--out",
            &s(&sharded),
            "--shard",
            shard,
        ];
        check(&cxr(&args), 0, &[]);
    }
    check(
        &cxr(&["predict", "--run", &s(&run), &s(&images), "--shard", "1/3"]),
        1,
        &["--out"],
    );
    check(&cxr(&["report", "--run", &s(&sharded)]), 0, &[]);
    let a = cxr_runfolder::read_predict_rows(&whole.join("predictions.csv")).unwrap();
    let b = cxr_runfolder::read_predict_rows(&sharded.join("predictions.csv")).unwrap();
    assert_eq!(a.len(), 8);
    assert_eq!(a, b, "merged shards differ from one process");
    let sa = cxr_runfolder::PredictSummary::read(&whole.join("summary.json")).unwrap();
    let sb = cxr_runfolder::PredictSummary::read(&sharded.join("summary.json")).unwrap();
    assert_eq!((sa.predicted, sa.unreadable), (sb.predicted, sb.unreadable));
    assert_eq!(
        sa.site_check.map(|c| c.estimate),
        sb.site_check.map(|c| c.estimate)
    );
    assert!(sharded.join("report.html").is_file());
}

#[test]
fn folder_runs_trace_predictions_to_files_and_predict_reproduces_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let root = d.join("xray");
    let mut state = 7u32;
    for (s, split) in ["train", "val", "test"].into_iter().enumerate() {
        for (class, bright) in [("NORMAL", 0u32), ("PNEUMONIA", 70)] {
            let folder = root.join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 100 * s..100 * s + 12 {
                // Non-square, larger than the model input: cropped and resized on load.
                let img = image::GrayImage::from_fn(48, 40, |_, _| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    image::Luma([((state >> 16) % 150 + bright) as u8])
                });
                img.save(folder.join(format!("person{i}_{class}.png")))
                    .unwrap();
            }
        }
    }
    let run = d.join("run");
    let args = [
        "train",
        "--offline",
        "--data",
        &s(&root),
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--out",
        &s(&run),
    ];
    check(&cxr(&args), 0, &[]);
    let preds = cxr_runfolder::read_predictions(&run).unwrap();
    assert_eq!(preds.len(), 48);
    for p in &preds {
        let path = p
            .path
            .as_deref()
            .expect("folder data records each image's file");
        assert!(std::path::Path::new(path).is_file(), "{path}");
        assert!(
            path.contains(&format!("/{}/", p.split)),
            "{path} is not in {}",
            p.split
        );
        let class = if p.label == 1 { "PNEUMONIA" } else { "NORMAL" };
        assert!(path.contains(class), "{path}: label {}", p.label);
    }
    // The run's model applied to its own test folder gives its own test probabilities.
    let out = d.join("pred");
    check(
        &cxr(&[
            "predict",
            "--run",
            &s(&run),
            &s(&root.join("test")),
            "--out",
            &s(&out),
        ]),
        0,
        &[],
    );
    let rows = cxr_runfolder::read_predict_rows(&out.join("predictions.csv")).unwrap();
    assert_eq!(rows.len(), 24);
    for p in preds.iter().filter(|p| p.split == "test") {
        let path = p.path.as_deref().unwrap();
        let r = rows.iter().find(|r| r.path == path).unwrap();
        assert_eq!(r.prob.map(f64::to_bits), Some(p.prob.to_bits()), "{path}");
    }
}

#[test]
fn evaluate_writes_its_folder_and_report_and_names_bad_columns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (npz, run) = tiny_run(d);
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let meta = d.join("meta.csv");
    let rows: String = (0..32).map(|i| format!("{i},{}\n", i % 2)).collect();
    std::fs::write(&meta, format!("idx,site\n{rows}")).unwrap();
    let out = d.join("eval");
    let base = [
        "evaluate",
        "--run",
        &s(&run),
        "--data",
        &s(&npz),
        "--metadata",
        &s(&meta),
        "--join-on",
        "idx",
        "--resamples",
        "50",
        "--min-group-size",
        "5",
    ];
    let ok = cxr(&[&base[..], &["--group-by", "site", "--out", &s(&out)]].concat());
    check(&ok, 0, &[]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(stdout.contains("32 images"), "{stdout}");
    let e = cxr_runfolder::Evaluation::read(&out.join("evaluation.json")).unwrap();
    assert_eq!(e.subgroups[0].groups.len(), 2);
    assert!(out.join("report.html").is_file() && out.join("metrics.json").is_file());
    // `report --run` rebuilds an evaluation folder's report.
    std::fs::remove_file(out.join("report.html")).unwrap();
    check(&cxr(&["report", "--run", &s(&out)]), 0, &[]);
    assert!(out.join("report.html").is_file());
    let bad = cxr(&[
        &base[..],
        &["--group-by", "age", "--out", &s(&d.join("e2"))],
    ]
    .concat());
    check(&bad, 1, &["meta.csv", "no column `age`", "idx, site"]);
    let split = cxr(&[&base[..], &["--split", "dev"]].concat());
    check(&split, 1, &["--split", "dev"]);
}
