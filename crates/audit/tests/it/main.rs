//! Integration tests for cxr-audit: Grad-CAM and occlusion on a synthetic task whose
//! label lives in one image region, and the `audit/` files of a trained run on a small
//! synthetic data set.

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cxr_audit::{AuditOptions, TargetClass, audit_run, grad_cam, occlusion_map};
use cxr_data::{Dataset, ImageSet, Normalize};
use cxr_models::{CnnConfig, SeedCnn, init_seed_cnn};
use cxr_train::{Adam, AdamConfig, RunOptions, TrainConfig, bce_with_logits, train};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The region that carries the label: rows and columns 2..14 (top-left quadrant).
const REGION: std::ops::Range<usize> = 2..14;

/// `n` 28×28 images in [0, 1]: noise in [0, 0.35]; positives (every other image)
/// also hold a bright 5×5 square placed at random entirely inside [`REGION`].
fn synthetic(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut px = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 2) as u8;
        let mut img: Vec<f32> = (0..784).map(|_| rng.random::<f32>() * 0.35).collect();
        if label == 1 {
            let y0 = rng.random_range(REGION.start..=REGION.end - 5);
            let x0 = rng.random_range(REGION.start..=REGION.end - 5);
            for y in y0..y0 + 5 {
                for x in x0..x0 + 5 {
                    img[y * 28 + x] = 0.85 + 0.15 * rng.random::<f32>();
                }
            }
        }
        px.extend(img);
        labels.push(label);
    }
    (px, labels)
}

fn to_u8(px: &[f32]) -> Vec<u8> {
    px.iter().map(|&v| (v * 255.0).round() as u8).collect()
}

fn tensor(px: &[f32], n: usize) -> Tensor {
    let v: Vec<f32> = px.iter().map(|&p| (p - 0.5) / 0.5).collect();
    Tensor::from_vec(v, (n, 1, 28, 28), &Device::Cpu).unwrap()
}

/// A tiny seed CNN (8/16/16 channels) trained for 150 Adam steps of 32 images.
fn trained_tiny_cnn() -> SeedCnn {
    let cfg = CnnConfig {
        in_channels: 1,
        channels: [8, 16, 16],
    };
    let varmap = VarMap::new();
    init_seed_cnn(&varmap, &cfg, 1, &Device::Cpu).unwrap();
    let model = SeedCnn::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        &cfg,
    )
    .unwrap();
    let mut params: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = Adam::new(
        params,
        AdamConfig {
            lr: 5e-3,
            ..AdamConfig::default()
        },
    )
    .unwrap();
    for step in 0..150u64 {
        let (px, labels) = synthetic(32, 1000 + step);
        let x = tensor(&px, 32);
        let y: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
        let y = Tensor::from_vec(y, 32, &Device::Cpu).unwrap();
        let loss = bce_with_logits(&model.forward(&x).unwrap(), &y).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
    model
}

