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
        Err(TrainError::Device { .. })
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
