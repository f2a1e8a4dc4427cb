//! Patients on the command line: leakage between splits stops `train` (pattern and
//! table), `--allow-patient-overlap` records it, `--val-from-train` draws validation
//! from train by patient and `--resume` and `audit` reproduce it; bad patient flags are
//! named before any data is read.

use std::collections::BTreeSet;
use std::path::Path;

use crate::{check, cxr};

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// `ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/` with `counts` images per class of each
/// split, named by `name(split, class, i)`; random 40×40 gray pixels, brighter for
/// pneumonia.
fn folder(root: &Path, counts: [usize; 3], name: impl Fn(&str, &str, usize) -> String) {
    let mut state = 11u32;
    for (split, n) in ["train", "val", "test"].into_iter().zip(counts) {
        for (class, bright) in [("NORMAL", 0u32), ("PNEUMONIA", 70)] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let img = image::GrayImage::from_fn(40, 40, |_, _| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    image::Luma([((state >> 16) % 150 + bright) as u8])
                });
                img.save(dir.join(name(split, class, i))).unwrap();
            }
        }
    }
}

/// Kaggle names, two images per patient, numbered per split (no overlap) unless
/// `plant`: then the test split's first normal patient is the train split's `IM-0000`.
fn kaggle(plant: bool) -> impl Fn(&str, &str, usize) -> String {
    move |split, class, i| {
        let base = match split {
            "train" => 0,
            "val" => 100,
            _ => 200,
        };
        let p = if plant && split == "test" && class == "NORMAL" && i < 2 {
            0
        } else {
            base + i / 2
        };
        if class == "NORMAL" {
            format!("IM-{p:04}-{:04}.png", i % 2 + 1)
        } else {
            format!("person{p}_bacteria_{}.png", i % 2 + 1)
        }
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn leakage_stops_training_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("xray");
    folder(&root, [8, 4, 4], kaggle(true));
    let run = dir.path().join("run");
    let base = [
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
    let out = cxr(&base);
    check(
        &out,
        1,
        &[
            "patients leak between splits",
            "1 patient(s)",
            "IM-0000 (train 2, test 2)",
            "--allow-patient-overlap",
        ],
    );
    assert!(!run.join("config.json").exists(), "refused before training");

    // The same through a table (synthetic ids by path): a test pneumonia image is
    // given a train patient.
    let mut rows = String::from("path,patient\n");
    for split in ["train", "val", "test"] {
        for class in ["NORMAL", "PNEUMONIA"] {
            let mut files: Vec<_> = std::fs::read_dir(root.join(split).join(class))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            for (i, f) in files.iter().enumerate() {
                let patient = if split == "test" && class == "PNEUMONIA" && i == 0 {
                    "train-PNEUMONIA-0".to_string()
                } else {
                    format!("{split}-{class}-{}", i / 2)
                };
                rows.push_str(&format!("{split}/{class}/{f},{patient}\n"));
            }
        }
    }
    let table = dir.path().join("patients.csv");
    std::fs::write(&table, rows).unwrap();
    let mut args = base.to_vec();
    let t = s(&table);
    args.extend(["--patients", &t]);
    check(
        &cxr(&args),
        1,
        &["train-PNEUMONIA-0 (train 2, test 1)", "patients.csv"],
    );

    // Allowed: trained, and recorded in config.json and the data audit.
    let mut args = base.to_vec();
    args.push("--allow-patient-overlap");
    check(&cxr(&args), 0, &[]);
    let c = json(&run.join("config.json"));
    assert_eq!(c["train"]["allow_patient_overlap"], true);
    let ids = &c["patient_ids"];
    assert_eq!(ids["overlapping_patients"], 1);
    assert_eq!(ids["overlap_allowed"], true);
    assert!(ids["source"].as_str().unwrap().starts_with("pattern ^("));
    let da = json(&run.join("audit").join("data_audit.json"));
    assert_eq!(da["patients"]["overlapping"], 1);
    assert_eq!(
        da["patients"]["overlap"][0],
        serde_json::json!({"patient": "IM-0000", "images": {"train": 2, "test": 2}})
    );
}

#[test]
fn val_from_train_is_drawn_by_patient_recorded_and_reproduced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("xray");
    folder(&root, [24, 4, 8], kaggle(false));
    let run = dir.path().join("run");
    let args = |epochs: &'static str| {
        vec![
            "train".to_string(),
            "--offline".into(),
            "--data".into(),
            s(&root),
            "--epochs".into(),
            epochs.into(),
            "--image-size".into(),
            "32".into(),
            "--seed".into(),
            "3".into(),
            "--out".into(),
            s(&run),
        ]
    };
    // Without it, the small given val split is warned about.
    let out = cxr(&args("1")
        .iter()
        .map(String::as_str)
        .chain(["--limit", "1"])
        .collect::<Vec<_>>());
    check(&out, 0, &["only 8 images", "--val-from-train"]);
    std::fs::remove_dir_all(&run).unwrap();

    let mut first = args("1");
    first.extend(["--val-from-train".into(), "0.25".into()]);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    check(&cxr(&first), 0, &[]);
    let c = json(&run.join("config.json"));
    assert_eq!(c["train"]["val_from_train"], 0.25);
    let v = &c["val_from_train"];
    assert_eq!(v["given_val_images"], 8);
    // 0.25 of 24 images per class in patients of 2: 3 patients (6 images) per class.
    assert_eq!(
        (v["val_images"].as_u64(), v["val_patients"].as_u64()),
        (Some(12), Some(6))
    );
    assert_eq!(
        (v["val_normal"].as_u64(), v["val_pneumonia"].as_u64()),
        (Some(6), Some(6))
    );
    assert!(v["note"].as_str().unwrap().contains("not used"));
    assert_eq!(c["data"]["val"], 12);
    assert_eq!(c["data"]["train"], 36);

    let split_files = |split: &str| -> BTreeSet<String> {
        cxr_runfolder::read_predictions(&run)
            .unwrap()
            .into_iter()
            .filter(|p| p.split == split)
            .map(|p| p.path.unwrap())
            .collect()
    };
    let val = split_files("val");
    assert_eq!(val.len(), 12);
    assert!(val.iter().all(|p| p.contains("/train/")), "{val:?}");
    // Whole patients: both images of each val patient are in val.
    for p in &val {
        let twin = if p.contains("-0001.png") || p.contains("_1.png") {
            p.replace("-0001.png", "-0002.png")
                .replace("_1.png", "_2.png")
        } else {
            p.replace("-0002.png", "-0001.png")
                .replace("_2.png", "_1.png")
        };
        assert!(val.contains(&twin), "{p} without {twin}");
    }

    // Resume (one more epoch) and the audit draw the same split.
    let resume: Vec<String> = args("2").into_iter().chain(["--resume".into()]).collect();
    let resume: Vec<&str> = resume.iter().map(String::as_str).collect();
    check(&cxr(&resume), 0, &[]);
    assert_eq!(split_files("val"), val);
    let c = json(&run.join("config.json"));
    assert_eq!(c["val_from_train"]["val_images"], 12);
    check(
        &cxr(&["audit", "--run", &s(&run), "--no-robustness"]),
        0,
        &[],
    );
    let da = json(&run.join("audit").join("data_audit.json"));
    assert_eq!(da["splits"][1]["n"], 12);
    assert_eq!(da["patients"]["overlapping"], 0);
    // Another table for an audit of a re-split run is refused.
    let table = dir.path().join("p.csv");
    std::fs::write(&table, "file,patient\nIM-0000-0001.png,a\n").unwrap();
    check(
        &cxr(&["audit", "--run", &s(&run), "--patients", &s(&table)]),
        1,
        &["--patients must agree"],
    );
}

