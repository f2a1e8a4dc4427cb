//! A short real-data run (one epoch on a subset) checked against the run folder
//! contract, and resume reproducing an uninterrupted run bit for bit.

use std::path::Path;

use cxr_data::load_npz;
use cxr_train::{RunOptions, TrainConfig, train};

use crate::{data_dir, gpu, tiny_dataset};

fn smoke_config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        train_limit: Some(384),
        ..TrainConfig::default()
    }
}

fn csv_rows(path: &Path) -> (String, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (header, rows)
}

#[test]
fn one_epoch_writes_the_run_folder_contract() {
    let Some(dir) = data_dir() else { return };
    let data = load_npz(&dir.join("pneumoniamnist.npz")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let summary = train(&smoke_config(1), &data, out.path(), &RunOptions::default()).unwrap();
    assert_eq!(summary.best_epoch, 1);

    for f in [
        "metrics.json",
        "predictions.csv",
        "history.csv",
        "model.safetensors",
        "config.json",
    ] {
        assert!(out.path().join(f).is_file(), "{f} missing");
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("metrics.json")).unwrap())
            .unwrap();
    for split in ["val", "test"] {
        for key in [
            "accuracy",
            "precision",
            "recall",
            "specificity",
            "f1",
            "auc",
            "threshold",
            "tp",
            "fp",
            "tn",
            "fn",
        ] {
            assert!(
                metrics[split][key].is_number(),
                "metrics.json {split}.{key} missing"
            );
        }
        for key in [
            "average_precision",
            "brier",
            "log_loss",
            "ece",
            "ece_pos",
            "mce",
            "auc_ci_low",
            "auc_ci_high",
        ] {
            assert!(
                metrics[split][key].is_number(),
                "metrics.json {split}.{key} missing"
            );
        }
        let n: u64 = ["tp", "fp", "tn", "fn"]
            .iter()
            .map(|k| metrics[split][k].as_u64().unwrap())
            .sum();
        assert_eq!(n, if split == "val" { 524 } else { 624 });
    }
    for key in [
        "temperature",
        "ece_before",
        "ece_after",
        "brier_before",
        "brier_after",
    ] {
        assert!(
            metrics["calibration"][key].is_number(),
            "calibration.{key} missing"
        );
    }
    let names: Vec<&str> = metrics["operating_points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["youden", "sensitivity_0.95", "default_0.5"]);
    for p in metrics["operating_points"].as_array().unwrap() {
        let n: u64 = ["tp", "fp", "tn", "fn"]
            .iter()
            .map(|k| p[k].as_u64().unwrap())
            .sum();
        assert_eq!(n, 624, "operating points are scored on test");
    }
    let ci = &metrics["bootstrap"]["ci"];
    for key in ["accuracy", "sensitivity", "specificity", "f1", "ece"] {
        assert!(ci[key]["low"].as_f64().unwrap() <= ci[key]["high"].as_f64().unwrap());
    }
    let low = metrics["test"]["auc_ci_low"].as_f64().unwrap();
    let high = metrics["test"]["auc_ci_high"].as_f64().unwrap();
    let auc = metrics["test"]["auc"].as_f64().unwrap();
    assert!(low <= auc && auc <= high);
    let (header, rows) = csv_rows(&out.path().join("reliability.csv"));
    assert_eq!(header, "split,bin,lower,upper,count,confidence,accuracy");
    let test_count: usize = rows
        .iter()
        .filter(|r| r[0] == "test")
        .map(|r| r[4].parse::<usize>().unwrap())
        .sum();
    assert_eq!(test_count, 624);
    let (header, _) = csv_rows(&out.path().join("roc.csv"));
    assert_eq!(header, "split,fpr,tpr,threshold");
    let (header, _) = csv_rows(&out.path().join("pr.csv"));
    assert_eq!(header, "split,recall,precision,threshold");

    let (header, rows) = csv_rows(&out.path().join("predictions.csv"));
    assert_eq!(header, "split,index,label,prob,logit,prob_calibrated,path");
    assert_eq!(rows.len(), 524 + 624);
    assert_eq!(rows.iter().filter(|r| r[0] == "test").count(), 624);
    for r in &rows {
        let p: f64 = r[3].parse().unwrap();
        let z: f64 = r[4].parse().unwrap();
        assert!(
            (p - 1.0 / (1.0 + (-z).exp())).abs() < 1e-6,
            "prob is sigmoid(logit)"
        );
        let c: f64 = r[5].parse().unwrap();
        assert!((0.0..=1.0).contains(&c));
        assert!(r[2] == "0" || r[2] == "1");
    }
    let (header, rows) = csv_rows(&out.path().join("history.csv"));
    assert_eq!(header, "epoch,train_loss,val_loss,val_auc");
    assert_eq!(rows.len(), 1);

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["data"]["sha256"].as_str().unwrap(), data.sha256);
    assert_eq!(config["train"]["batch_size"], 64);
    assert_eq!(config["status"], "finished");
    let weights = candle_core::safetensors::load(
        out.path().join("model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut names: Vec<_> = weights.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "conv1.bias",
            "conv1.weight",
            "conv2.bias",
            "conv2.weight",
            "conv3.bias",
            "conv3.weight",
            "fc.bias",
            "fc.weight"
        ]
    );
}

