//! The full run report: figures, report.md, report.html, predictions.parquet, optional
//! and malformed audit files.

use std::path::Path;

use cxr_report::{ReportError, check_embedded_images, read_predictions_parquet, write_report};
use cxr_runfolder::RunFolder;

use crate::fixture::{write_full_run, write_minimal_run, write_png};

const RUN_FIGURES: [&str; 8] = [
    "training_curves",
    "confusion",
    "roc",
    "pr",
    "reliability",
    "lr_find",
    "robustness",
    "failure_modes",
];

#[test]
fn full_run_writes_every_figure_and_a_self_contained_html() {
    let dir = tempfile::tempdir().unwrap();
    write_full_run(dir.path(), "cnn", 0);
    let files = write_report(dir.path()).unwrap();
    let names: Vec<String> = files
        .figures
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, RUN_FIGURES);
    for p in &files.figures {
        let img = image::open(p).unwrap();
        assert!(img.width() >= 600 && img.height() >= 400, "{}", p.display());
    }

    // Every figure plus 8 gallery tiles × (image, Grad-CAM, occlusion) are embedded
    // and decode as PNGs of the stated size.
    let imgs = check_embedded_images(&files.html).unwrap();
    assert_eq!(imgs.len(), RUN_FIGURES.len() + 8 * 3);
    assert!(imgs.iter().filter(|i| i.width == 224).count() == 24);

    let html = std::fs::read_to_string(&files.html).unwrap();
    assert!(
        !html.contains("Not computed"),
        "every section has its input"
    );
    for needle in [
        "<div class=\"verdict yes\"><span class=\"badge\">SUPPORTED</span><b>Blur causes false positives",
        "<div class=\"verdict no\"><span class=\"badge\">NOT SUPPORTED</span><b>Low contrast causes false positives",
        "<div class=\"verdict opp\"><span class=\"badge\">OPPOSITE DIRECTION</span>",
        "<div class=\"verdict na\"><span class=\"badge\">NOT TESTABLE</span>",
    ] {
        assert!(html.contains(needle), "missing {needle}");
    }
    assert!(html.contains("Fisher p = 0.0021"));

    let md = std::fs::read_to_string(&files.markdown).unwrap();
    for needle in [
        "![roc](figures/roc.png)",
        "| ROC AUC | 0.9500 | 0.9000 | 0.8500 – 0.9400 |",
        "| sensitivity (recall) | 0.9500 | 0.9000 | 0.8000 – 0.9700 |",
        "| ECE (top label, 15 bins) | 0.0900 | 0.0400 | -0.0500 |",
        "| Youden J | 0.6100 | 0.8600 | 0.7500 |",
        "| sensitivity ≥ 0.95 | 0.3000 |",
        "**Blur causes false positives: SUPPORTED.**",
        "| sharpness | Q1 | 0.0000 – 0.1000 | 40 | 12 | 30.0% |",
        "decision rule: supported iff the logistic regression",
        "560 test images at threshold 0.5: 26 false positives, 6 false negatives.",
        "| sharpness | 0.0021 | 0.0071 | -0.810 [-1.200, -0.400], p 0.0004 | 0.6200 | n/a: no events | not fitted: the measure is constant in this group |",
        "| exact, across splits | train – val | 3 | 3 in train, 3 in val |",
        "| near, across splits | train – val | 7 | 6 in train, 7 in val |",
        "| near, within split | train | 5 | – |",
        "| val → test | -11.7 percentage points |",
        "11.7 percentage points (val vs test)",
        "| gaussian_blur | 5 | 2.5 | 0.9000 | -0.0500 |",
        "(colormap turbo)",
        "true: normal; predicted: pneumonia",
        "| audit time | 12.5 s (gallery 2.5 s, robustness 9.0 s) |",
        "![image](audit/gallery/fp_01.png)",
        "![Grad-CAM](audit/gallery/fp_01_gradcam.png)",
        "P(pneumonia) = 0.9700",
        "| git commit | 0123abcd |",
    ] {
        assert!(
            md.to_lowercase().contains(&needle.to_lowercase()),
            "missing `{needle}` in\n{md}"
        );
    }
}

#[test]
fn predictions_parquet_reads_back_equal_to_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    write_full_run(dir.path(), "cnn", 4);
    let files = write_report(dir.path()).unwrap();
    let csv = RunFolder::open(dir.path()).unwrap().predictions;
    let pq = read_predictions_parquet(&files.parquet).unwrap();
    assert_eq!(pq.len(), 90);
    // Both come from the same decimal text, so the doubles must agree exactly
    // (tolerance 0).
    assert_eq!(pq, csv);
    assert!(pq.iter().all(|p| p.logit.is_some()));

    // The 4-column format round-trips without the optional columns.
    let old = tempfile::tempdir().unwrap();
    write_minimal_run(old.path());
    let files = write_report(old.path()).unwrap();
    let pq = read_predictions_parquet(&files.parquet).unwrap();
    assert_eq!(pq, RunFolder::open(old.path()).unwrap().predictions);
    assert!(pq.iter().all(|p| p.logit.is_none()));
}

