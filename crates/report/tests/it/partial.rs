//! The report of a run stopped by divergence, and its malformed inputs.

use cxr_report::{ReportError, write_divergence_report};
use cxr_runfolder::is_diverged_run;

const RECORD: &str = r#"{
  "status": "diverged", "epoch": 2, "step": 3, "what": "the training loss is not finite",
  "error": "training diverged at epoch 2, step 3: the training loss is not finite (lower --lr?); the last good checkpoint is kept",
  "last_good_checkpoint": {"file": "checkpoint.safetensors", "epoch": 1},
  "history": []
}"#;

#[test]
fn diverged_run_report_states_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("divergence.json"), RECORD).unwrap();
    std::fs::write(
        dir.path().join("history.csv"),
        "epoch,train_loss,val_loss,val_auc\n1,0.69,0.7,0.5\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"train": {"model": "cnn", "optimizer": {"lr": 1000000.0}, "batch_size": 4}, "status": "diverged"}"#,
    )
    .unwrap();
    assert!(is_diverged_run(dir.path()));
    let files = write_divergence_report(dir.path()).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    for needle in [
        "training diverged",
        "epoch 2, step 3",
        "the training loss is not finite",
        "checkpoint.safetensors (after epoch 1)",
        "1000000",
        "| 1 | 0.6900 | 0.7000 | 0.5000 |",
    ] {
        assert!(md.contains(needle), "`{needle}` not in:\n{md}");
    }
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert!(html.contains("training diverged") && !html.contains("<script"));
    // A finished run is not a diverged one.
    std::fs::write(dir.path().join("metrics.json"), "{}").unwrap();
    assert!(!is_diverged_run(dir.path()));
}

#[test]
fn malformed_divergence_record_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("divergence.json"), r#"{"epoch": "two"}"#).unwrap();
    match write_divergence_report(dir.path()) {
        Err(e @ ReportError::Format { .. }) => {
            assert!(e.to_string().contains("divergence.json"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(dir.path().join("divergence.json"), RECORD).unwrap();
    std::fs::write(dir.path().join("history.csv"), "epoch,loss\n1,2\n").unwrap();
    match write_divergence_report(dir.path()) {
        Err(e @ ReportError::Format { .. }) => {
            assert!(e.to_string().contains("history.csv"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