#[test]
fn bad_patient_flags_are_named_before_data_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-data");
    let m = s(&missing);
    let train = |extra: &[&str]| {
        let mut a = vec!["train", "--offline", "--data", &m];
        a.extend_from_slice(extra);
        cxr(&a)
    };
    for bad in ["1.5", "0", "1", "-0.2"] {
        check(
            &train(&["--val-from-train", bad]),
            1,
            &["val-from-train", "(0, 1)"],
        );
    }
    check(
        &train(&["--group-pattern", "person(\\d+"]),
        1,
        &["--group-pattern", "person(\\d+"],
    );
    check(
        &train(&["--group-pattern", "person\\d+_"]),
        1,
        &["person\\d+_", "capture group"],
    );
    let table = dir.path().join("table.csv");
    check(&train(&["--patients", &s(&table)]), 1, &["table.csv"]);
    std::fs::write(&table, "file,subject\na.png,1\n").unwrap();
    check(
        &train(&["--patients", &s(&table)]),
        1,
        &["table.csv", "missing column `patient`"],
    );
    std::fs::write(&table, "file,patient\na.png,1\na.png,2\n").unwrap();
    check(
        &train(&["--patients", &s(&table)]),
        1,
        &["table.csv", "`a.png` is listed twice"],
    );
    check(
        &train(&["--patients", &s(&table), "--group-pattern", "(x)"]),
        2,
        &["--patients"],
    );
    // npz data has no patient ids.
    let npz = dir.path().join("pneumoniamnist.npz");
    cxr_testkit::write_tiny_npz(&npz, &[("train", 8), ("val", 4), ("test", 4)]);
    let out = cxr(&[
        "train",
        "--offline",
        "--data",
        &s(&npz),
        "--val-from-train",
        "0.2",
    ]);
    check(&out, 1, &["--val-from-train", "npz", "no patient ids"]);
}
