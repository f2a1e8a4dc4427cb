//! Bad settings and unusable output folders give typed errors, never panics.

use cxr_train::{RunOptions, TrainConfig, TrainError, train};

use crate::tiny_dataset;

#[test]
fn unwritable_output_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("run");
    let err = train(
        &TrainConfig::default(),
        &tiny_dataset(),
        &out,
        &RunOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, TrainError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("a-file"), "{err}");
}

#[test]
fn bad_settings_are_rejected_before_training() {
    let dir = tempfile::tempdir().unwrap();
    for (cfg, field) in [
        (
            TrainConfig {
                epochs: 0,
                ..Default::default()
            },
            "epochs",
        ),
        (
            TrainConfig {
                batch_size: 0,
                ..Default::default()
            },
            "batch-size",
        ),
        (
            TrainConfig {
                optimizer: cxr_train::AdamConfig {
                    lr: -1.0,
                    ..Default::default()
                },
                ..Default::default()
            },
            "lr",
        ),
    ] {
        match train(&cfg, &tiny_dataset(), dir.path(), &RunOptions::default()) {
            Err(TrainError::Config { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert!(matches!(
        train(
            &TrainConfig {
                device: "gpu".into(),
                ..Default::default()
            },
            &tiny_dataset(),
            dir.path(),
            &RunOptions::default()
        ),
        Err(TrainError::Model(cxr_models::ModelError::Device { .. }))
    ));
    // Half precision is refused on the CPU, naming the setting and the alternative.
    for precision in [cxr_train::Precision::Bf16, cxr_train::Precision::F16] {
        let err = train(
            &TrainConfig {
                precision,
                ..Default::default()
            },
            &tiny_dataset(),
            dir.path(),
            &RunOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, TrainError::Config { field, .. } if field == "precision"),
            "{err:?}"
        );
        assert!(err.to_string().contains("--precision f32"), "{err}");
    }
}

#[test]
fn absurd_learning_rate_stops_with_a_divergence_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 4,
        optimizer: cxr_train::AdamConfig {
            lr: 1e30,
            ..Default::default()
        },
        ..Default::default()
    };
    let err = train(&cfg, &tiny_dataset(), dir.path(), &RunOptions::default()).unwrap_err();
    assert!(matches!(err, TrainError::Diverged { .. }), "{err:?}");
}

#[test]
fn resume_with_other_settings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 4,
        ..Default::default()
    };
    train(&cfg, &tiny_dataset(), dir.path(), &RunOptions::default()).unwrap();
    let other = TrainConfig {
        seed: 9,
        epochs: 2,
        ..cfg
    };
    let opts = RunOptions {
        resume: true,
        ..Default::default()
    };
    let err = train(&other, &tiny_dataset(), dir.path(), &opts).unwrap_err();
    assert!(matches!(err, TrainError::Checkpoint { .. }), "{err:?}");
    assert!(err.to_string().contains("checkpoint.safetensors"), "{err}");
}

/// A finished one-epoch run of the tiny dataset: the folder to damage.
fn one_epoch_run() -> (tempfile::TempDir, TrainConfig) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 4,
        ..Default::default()
    };
    train(&cfg, &tiny_dataset(), dir.path(), &run_options(false)).unwrap();
    (dir, cfg)
}

fn run_options(resume: bool) -> RunOptions {
    RunOptions {
        resume,
        ..Default::default()
    }
}

/// Rewrites the run's checkpoint through `edit` (weights, optimizer state, metadata),
/// resumes for a second epoch and returns the error.
fn resume_after(
    edit: impl FnOnce(
        &mut std::collections::HashMap<String, candle_core::Tensor>,
        &mut std::collections::HashMap<String, candle_core::Tensor>,
        &mut cxr_train::CheckpointMeta,
    ),
) -> TrainError {
    let (dir, cfg) = one_epoch_run();
    let path = dir.path().join("checkpoint.safetensors");
    let mut ck = cxr_train::load_checkpoint(&path).unwrap();
    edit(&mut ck.weights, &mut ck.opt_state, &mut ck.meta);
    cxr_train::save_checkpoint(&path, &ck.weights, &ck.opt_state, None, None, &ck.meta).unwrap();
    let cfg = TrainConfig { epochs: 2, ..cfg };
    let err = train(&cfg, &tiny_dataset(), dir.path(), &run_options(true)).unwrap_err();
    assert!(
        err.to_string().contains("checkpoint.safetensors"),
        "the error does not name the file: {err}"
    );
    err
}

#[test]
fn checkpoint_missing_a_weight_names_it() {
    let err = resume_after(|w, _, _| {
        w.remove("fc.weight").unwrap();
    });
    assert!(
        matches!(&err, TrainError::Model(cxr_models::ModelError::MissingTensor { key, .. }) if key == "fc.weight"),
        "{err:?}"
    );
}

