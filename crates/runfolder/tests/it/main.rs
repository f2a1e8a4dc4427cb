//! Integration tests for cxr-runfolder: every typed file written and read back
//! unchanged, and the errors of malformed files.

use cxr_runfolder::{
    Divergence, EpochRecord, LastGood, Metrics, PredictionRow, RunConfig, RunFolderError,
    RunStatus, SplitMetrics, TrainConfig, names, read_history, read_predictions, write_history,
    write_predictions,
};

fn split(auc: f64) -> SplitMetrics {
    SplitMetrics {
        accuracy: 0.75,
        precision: 0.8,
        recall: 0.9,
        specificity: 0.5,
        f1: 0.85,
        auc,
        threshold: 0.5,
        tp: 9,
        fp: 2,
        tn: 2,
        fn_: 1,
        auc_ci_low: Some(auc - 0.1),
        auc_ci_high: None,
        average_precision: None,
        brier: Some(0.1),
        log_loss: None,
        ece: None,
        ece_pos: None,
        mce: None,
    }
}

#[test]
fn metrics_round_trip_and_name_bad_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(names::METRICS);
    let m = Metrics {
        val: split(0.9),
        test: split(0.8),
        calibration: None,
        operating_points: vec![],
        bootstrap: None,
        prevalence: None,
        best_epoch: Some(3),
        model: Some("cnn".into()),
        timing: None,
        members: Vec::new(),
    };
    m.write(&path).unwrap();
    assert_eq!(Metrics::read(&path).unwrap(), m);

    std::fs::write(&path, r#"{"val": {}}"#).unwrap();
    let e = Metrics::read(&path).unwrap_err();
    assert!(matches!(e, RunFolderError::Format { .. }), "{e:?}");
    assert!(e.to_string().contains("metrics.json") && e.to_string().contains("`val`"));

    let text = serde_json::to_string(&m).unwrap();
    let bad = text.replace("\"best_epoch\":3", "\"best_epoch\":\"x\"");
    std::fs::write(&path, bad).unwrap();
    let e = Metrics::read(&path).unwrap_err().to_string();
    assert!(e.contains("field `best_epoch`"), "{e}");
}

#[test]
fn config_keeps_provenance_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(names::CONFIG);
    std::fs::write(
        &path,
        r#"{"train": {"model": "cnn", "epochs": 2, "batch_size": 8, "eval_batch_size": 8,
            "optimizer": {"kind": "adam", "lr": 0.001, "beta1": 0.9, "beta2": 0.999,
                          "eps": 1e-8, "weight_decay": 0.0},
            "seed": 1, "image_size": 28, "augment": "none", "normalize_mean": 0.5,
            "normalize_std": 0.5, "train_limit": null, "threshold": 0.5, "device": "cpu"},
           "status": "finished", "git_commit": "abc", "from_the_future": [1, 2]}"#,
    )
    .unwrap();
    let c = RunConfig::read(&path).unwrap();
    assert_eq!(c.status, RunStatus::Finished);
    assert_eq!(c.train.epochs, 2);
    assert_eq!(c.provenance.git_commit.as_deref(), Some("abc"));
    assert_eq!(c.other["from_the_future"], serde_json::json!([1, 2]));
    c.write(&path).unwrap();
    assert_eq!(RunConfig::read(&path).unwrap(), c);
    // Written before patient ids existed: none recorded, the given splits used.
    assert_eq!(c.provenance.patient_ids, None);
    assert_eq!(c.train.val_from_train, None);
    assert!(!c.train.allow_patient_overlap);
}