#[test]
fn missing_optional_files_say_not_computed() {
    let dir = tempfile::tempdir().unwrap();
    write_minimal_run(dir.path());
    let files = write_report(dir.path()).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    for what in [
        "Not computed: learning-rate finder",
        "Not computed: operating points",
        "Not computed: ROC and PR curves",
        "Not computed: calibration",
        "Not computed: failure gallery",
        "Not computed: failure modes",
        "Not computed: data audit",
        "Not computed: robustness sweep",
    ] {
        assert!(md.contains(what), "missing `{what}` in\n{md}");
    }
    // Without a gallery the highest-loss predictions are still listed.
    assert!(md.contains("| 1 | 0.7000 | 1.204 |"), "{md}");
    let imgs = check_embedded_images(&files.html).unwrap();
    assert_eq!(imgs.len(), 2, "training curves and confusion matrix only");

    // Audit present but only some files: the others say "not computed".
    let dir = tempfile::tempdir().unwrap();
    write_full_run(dir.path(), "cnn", 1);
    std::fs::remove_file(dir.path().join("audit/robustness.csv")).unwrap();
    std::fs::remove_file(dir.path().join("lr_find.csv")).unwrap();
    let md = std::fs::read_to_string(write_report(dir.path()).unwrap().markdown).unwrap();
    assert!(md.contains("Not computed: robustness sweep"));
    assert!(md.contains("Not computed: learning-rate finder"));
    assert!(!md.contains("Not computed: failure modes"));
}

/// Asserts that reading/writing the report of `dir` fails with a format error whose
/// message names `file` and contains `needle`.
fn expect_format_error(dir: &Path, file: &str, needle: &str) {
    match write_report(dir) {
        Err(e @ ReportError::Format { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(file) && msg.contains(needle), "{msg}");
        }
        other => panic!("expected a format error naming {file}, got {other:?}"),
    }
}

fn replace_line(path: &Path, line: usize, with: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[line - 1] = with;
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn malformed_audit_files_are_typed_errors_naming_file_and_line_or_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reset = || write_full_run(d, "cnn", 2);

    reset();
    replace_line(
        &d.join("audit/gallery.csv"),
        3,
        "false_pos,1,test,1,0,0.9,2.3,a.png,,,1,pneumonia,,",
    );
    expect_format_error(d, "gallery.csv", "line 3: unknown `kind`");

    reset();
    replace_line(
        &d.join("audit/gallery.csv"),
        2,
        "false_positive,1,test,1,0,0.9,2.3,../x.png,,,1,pneumonia,,",
    );
    expect_format_error(d, "gallery.csv", "line 2: `image` must be a path inside");

    reset();
    std::fs::write(d.join("audit/gallery/fp_01_gradcam.png"), b"not a png").unwrap();
    expect_format_error(d, "gallery.csv", "fp_01_gradcam.png` is not a PNG");

    reset();
    std::fs::remove_file(d.join("audit/gallery/cn_02.png")).unwrap();
    expect_format_error(d, "gallery.csv", "cn_02.png` cannot be read");

    reset();
    replace_line(
        &d.join("audit/robustness.csv"),
        4,
        "gaussian_blur,2,high,0.9,0.7,0.8,0.75",
    );
    expect_format_error(d, "robustness.csv", "line 4: `auc`");

    reset();
    replace_line(
        &d.join("audit/robustness.csv"),
        1,
        "corruption,severity,auc",
    );
    expect_format_error(d, "robustness.csv", "line 1: header");

    // The contract's basic 6-column robustness file, with an empty (undefined)
    // sensitivity, is fine.
    reset();
    std::fs::write(
        d.join("audit/robustness.csv"),
        "corruption,severity,auc,sensitivity,specificity,accuracy\nnone,0,0.9,,0.7,0.8\njpeg,1,0.85,0.9,0.6,0.75\n",
    )
    .unwrap();
    let md = std::fs::read_to_string(write_report(d).unwrap().markdown).unwrap();
    assert!(
        md.contains("| none | 0 | – | 0.9000 | +0.0000 | – | 0.7000 | 0.8000 |"),
        "{md}"
    );

    reset();
    replace_line(
        &d.join("audit/quality.csv"),
        5,
        "test,3,1,0.4,0,0.2,0.9,0.004,0.5",
    );
    expect_format_error(d, "quality.csv", "line 5: 9 fields, expected 10");

    reset();
    let fm = d.join("audit/failure_modes.json");
    let text = std::fs::read_to_string(&fm).unwrap();
    std::fs::write(&fm, text.replacen("\"supported\": true,", "", 1)).unwrap();
    expect_format_error(d, "failure_modes.json", "missing field `supported`");

    reset();
    std::fs::write(
        &fm,
        text.replacen("\"fp_rate\": 0.3,", "\"fp_rate\": 3.0,", 1),
    )
    .unwrap();
    expect_format_error(d, "failure_modes.json", "`fp_rate` = 3 is outside [0, 1]");

    reset();
    let da = d.join("audit/data_audit.json");
    let text = std::fs::read_to_string(&da).unwrap();
    std::fs::write(&da, text.replace("\"pairs\": 3", "\"pairs\": \"three\"")).unwrap();
    expect_format_error(d, "data_audit.json", "line");

    reset();
    replace_line(&d.join("reliability.csv"), 2, "val,0,0,0.0667,3,1.7,0.5");
    expect_format_error(d, "reliability.csv", "line 2: `confidence` = 1.7");

    reset();
    replace_line(&d.join("lr_find.csv"), 2, "0,-1e-6,0.7,0.7");
    expect_format_error(d, "lr_find.csv", "line 2: `lr` = -0.000001 is not positive");

    reset();
    let m = d.join("metrics.json");
    let text = std::fs::read_to_string(&m).unwrap();
    std::fs::write(
        &m,
        text.replace("\"temperature\": 1.3,", "\"temperature\": \"x\","),
    )
    .unwrap();
    expect_format_error(d, "metrics.json", "field `calibration`");

    // And the folder is fine again after a reset.
    reset();
    write_report(d).unwrap();
}