#[test]
fn resume_reproduces_an_uninterrupted_run() {
    let Some(dir) = data_dir() else { return };
    let data = load_npz(&dir.join("pneumoniamnist.npz")).unwrap();
    let out = resume_matches(&data, smoke_config);
    let ck = cxr_train::load_checkpoint(&out.path().join("checkpoint.safetensors")).unwrap();
    assert!(ck.ema.is_empty(), "no average is kept without --ema");
}

/// Mixup's and label smoothing's draws come from (seed, epoch, step): a resumed run
/// repeats them.
#[test]
fn resume_reproduces_an_uninterrupted_run_with_mixup_and_smoothing() {
    let Some(dir) = data_dir() else { return };
    let data = load_npz(&dir.join("pneumoniamnist.npz")).unwrap();
    resume_matches(&data, |e| TrainConfig {
        mixup: Some(0.4),
        label_smoothing: 0.1,
        ..smoke_config(e)
    });
}

/// The weights' moving average is saved with the checkpoint and restored on resume;
/// validation and the kept model are the average's, training continues from the raw
/// weights.
#[test]
fn resume_reproduces_an_uninterrupted_run_with_a_moving_average() {
    let Some(dir) = data_dir() else { return };
    let data = load_npz(&dir.join("pneumoniamnist.npz")).unwrap();
    let config = |e| TrainConfig {
        ema: Some(0.9),
        keep: cxr_train::KeepEpoch::Last,
        ..smoke_config(e)
    };
    let out = resume_matches(&data, config);
    let ck = cxr_train::load_checkpoint(&out.path().join("checkpoint.safetensors")).unwrap();
    let model = candle_core::safetensors::load(
        out.path().join("model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert_eq!(ck.ema.len(), ck.weights.len());
    let values =
        |t: &candle_core::Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let mut moved = 0;
    for (name, avg) in &ck.ema {
        assert_eq!(
            values(&model[name]),
            values(avg),
            "{name}: the model is the average"
        );
        moved += usize::from(values(avg) != values(&ck.weights[name]));
    }
    assert_eq!(
        moved,
        ck.weights.len(),
        "every averaged weight differs from the raw one"
    );
}

/// Self-distillation's past predictions are saved with the checkpoint and restored on
/// resume; they change training from the second epoch on, not in the first (which has
/// none).
#[test]
fn resume_reproduces_an_uninterrupted_self_distilled_run() {
    let Some(dir) = data_dir() else { return };
    let data = load_npz(&dir.join("pneumoniamnist.npz")).unwrap();
    let config = |e| TrainConfig {
        self_distillation: Some(0.8),
        ..smoke_config(e)
    };
    let out = resume_matches(&data, config);
    let checkpoint =
        |dir: &Path| cxr_train::load_checkpoint(&dir.join("checkpoint.safetensors")).unwrap();
    let ck = checkpoint(out.path());
    let past = ck
        .past
        .expect("a self-distilled run saves its past predictions");
    assert_eq!(past.len(), data.train.len());
    let seen = past.iter().filter(|p| !p.is_nan()).count();
    // Two epochs of 384 images each, drawn from the whole training set.
    assert!(
        (384..=768).contains(&seen),
        "{seen} images have a past prediction"
    );
    assert!(past.iter().all(|p| p.is_nan() || (0.0..=1.0).contains(p)));

    let weights = |config: TrainConfig| {
        let dir = tempfile::tempdir().unwrap();
        train(&config, &data, dir.path(), &RunOptions::default()).unwrap();
        let ck = checkpoint(dir.path());
        let mut w: Vec<(String, Vec<f32>)> = ck
            .weights
            .iter()
            .map(|(n, t)| (n.clone(), t.flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        w
    };
    assert_eq!(
        weights(config(1)),
        weights(smoke_config(1)),
        "the first epoch has no past predictions to learn from"
    );
    assert_ne!(weights(config(2)), weights(smoke_config(2)));
}

/// Two epochs straight and one plus one resumed end in bit-identical checkpoints;
/// returns the uninterrupted run's folder.
fn resume_matches(
    data: &cxr_data::Dataset,
    config: impl Fn(usize) -> TrainConfig,
) -> tempfile::TempDir {
    let straight = tempfile::tempdir().unwrap();
    train(&config(2), data, straight.path(), &RunOptions::default()).unwrap();

    let resumed = tempfile::tempdir().unwrap();
    train(&config(1), data, resumed.path(), &RunOptions::default()).unwrap();
    let opts = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    train(&config(2), data, resumed.path(), &opts).unwrap();

    // Weights and optimizer moments must be bit-identical (the metadata differs only
    // in wall-clock seconds).
    let a = cxr_train::load_checkpoint(&straight.path().join("checkpoint.safetensors")).unwrap();
    let b = cxr_train::load_checkpoint(&resumed.path().join("checkpoint.safetensors")).unwrap();
    assert_eq!(a.meta.epoch, 2);
    assert_eq!(b.meta.epoch, 2);
    assert_eq!(a.meta.step, b.meta.step);
    for (ours, theirs) in [
        (&a.weights, &b.weights),
        (&a.opt_state, &b.opt_state),
        (&a.ema, &b.ema),
    ] {
        assert_eq!(ours.len(), theirs.len());
        for (name, t) in ours {
            // f32 moments and u32 step counts: both exact in f64
            let exact = |t: &candle_core::Tensor| -> Vec<f64> {
                t.flatten_all()
                    .unwrap()
                    .to_dtype(candle_core::DType::F64)
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            };
            let (x, y) = (exact(t), exact(&theirs[name]));
            assert!(
                x == y,
                "{name} differs between the resumed and the uninterrupted run"
            );
        }
    }
    let bits = |p: &Option<Vec<f32>>| {
        p.as_ref()
            .map(|p| p.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
    };
    assert_eq!(bits(&a.past), bits(&b.past), "past predictions differ");
    assert_eq!(
        std::fs::read(straight.path().join("history.csv")).unwrap(),
        std::fs::read(resumed.path().join("history.csv")).unwrap()
    );
    straight
}

/// `config.json` records the requested and resolved device and the precision.
fn assert_device_recorded(out: &Path, requested: &str, resolved: &str, precision: &str) {
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["train"]["device"], requested);
    assert_eq!(cfg["device_resolved"], resolved);
    assert_eq!(cfg["precision"], precision);
    assert_eq!(cfg["train"]["precision"], precision);
}

#[test]
fn device_and_precision_are_recorded_in_config_json() {
    let out = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 4,
        ..TrainConfig::default()
    };
    train(&cfg, &tiny_dataset(), out.path(), &RunOptions::default()).unwrap();
    assert_device_recorded(out.path(), "cpu", "cpu", "f32");
}

/// Two short epochs on CUDA GPU 0 in each precision, for the seed CNN and for
/// ResNet18 (BatchNorm kept f32 under autocast): the run folder is complete and
/// records `cuda:0` and the precision.
#[test]
fn short_runs_on_cuda_in_each_precision() {
    let Some(_) = gpu("cuda") else { return };
    let _mode = crate::cuda_mode_lock();
    let precisions = [
        cxr_train::Precision::F32,
        cxr_train::Precision::F32Strict,
        cxr_train::Precision::Bf16,
        cxr_train::Precision::F16,
    ];
    let models = [cxr_train::ModelKind::Cnn, cxr_train::ModelKind::Resnet18];
    for (model, precision) in models.into_iter().flat_map(|m| precisions.map(|p| (m, p))) {
        let out = tempfile::tempdir().unwrap();
        let cfg = TrainConfig {
            model,
            epochs: 2,
            batch_size: 4,
            device: "cuda".into(),
            precision,
            ..TrainConfig::default()
        };
        let summary = train(&cfg, &tiny_dataset(), out.path(), &RunOptions::default()).unwrap();
        assert!(summary.test.auc.is_finite(), "{}", precision.as_str());
        assert!(out.path().join("model.safetensors").is_file());
        assert_device_recorded(out.path(), "cuda", "cuda:0", precision.as_str());
    }
}
