//! The pipeline's top-level report comparing run folders.

use cxr_report::{
    ReportError, check_embedded_images, compare_runs, open_pipeline, render_summary_csv,
    write_pipeline_report, write_report,
};
use cxr_runfolder::RunFolder;

use crate::fixture::{write_full_run, write_minimal_run};

#[test]
fn pipeline_report_compares_runs_listed_in_summary_csv() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_full_run(&d.join("cnn-seed0"), "cnn", 0);
    write_full_run(&d.join("cnn-seed1"), "cnn", 1);
    write_full_run(&d.join("resnet-seed0"), "resnet", 5);
    // A run without an audit and without curves takes part too.
    write_minimal_run(&d.join("old-run"));
    let names = ["cnn-seed0", "cnn-seed1", "resnet-seed0", "old-run"];
    let runs: Vec<RunFolder> = names
        .iter()
        .map(|n| {
            write_report(&d.join(n)).unwrap();
            RunFolder::open(&d.join(n)).unwrap()
        })
        .collect();
    std::fs::write(
        d.join("summary.csv"),
        render_summary_csv(&compare_runs(&runs)),
    )
    .unwrap();

    let reopened = open_pipeline(d).unwrap();
    assert_eq!(
        reopened.iter().map(RunFolder::name).collect::<Vec<_>>(),
        names
    );
    let files = write_pipeline_report(d, &reopened).unwrap();
    let figs: Vec<String> = files
        .figures
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(figs, ["model_comparison", "roc_runs"]);
    assert_eq!(check_embedded_images(&files.html).unwrap().len(), 2);

    let md = std::fs::read_to_string(&files.markdown).unwrap();
    for needle in [
        "| cnn-seed1 | cnn | 1 | 0.9500 | 0.9100 [0.8600, 0.9500] |",
        // cnn: seeds 0 and 1 (test AUC 0.90, 0.91) and the minimal run (0.875):
        // mean 0.895, sample sd sqrt(0.00065 / 2) = 0.0180.
        "| cnn | 3 | 0.8950 ± 0.0180 |",
        "| resnet | 1 | 0.9500 ± 0.0000 |",
        "| Blur causes false positives | supported | supported | supported | – |",
        "| gaussian_blur | 0.9000 (severity 5) |",
        "- [old-run](old-run/report.html)",
    ] {
        assert!(md.contains(needle), "missing `{needle}` in\n{md}");
    }
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert!(html.contains("<a href=\"cnn-seed0/report.html\">cnn-seed0</a>"));
}

#[test]
fn summary_csv_naming_a_missing_or_odd_run_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("summary.csv"),
        format!(
            "{}\n../etc,cnn,0,28,0.9,0.9,0.9,0.9,1\n",
            cxr_report::SUMMARY_CSV_HEADER
        ),
    )
    .unwrap();
    match open_pipeline(d) {
        Err(e @ ReportError::Format { .. }) => {
            assert!(e.to_string().contains("summary.csv: line 2"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    std::fs::write(
        d.join("summary.csv"),
        format!(
            "{}\ngone,cnn,0,28,false,0.9,0.9,0.9,0.9,1\n",
            cxr_report::SUMMARY_CSV_HEADER
        ),
    )
    .unwrap();
    assert!(matches!(open_pipeline(d), Err(ReportError::Io { .. })));
}