#[test]
fn figure_text_renders_with_the_embedded_font() {
    // The caption band of a figure must contain dark (text) pixels: proof that the
    // embedded font rendered without any system font.
    let fig = cxr_report::figures::lr_find(&[
        cxr_runfolder::LrFindRow {
            step: 0,
            lr: 1e-5,
            loss: 0.7,
            smoothed_loss: 0.7,
        },
        cxr_runfolder::LrFindRow {
            step: 1,
            lr: 1e-2,
            loss: 0.4,
            smoothed_loss: 0.45,
        },
    ])
    .unwrap();
    let img = image::load_from_memory(&fig.png).unwrap().to_rgb8();
    let dark_in_caption = (0..img.width())
        .flat_map(|x| (5..40).map(move |y| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
        .count();
    assert!(
        dark_in_caption > 200,
        "caption has {dark_in_caption} dark pixels"
    );
}

#[test]
fn gallery_without_overlays_still_renders() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_full_run(d, "cnn", 3);
    std::fs::write(
        d.join("audit/gallery.csv"),
        "kind,rank,split,index,label,prob,loss,image,gradcam,occlusion\nfalse_negative,1,test,7,1,0.1,2.302585,audit/gallery/x.png,,\n",
    )
    .unwrap();
    write_png(&d.join("audit/gallery/x.png"), 224, false);
    let files = write_report(d).unwrap();
    let imgs = check_embedded_images(&files.html).unwrap();
    assert_eq!(imgs.iter().filter(|i| i.width == 224).count(), 1);
    let md = std::fs::read_to_string(files.markdown).unwrap();
    assert!(md.contains("False positives (normal called pneumonia), highest loss first (0)"));
    assert!(md.contains("false_negative #1: test image 7"));
}

/// Writes the synthetic full run folder and its report into `$CXR_REPORT_DEMO_DIR`
/// for looking at the figures and the HTML by eye:
/// `CXR_REPORT_DEMO_DIR=/tmp/demo cargo test -p cxr-report -- --ignored demo`.
#[test]
#[ignore = "writes a demo folder for manual inspection"]
fn demo_report_for_inspection() {
    let Some(dir) = std::env::var_os("CXR_REPORT_DEMO_DIR") else {
        eprintln!("skipped: set CXR_REPORT_DEMO_DIR");
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    write_full_run(&dir, "cnn", 0);
    let files = write_report(&dir).unwrap();
    eprintln!("demo report: {}", files.html.display());
}

#[test]
fn predict_report_shows_inputs_site_check_and_overlays() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::fixture::write_predict_folder(d);
    let files = cxr_report::write_predict_report(d).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    for needle in [
        "files unreadable",
        "not a recognised image format",
        "Site check",
        "0.410 (95% CI 0.300–0.520",
        "label-shift test",
        "/site/images/img_001.png",
    ] {
        assert!(md.contains(needle), "`{needle}` not in the report");
    }
    // The histogram plus an image and two overlays per explained image.
    assert_eq!(check_embedded_images(&files.html).unwrap().len(), 1 + 2 * 3);
    assert!(files.parquet.is_file());
    // A missing overlay is an error naming the file.
    std::fs::remove_file(d.join("explain/002_gradcam.png")).unwrap();
    let e = cxr_report::write_predict_report(d).unwrap_err().to_string();
    assert!(e.contains("002_gradcam.png"), "{e}");
}