/// Grad-CAM and occlusion maps of positives put their mass inside the
/// label-carrying region (144 of 784 pixels): over three times its area share for
/// Grad-CAM, and over 70% inside the top-left quadrant; the map for 'normal'
/// (negated logit) is not the pneumonia map inverted.
#[test]
fn grad_cam_concentrates_on_the_label_region() {
    let t0 = std::time::Instant::now();
    let model = trained_tiny_cnn();
    eprintln!("tiny CNN trained in {:.1} s", t0.elapsed().as_secs_f64());
    let (px, labels) = synthetic(64, 7);
    let x = tensor(&px, 64);
    let logits: Vec<f32> = model.forward(&x).unwrap().to_vec1().unwrap();
    let correct = logits
        .iter()
        .zip(&labels)
        .filter(|(z, l)| (**z >= 0.0) == (**l == 1))
        .count();
    assert!(
        correct >= 60,
        "the tiny CNN did not learn the task: {correct}/64"
    );

    let pos: Vec<usize> = (0..64).filter(|&i| labels[i] == 1).collect();
    let xp = x
        .index_select(
            &Tensor::new(
                pos.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                &Device::Cpu,
            )
            .unwrap(),
            0,
        )
        .unwrap();
    let cams = grad_cam(&model, &xp, &vec![TargetClass::Pneumonia; pos.len()]).unwrap();
    let normal = grad_cam(&model, &xp, &vec![TargetClass::Normal; pos.len()]).unwrap();
    let area = (REGION.len() * REGION.len()) as f32 / 784.0;
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let mass: Vec<f32> = cams.iter().map(|c| c.mass_in(REGION, REGION)).collect();
    eprintln!(
        "Grad-CAM mass in the label region: mean {:.3}, min {:.3} (area fraction {area:.3}); in the quadrant {:.3}",
        mean(&mass),
        mass.iter().fold(1.0f32, |m, &v| m.min(v)),
        mean(
            &cams
                .iter()
                .map(|c| c.mass_in(0..14, 0..14))
                .collect::<Vec<_>>()
        )
    );
    // measured: 0.66 in the 12×12 region (18% of the image), 0.82 in the quadrant
    assert!(
        mean(&mass) > 3.0 * area,
        "mean mass {:.3} vs area {area:.3}",
        mean(&mass)
    );
    let quadrant = mean(
        &cams
            .iter()
            .map(|c| c.mass_in(0..14, 0..14))
            .collect::<Vec<_>>(),
    );
    assert!(quadrant > 0.7, "quadrant mass {quadrant:.3}");
    for (c, n) in cams.iter().zip(&normal) {
        assert_eq!((c.height, c.width), (28, 28));
        assert!(c.values.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(
            c.raw_max > 0.0,
            "no evidence for pneumonia on a positive image"
        );
        // evidence for 'normal' on a clear positive is weaker and sits elsewhere
        assert!(n.raw_max < c.raw_max);
        assert!(n.mass_in(REGION, REGION) < c.mass_in(REGION, REGION));
    }

    // occlusion sensitivity agrees
    let occ_mass: Vec<f32> = pos
        .iter()
        .take(8)
        .map(|&i| {
            let img = &px[i * 784..(i + 1) * 784];
            let m = occlusion_map(
                &model,
                img,
                28,
                28,
                TargetClass::Pneumonia,
                Normalize::default(),
                7,
                4,
                &Device::Cpu,
            )
            .unwrap();
            assert!(m.raw_max > 0.0);
            m.mass_in(REGION, REGION)
        })
        .collect();
    eprintln!(
        "occlusion mass in the label region: mean {:.3}",
        mean(&occ_mass)
    );
    assert!(
        mean(&occ_mass) > 0.6,
        "occlusion mass {:.3}",
        mean(&occ_mass)
    );
}

fn set(n: usize, seed: u64) -> ImageSet {
    let (px, labels) = synthetic(n, seed);
    ImageSet {
        images: to_u8(&px),
        labels,
        height: 28,
        width: 28,
    }
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

/// `audit_run` writes the `audit/` files of a trained run and recomputes the same
/// files; the data audit finds the planted duplicates; a model is never audited on
/// other data.
#[test]
fn audit_writes_the_contract_files() {
    let mut train_set = set(256, 11);
    let mut val = set(64, 12);
    let test = set(96, 13);
    // plant: val image 3 is train image 5; train image 9 is train image 7
    let n = 784;
    let copy = train_set.images[5 * n..6 * n].to_vec();
    val.images[3 * n..4 * n].copy_from_slice(&copy);
    let copy = train_set.images[7 * n..8 * n].to_vec();
    train_set.images[9 * n..10 * n].copy_from_slice(&copy);
    let data = Dataset {
        train: train_set,
        val,
        test,
        source: "synthetic".into(),
        sha256: "1".repeat(64),
        files: Default::default(),
        patients: None,
    };
    let out = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    train(&cfg, &data, out.path(), &RunOptions::default()).unwrap();
    let opts = AuditOptions {
        gallery_k: 3,
        ..AuditOptions::default()
    };
    audit_run(out.path(), &data, &opts).unwrap();
    let a = out.path().join("audit");

    let q = lines(&a.join("quality.csv"));
    assert_eq!(
        q[0],
        "split,index,label,prob,pred,contrast_rms,contrast_michelson,sharpness,brightness,entropy"
    );
    assert_eq!(q.len(), 97);
    assert!(q[1].starts_with("test,0,0,"));

    let r = lines(&a.join("robustness.csv"));
    assert!(r[0].starts_with("corruption,severity,auc,sensitivity,specificity,accuracy"));
    assert_eq!(r.len(), 1 + 1 + 6 * 5);
    assert!(r[1].starts_with("none,0,"));
    // the clean row's AUC equals metrics.json's test AUC (same model, same images)
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("metrics.json")).unwrap())
            .unwrap();
    let auc: f64 = r[1].split(',').nth(2).unwrap().parse().unwrap();
    assert!((auc - metrics["test"]["auc"].as_f64().unwrap()).abs() < 1e-9);

    let g = lines(&a.join("gallery.csv"));
    assert!(g[0].starts_with("kind,rank,split,index,label,prob,loss,image,gradcam,occlusion"));
    assert!(g.len() > 2 * 3, "{g:?}"); // header + both confident groups at least
    for row in &g[1..] {
        let f: Vec<&str> = row.split(',').collect();
        for rel in &f[7..10] {
            assert!(out.path().join(rel).is_file(), "{rel} missing");
        }
    }

    let fm: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("failure_modes.json")).unwrap())
            .unwrap();
    assert_eq!(fm["threshold"], 0.5);
    assert_eq!(fm["measures"].as_array().unwrap().len(), 5);
    let ids: Vec<&str> = fm["hypotheses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            assert!(h["supported"].is_boolean() && h["summary"].is_string());
            h["id"].as_str().unwrap()
        })
        .collect();
    assert!(ids.contains(&"blur_causes_fp") && ids.contains(&"low_contrast_causes_fp"));

    let da: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("data_audit.json")).unwrap()).unwrap();
    assert_eq!(da["splits"][0]["n"], 256);
    assert_eq!(da["duplicates"]["exact_within"]["train"], 1);
    let tv = &da["duplicates"]["exact_across"][0];
    assert_eq!(
        (tv["a"].as_str(), tv["b"].as_str()),
        (Some("train"), Some("val"))
    );
    assert_eq!(tv["pairs"], 1);
    assert_eq!(tv["examples"][0], serde_json::json!([5, 3]));
    assert_eq!(da["excluded"], 0);
    assert_eq!(da["patients"]["available"], false);
    assert!(da["patients"]["note"].as_str().unwrap().contains("npz"));

    // With patient ids: a patient planted in train and test is listed with its splits.
    let id = |split: &str, i: usize| format!("{split}{}", i / 2);
    let mut ids = cxr_data::PatientIds {
        train: (0..256).map(|i| id("train", i)).collect(),
        val: (0..64).map(|i| id("val", i)).collect(),
        test: (0..96).map(|i| id("test", i)).collect(),
        source: "pattern ^(x)".into(),
        unmatched: 0,
    };
    ids.test[95] = "train0".into();
    let with_ids = Dataset {
        patients: Some(ids),
        ..data.clone()
    };
    let quick = AuditOptions {
        gallery_k: 1,
        robustness: false,
        ..AuditOptions::default()
    };
    audit_run(out.path(), &with_ids, &quick).unwrap();
    let da: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("data_audit.json")).unwrap()).unwrap();
    let p = &da["patients"];
    assert_eq!(p["available"], true);
    assert_eq!(p["patients"]["train"], 128);
    assert_eq!(p["patients"]["test"], 49);
    assert_eq!(p["overlapping"], 1);
    assert_eq!(
        p["overlap"][0],
        serde_json::json!({"patient": "train0", "images": {"train": 2, "test": 1}})
    );
    let typed = cxr_runfolder::Audit::open(out.path()).unwrap();
    assert_eq!(
        typed.data_audit.unwrap().patients.unwrap().overlap[0].patient,
        "train0"
    );

    // recomputing from model.safetensors gives the same numbers
    let before = std::fs::read(a.join("robustness.csv")).unwrap();
    let quality_before = std::fs::read(a.join("quality.csv")).unwrap();
    let s = audit_run(out.path(), &data, &AuditOptions::default()).unwrap();
    assert_eq!(std::fs::read(a.join("robustness.csv")).unwrap(), before);
    assert_eq!(
        std::fs::read(a.join("quality.csv")).unwrap(),
        quality_before
    );
    assert_eq!(s.hypotheses.len(), 6);
    assert!(s.stages.iter().any(|(k, _)| k == "robustness"));

    // other data is refused, naming config.json
    let other = Dataset {
        sha256: "2".repeat(64),
        files: Default::default(),
        patients: None,
        ..data
    };
    let err = audit_run(out.path(), &other, &AuditOptions::default()).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");
}

