//! The run, pipeline, prediction and evaluation reports render in headless Chromium with every
//! image loaded. Without Chromium the checks skip loudly (and pass) on a developer's
//! machine, and fail under CI, whose `.ci/run` installs Debian's `chromium`.

use std::path::{Path, PathBuf};

use cxr_report::browser::{check_in_chromium, find_chromium};
use cxr_report::{
    check_embedded_images, compare_runs, open_pipeline, render_summary_csv, write_evaluate_report,
    write_pipeline_report, write_predict_report, write_report,
};
use cxr_runfolder::RunFolder;

use crate::evaluate::{full_evaluation, write_evaluation};
use crate::fixture::{write_full_run, write_predict_folder};

fn chromium() -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must check reports in a browser: no chromium found (.ci/run installs Debian's `chromium`)"
        );
        eprintln!(
            "skipped: no chromium on PATH (apt-get install chromium, or set CXR_CHROMIUM) — the report was NOT checked in a browser"
        );
    }
    found
}

fn check_report(chromium: &Path, html: &Path, scratch: &Path) {
    let expected = check_embedded_images(html).unwrap().len();
    let shot = scratch.join("screenshot.png");
    let check = check_in_chromium(
        chromium,
        html,
        &shot,
        (1200, 4000),
        &scratch.join("chromium"),
    )
    .unwrap();
    assert_eq!(check.images, expected, "{}", html.display());
    assert!(check.broken.is_empty(), "broken images: {:?}", check.broken);
    assert_eq!(check.screenshot_size, (1200, 4000));
    assert!(
        check.ink > 0.02,
        "screenshot looks blank: ink {}",
        check.ink
    );
}

#[test]
fn run_report_renders_in_headless_chromium_with_every_image_loaded() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    write_full_run(&run, "cnn", 0);
    let files = write_report(&run).unwrap();
    check_report(&chromium, &files.html, dir.path());
}

#[test]
fn pipeline_report_renders_in_headless_chromium_with_every_image_loaded() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<RunFolder> = [("cnn-seed0", "cnn", 0), ("resnet18-seed0", "resnet18", 1)]
        .into_iter()
        .map(|(name, model, seed)| {
            let run = dir.path().join(name);
            write_full_run(&run, model, seed);
            write_report(&run).unwrap();
            RunFolder::open(&run).unwrap()
        })
        .collect();
    std::fs::write(
        dir.path().join("summary.csv"),
        render_summary_csv(&compare_runs(&runs)),
    )
    .unwrap();
    let runs = open_pipeline(dir.path()).unwrap();
    let files = write_pipeline_report(dir.path(), &runs).unwrap();
    let scratch = dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    check_report(&chromium, &files.html, &scratch);
}

#[test]
fn predict_report_renders_in_headless_chromium_with_every_image_loaded() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pred = dir.path().join("pred");
    write_predict_folder(&pred);
    let files = write_predict_report(&pred).unwrap();
    check_report(&chromium, &files.html, dir.path());
}

#[test]
fn evaluate_report_renders_in_headless_chromium_with_every_image_loaded() {
    let Some(chromium) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let eval = dir.path().join("eval");
    write_evaluation(&eval, &full_evaluation());
    let files = write_evaluate_report(&eval).unwrap();
    check_report(&chromium, &files.html, dir.path());
}
