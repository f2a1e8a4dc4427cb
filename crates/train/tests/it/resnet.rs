//! ResNet18 training end to end on a small synthetic set: fine-tuning from a weights
//! file (frozen body, then unfrozen), the learning-rate range test, duplicate
//! exclusion, the run folder and the audit.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use cxr_data::{Dataset, ImageSet};
use cxr_models::{ResNetConfig, init_resnet18};
use cxr_train::{RunOptions, TrainConfig, train};

/// Random 28×28 images (a seeded LCG) whose label brightens the centre, so that the
/// classes differ; `copies` of the first validation images are appended to train.
fn dataset(n_train: usize, n_eval: usize, copies: usize) -> Dataset {
    let mut state = 12345u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut make = |n: usize| {
        let mut images = Vec::with_capacity(n * 784);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let label = (i % 2) as u8;
            for p in 0..784 {
                let (y, x) = (p / 28, p % 28);
                let centre = (10..18).contains(&y) && (10..18).contains(&x);
                let base = (next() % 160) as u8;
                images.push(if centre && label == 1 {
                    base + 90
                } else {
                    base
                });
            }
            labels.push(label);
        }
        ImageSet {
            images,
            labels,
            height: 28,
            width: 28,
        }
    };
    let mut train_set = make(n_train);
    let val = make(n_eval);
    let test = make(n_eval);
    for i in 0..copies {
        train_set.images.extend_from_slice(val.image(i));
        train_set.labels.push(val.labels[i]);
    }
    Dataset {
        train: train_set,
        val,
        test,
        source: "synthetic".into(),
        sha256: "1".repeat(64),
        files: Default::default(),
        patients: None,
    }
}

/// Seeded ResNet18 weights written as a checkpoint file, standing in for ImageNet
/// weights.
fn weights_file(dir: &Path) -> (std::path::PathBuf, HashMap<String, Tensor>) {
    let varmap = VarMap::new();
    init_resnet18(&varmap, &ResNetConfig::default(), 7, &Device::Cpu).unwrap();
    let path = dir.join("pretrained.safetensors");
    varmap.save(&path).unwrap();
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    (path, tensors)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_scalar()
        .unwrap()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn config(weights: &Path, freeze: usize, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        freeze_epochs: freeze,
        batch_size: 16,
        eval_batch_size: 32,
        image_size: 32,
        ..TrainConfig::resnet18(&weights.display().to_string())
    }
}

/// With only the frozen epoch, the body's convolutions keep the loaded values
/// exactly, while the head, the BatchNorm affine weights and running statistics
/// train (fastai's frozen `fine_tune` epoch).
#[test]
fn frozen_epoch_trains_head_and_batchnorm_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, loaded) = weights_file(tmp.path());
    let out = tmp.path().join("run");
    train(
        &config(&file, 1, 0),
        &dataset(48, 16, 0),
        &out,
        &RunOptions::default(),
    )
    .unwrap();
    let model =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    for name in [
        "conv1.weight",
        "layer1.0.conv1.weight",
        "layer4.1.conv2.weight",
    ] {
        assert_eq!(max_diff(&model[name], &loaded[name]), 0.0, "{name} moved");
    }
    for name in [
        "fc.weight",
        "bn1.weight",
        "layer3.0.bn2.bias",
        "bn1.running_mean",
    ] {
        assert!(
            max_diff(&model[name], &loaded[name]) > 0.0,
            "{name} did not train"
        );
    }
    let cfg = json(&out.join("config.json"));
    assert_eq!(cfg["pretrained"], true);
    assert_eq!(cfg["weights_loaded"]["head_loaded"], true);
    assert!(cfg["weights_loaded"]["tensors"].as_u64().unwrap() > 100);
}

/// Frozen then unfrozen, with the range test and duplicate exclusion: the whole run
/// folder, and the body trained in the unfrozen epoch.
#[test]
fn fine_tune_writes_run_folder_and_lr_find() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, loaded) = weights_file(tmp.path());
    let out = tmp.path().join("run");
    let cfg = TrainConfig {
        lr_find: true,
        exclude_duplicates: true,
        ..config(&file, 1, 1)
    };
    let data = dataset(48, 16, 3);
    let opts = RunOptions::default();
    let t0 = std::time::Instant::now();
    let summary = train(&cfg, &data, &out, &opts).unwrap();
    eprintln!("fine-tune run: {:.1} s", t0.elapsed().as_secs_f64());
    assert!((1..=2).contains(&summary.best_epoch));
    for f in [
        "metrics.json",
        "predictions.csv",
        "history.csv",
        "model.safetensors",
        "config.json",
        "lr_find.csv",
        "lr_find.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let history = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 3, "{history}");
    let lr = std::fs::read_to_string(out.join("lr_find.csv")).unwrap();
    assert!(lr.starts_with("step,lr,loss,smoothed_loss\n"));
    assert!(lr.lines().count() > 10, "{lr}");
    // the unfrozen epoch moved the body (the last checkpoint holds epoch 2's weights)
    let last = cxr_train::load_checkpoint(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(last.meta.epoch, 2);
    let name = "layer1.0.conv1.weight";
    assert!(max_diff(&last.weights[name], &loaded[name]) > 0.0);
    let config = json(&out.join("config.json"));
    assert_eq!(
        config["data"]["excluded_duplicates"]["duplicating_val_or_test"],
        3
    );
    assert_eq!(config["data"]["train"], 48);
    assert_eq!(config["train"]["model"], "resnet18");
    assert!(!out.join("audit").exists(), "train() does not audit");
}