#[test]
fn patient_records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(names::CONFIG);
    let mut c = RunConfig::default();
    c.train.val_from_train = Some(0.2);
    c.train.group_pattern = Some("^(p\\d+)_".into());
    c.provenance.patient_ids = Some(cxr_runfolder::PatientIdsRecord {
        source: "pattern ^(p\\d+)_".into(),
        patients: [("train".to_string(), 7u64), ("val".into(), 2)].into(),
        unmatched_images: 1,
        unmatched_examples: vec!["train/NORMAL/x.png".into()],
        overlapping_patients: 1,
        overlap_allowed: true,
        ..Default::default()
    });
    c.provenance.val_from_train = Some(cxr_runfolder::ValFromTrainRecord {
        fraction: 0.2,
        seed: 3,
        val_images: 5,
        ..Default::default()
    });
    c.write(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"patient_ids\"") && text.contains("\"val_from_train\": 0.2"));
    assert_eq!(RunConfig::read(&path).unwrap(), c);

    let audit = cxr_runfolder::PatientAudit {
        available: true,
        overlapping: 1,
        overlap: vec![cxr_runfolder::PatientOverlapRow {
            patient: "p1".into(),
            images: [("train".to_string(), 2u64), ("test".into(), 1)].into(),
        }],
        ..Default::default()
    };
    let json = serde_json::to_string(&audit).unwrap();
    let back: cxr_runfolder::PatientAudit = serde_json::from_str(&json).unwrap();
    assert_eq!(back, audit);
}

#[test]
fn settings_are_checked_by_name() {
    let bad = TrainConfig {
        batch_size: 0,
        ..TrainConfig::default()
    };
    match bad.validate() {
        Err(RunFolderError::Setting { field, .. }) => assert_eq!(field, "batch-size"),
        other => panic!("{other:?}"),
    }
    let cnn_with_weights = TrainConfig {
        weights: "hub:a/b".into(),
        ..TrainConfig::default()
    };
    assert!(cnn_with_weights.validate().is_err());
}

#[test]
fn history_predictions_and_divergence_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let rec = EpochRecord {
        epoch: 1,
        train_loss: 0.5,
        val_loss: 0.25,
        val_auc: 0.875,
        seconds: 2.0,
    };
    write_history(dir.path(), std::slice::from_ref(&rec)).unwrap();
    let rows = read_history(dir.path()).unwrap();
    assert_eq!((rows[0].epoch, rows[0].val_auc), (1, 0.875));

    write_predictions(
        dir.path(),
        &[PredictionRow {
            split: "test".into(),
            index: 0,
            label: 1,
            prob: 0.75,
            logit: Some(1.0986122886681098),
            prob_calibrated: None,
            path: None,
        }],
    )
    .unwrap();
    let text = std::fs::read_to_string(dir.path().join(names::PREDICTIONS)).unwrap();
    assert_eq!(
        text,
        "split,index,label,prob,logit,prob_calibrated,path\ntest,0,1,0.75,1.0986122886681098,,\n"
    );
    assert_eq!(read_predictions(dir.path()).unwrap()[0].path, None);
    // A folder image's path, with a comma and a quote: quoted, and read back as it was.
    let with_path = PredictionRow {
        split: "val".into(),
        index: 3,
        label: 0,
        prob: 0.5,
        logit: Some(0.0),
        prob_calibrated: Some(0.5),
        path: Some("/x/val/NORMAL/a, \"b\".png".into()),
    };
    write_predictions(dir.path(), std::slice::from_ref(&with_path)).unwrap();
    assert_eq!(read_predictions(dir.path()).unwrap(), vec![with_path]);
    // An older file (no path column) still reads.
    std::fs::write(
        dir.path().join(names::PREDICTIONS),
        "split,index,label,prob\ntest,0,1,0.75\n",
    )
    .unwrap();
    let old = read_predictions(dir.path()).unwrap();
    assert_eq!(
        (old[0].prob, old[0].logit, old[0].path.clone()),
        (0.75, None, None)
    );

    let d = Divergence {
        epoch: 2,
        step: 7,
        what: "the training loss is not finite".into(),
        error: "training diverged".into(),
        last_good_checkpoint: Some(LastGood {
            file: names::CHECKPOINT.into(),
            epoch: 1,
        }),
        config: Some(TrainConfig::default()),
        history: vec![rec],
    };
    d.write(dir.path()).unwrap();
    assert_eq!(Divergence::read(dir.path()).unwrap(), d);
}