/// ResNet18 through the same audit (its features are layer4's, its input ImageNet
/// normalised by the model): every file written, the settings recorded.
#[test]
fn resnet18_is_audited_like_any_classifier() {
    let vm = candle_nn::VarMap::new();
    let rcfg = cxr_models::ResNetConfig::default();
    cxr_models::init_resnet18(&vm, &rcfg, 0, &Device::Cpu).unwrap();
    let model = cxr_models::build_classifier(
        "resnet18",
        VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let data = Dataset {
        train: set(32, 21),
        val: set(16, 22),
        test: set(24, 23),
        source: "synthetic".into(),
        sha256: "3".repeat(64),
        files: Default::default(),
        patients: None,
    };
    let cfg = TrainConfig {
        image_size: 32,
        ..TrainConfig::resnet18("none")
    };
    let out = tempfile::tempdir().unwrap();
    let opts = AuditOptions {
        gallery_k: 1,
        explain_limit: 2,
        tile_size: 32,
        robustness: false,
        ..AuditOptions::default()
    };
    let s = cxr_audit::audit_model(model.as_ref(), &cfg, &Device::Cpu, &data, out.path(), &opts)
        .unwrap();
    assert_eq!(s.hypotheses.len(), 6);
    let meta: cxr_runfolder::AuditMeta =
        cxr_runfolder::read_json(&out.path().join("audit/audit.json")).unwrap();
    assert_eq!(meta.model.as_deref(), Some("resnet18"));
    assert_eq!(meta.image_size, Some(32));
    assert_eq!(meta.options.unwrap().gallery_k, 1);
    assert!(out.path().join("audit/gallery.csv").is_file());
    assert!(!out.path().join("audit/robustness.csv").exists());
}

/// On the real data: every `audit/` file of a trained seed CNN, one quality row per
/// test image, and the validation images that also occur in train found.
#[test]
fn real_data_audit_finds_the_train_val_duplicates() {
    let Some(file) = cxr_testkit::pneumoniamnist() else {
        return;
    };
    let data = cxr_data::load_npz(&file).unwrap();
    let out = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        train_limit: Some(512),
        ..TrainConfig::default()
    };
    train(&cfg, &data, out.path(), &RunOptions::default()).unwrap();
    audit_run(out.path(), &data, &AuditOptions::default()).unwrap();
    let audit = out.path().join("audit");
    let run = cxr_runfolder::RunFolder::open(out.path()).unwrap();
    assert_eq!(run.audit.quality.as_ref().unwrap().len(), 624);
    assert!(run.audit.failure_modes.is_some() && run.audit.robustness.is_some());
    assert!(audit.join("gallery.csv").is_file());
    let da = run.audit.data_audit.unwrap();
    let train_val = &da.duplicates.unwrap().exact_across[0];
    assert_eq!(
        (train_val.a.as_str(), train_val.b.as_str()),
        ("train", "val")
    );
    assert!(train_val.pairs > 0, "{train_val:?}");
}
