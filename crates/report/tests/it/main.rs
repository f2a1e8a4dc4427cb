//! Integration tests for cxr-report: reading run folders, rejecting malformed ones,
//! and the rendered report's content.

mod browser;
mod evaluate;
mod fixture;
mod partial;
mod pipeline;
mod report;

use std::path::Path;

use cxr_report::{ReportError, compare_runs, render_markdown, render_summary_csv, write_report};
use cxr_runfolder::RunFolder;

use crate::fixture::write_minimal_run as write_run;

/// Asserts that opening `dir` fails with a format error naming `file` and containing `needle`.
fn check_format_error(dir: &Path, file: &str, needle: &str) {
    match RunFolder::open(dir).map_err(ReportError::from) {
        Err(e @ ReportError::Format { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(file) && msg.contains(needle), "{msg}");
        }
        other => panic!("expected a format error for {file}, got {other:?}"),
    }
}

#[test]
fn reads_and_renders_a_run() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let run = RunFolder::open(dir.path()).unwrap();
    assert_eq!(run.predictions.len(), 5);
    assert_eq!(run.history.len(), 2);
    let fp = run.top_failures("test", 0, 0.5, 10);
    assert_eq!(fp.len(), 1);
    assert_eq!(fp[0].index, 1);
    assert!(run.top_failures("test", 1, 0.5, 10).is_empty());
    let md = render_markdown(&run).unwrap();
    assert!(md.contains("| ROC AUC | 0.9700 | 0.8750 | – |"), "{md}");
    assert!(md.contains("| 2 (kept) |"), "{md}");
    assert!(md.contains("false-positive rate 50.0%"), "{md}");
    let files = write_report(dir.path()).unwrap();
    assert_eq!(std::fs::read_to_string(files.markdown).unwrap(), md);
    let csv = render_summary_csv(&compare_runs(&[run]));
    assert!(
        csv.lines()
            .nth(1)
            .unwrap()
            .contains(",cnn,3,28,,0.970000,0.875000,0.750000,0.800000,12.5"),
        "{csv}"
    );
}

#[test]
fn malformed_run_folders_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    std::fs::write(
        dir.path().join("predictions.csv"),
        "split,index,label\nval,0,1\n",
    )
    .unwrap();
    check_format_error(dir.path(), "predictions.csv", "header");

    write_run(dir.path());
    std::fs::write(
        dir.path().join("predictions.csv"),
        "split,index,label,prob\nval,0,1,1.5\n",
    )
    .unwrap();
    check_format_error(dir.path(), "predictions.csv", "line 2");

    write_run(dir.path());
    std::fs::write(
        dir.path().join("predictions.csv"),
        "split,index,label,prob\nval,0,2,0.5\n",
    )
    .unwrap();
    check_format_error(dir.path(), "predictions.csv", "label 2");

    write_run(dir.path());
    std::fs::write(
        dir.path().join("history.csv"),
        "epoch,train_loss,val_loss,val_auc\n1,x,0.5,0.9\n",
    )
    .unwrap();
    check_format_error(dir.path(), "history.csv", "train_loss");

    write_run(dir.path());
    std::fs::write(dir.path().join("metrics.json"), r#"{"val": {}}"#).unwrap();
    check_format_error(dir.path(), "metrics.json", "val");

    write_run(dir.path());
    std::fs::write(dir.path().join("metrics.json"), "{ not json").unwrap();
    check_format_error(dir.path(), "metrics.json", "");

    write_run(dir.path());
    std::fs::remove_file(dir.path().join("history.csv")).unwrap();
    assert!(matches!(
        RunFolder::open(dir.path()),
        Err(cxr_runfolder::RunFolderError::Io { .. })
    ));
}