#[test]
fn checkpoint_with_an_extra_tensor_names_it() {
    let err = resume_after(|w, _, _| {
        let t = w["fc.bias"].clone();
        w.insert("fc2.bias".into(), t);
    });
    assert!(matches!(err, TrainError::Checkpoint { .. }), "{err:?}");
    assert!(err.to_string().contains("fc2.bias"), "{err}");
}

#[test]
fn checkpoint_with_a_misshaped_weight_names_it_and_both_shapes() {
    let err = resume_after(|w, _, _| {
        w.insert(
            "fc.bias".into(),
            candle_core::Tensor::zeros(3, candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap(),
        );
    });
    assert!(
        matches!(&err, TrainError::Model(cxr_models::ModelError::ShapeMismatch { key, actual, .. }) if key == "fc.bias" && actual == &[3]),
        "{err:?}"
    );
}

#[test]
fn checkpoint_missing_optimizer_state_names_it() {
    let err = resume_after(|_, o, _| {
        o.remove("m.fc.weight").unwrap();
    });
    assert!(matches!(err, TrainError::Checkpoint { .. }), "{err:?}");
    assert!(err.to_string().contains("m.fc.weight"), "{err}");
}

#[test]
fn checkpoint_with_extra_optimizer_state_names_it() {
    let err = resume_after(|_, o, _| {
        let t = o["m.fc.bias"].clone();
        o.insert("m.fc2.bias".into(), t);
    });
    assert!(matches!(err, TrainError::Checkpoint { .. }), "{err:?}");
    assert!(err.to_string().contains("m.fc2.bias"), "{err}");
}

#[test]
fn checkpoint_from_the_other_model_is_refused() {
    // ResNet18's weights under the seed CNN's settings.
    let err = resume_after(|w, o, _| {
        let varmap = candle_nn::VarMap::new();
        cxr_models::init_resnet18(
            &varmap,
            &cxr_models::ResNetConfig::default(),
            0,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        *w = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        o.clear();
    });
    assert!(
        matches!(
            err,
            TrainError::Model(cxr_models::ModelError::ShapeMismatch { .. })
                | TrainError::Model(cxr_models::ModelError::MissingTensor { .. })
                | TrainError::Checkpoint { .. }
        ),
        "{err:?}"
    );
}

#[test]
fn checkpoint_of_other_data_is_refused() {
    let err = resume_after(|_, _, m| m.data_sha256 = "f".repeat(64));
    assert!(matches!(err, TrainError::Checkpoint { .. }), "{err:?}");
    assert!(err.to_string().contains("other data"), "{err}");
}

#[test]
fn truncated_or_foreign_checkpoint_files_are_refused() {
    let (dir, cfg) = one_epoch_run();
    let path = dir.path().join("checkpoint.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let cfg = TrainConfig { epochs: 2, ..cfg };
    for (content, needle) in [
        (bytes[..bytes.len() / 2].to_vec(), "checkpoint.safetensors"),
        (b"not a checkpoint".to_vec(), "not a safetensors file"),
        // weights without the checkpoint's metadata
        (
            std::fs::read(dir.path().join("model.safetensors")).unwrap(),
            "not a cxr checkpoint",
        ),
    ] {
        std::fs::write(&path, &content).unwrap();
        let err = train(&cfg, &tiny_dataset(), dir.path(), &run_options(true)).unwrap_err();
        assert!(matches!(err, TrainError::Checkpoint { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(needle) && msg.contains("checkpoint.safetensors"),
            "{msg}"
        );
    }
}

#[test]
fn a_second_run_into_a_live_run_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _held = cxr_runfolder::RunLock::acquire(dir.path()).unwrap();
    let err = train(
        &TrainConfig::default(),
        &tiny_dataset(),
        dir.path(),
        &RunOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, TrainError::RunFolder(cxr_runfolder::RunFolderError::Locked { pid, .. }) if *pid == std::process::id()),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("in use by another cxr run"),
        "{err}"
    );
    // Nothing was written next to the lock.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(".cxr.lock")]);
}

#[test]
fn nan_in_a_setting_is_rejected_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (cfg, field) in [
        (
            TrainConfig {
                optimizer: cxr_train::AdamConfig {
                    lr: f64::NAN,
                    ..Default::default()
                },
                ..Default::default()
            },
            "lr",
        ),
        (
            TrainConfig {
                image_size: 4,
                ..Default::default()
            },
            "image-size",
        ),
        (
            TrainConfig {
                train_limit: Some(0),
                ..Default::default()
            },
            "limit",
        ),
        (
            TrainConfig {
                threshold: 1.0,
                ..Default::default()
            },
            "threshold",
        ),
    ] {
        match train(&cfg, &tiny_dataset(), dir.path(), &RunOptions::default()) {
            Err(TrainError::Config { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
}
