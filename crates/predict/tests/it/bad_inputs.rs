//! Inputs that cannot be used give rows with the reason (the run goes on), `strict` or
//! "nothing readable" make the call fail after writing the folder, and unusable run
//! folders are errors naming the problem.

use std::path::{Path, PathBuf};

use cxr_predict::{OperatingPointChoice, PredictError, predict};
use cxr_runfolder::{ModelCard, RunConfig, RunStatus, names, read_predict_rows};

use crate::{options, train_cnn};

/// A one-epoch CNN run on a tiny synthetic data set (no shared data needed).
fn tiny_run(dir: &Path) -> PathBuf {
    let npz = dir.join("tiny.npz");
    cxr_testkit::write_tiny_npz(&npz, &[("train", 64), ("val", 32), ("test", 32)]);
    let data = cxr_data::load_npz(&npz).unwrap();
    let run = dir.join("run");
    train_cnn(&data, &run);
    run
}

fn dicom_fixture(name: &str) -> PathBuf {
    cxr_testkit::workspace_root()
        .join("crates/data/tests/fixtures/dicom")
        .join(name)
}

fn gray_png(path: &Path, side: u32) {
    let px: Vec<u8> = (0..side * side).map(|i| (i * 7 % 256) as u8).collect();
    image::GrayImage::from_raw(side, side, px)
        .unwrap()
        .save(path)
        .unwrap();
}

#[test]
fn bad_inputs_are_rows_with_reasons_in_the_order_given() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path());
    let good = tmp.path().join("good.png");
    gray_png(&good, 40);
    let text_png = tmp.path().join("text.png");
    std::fs::write(&text_png, b"not an image at all").unwrap();
    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, b"hello").unwrap();
    let inputs = vec![
        good.clone(),
        text_png,
        notes,
        tmp.path().join("missing.png"),
        dicom_fixture("bad_no_pixel_data.dcm"),
        dicom_fixture("bad_made_up_syntax.dcm"),
        dicom_fixture("bad_truncated.dcm"),
        dicom_fixture("multiframe_3.dcm"),
    ];
    let out = tmp.path().join("out");
    let got = predict(&run, &inputs, &options(&out)).unwrap();
    let reasons: Vec<(&str, usize, &str)> = got
        .rows
        .iter()
        .map(|r| (r.path.as_str(), r.frame, r.error.as_str()))
        .collect();
    assert_eq!(got.rows.len(), 10, "{reasons:#?}");
    let expect = [
        "",
        "not a recognised image format",
        "not a recognised image format",
        "cannot read",
        "no pixel data",
        "unsupported transfer syntax",
        "truncated",
        "",
        "",
        "",
    ];
    for (r, e) in got.rows.iter().zip(expect) {
        if e.is_empty() {
            assert!(r.is_ok(), "{r:?}");
            assert!(r.decision.is_some() && r.threshold.is_some());
        } else {
            assert!(r.error.contains(e), "{}: `{}` lacks `{e}`", r.path, r.error);
            assert!(r.prob.is_none() && r.decision.is_none());
        }
    }
    assert_eq!(got.rows[0].path, good.display().to_string());
    assert_eq!(
        got.rows[7..].iter().map(|r| r.frame).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!((got.summary.predicted, got.summary.unreadable), (4, 6));
    assert_eq!(got.summary.errors.iter().map(|e| e.count).sum::<usize>(), 6);
    // What was written is what was returned.
    let back = read_predict_rows(&out.join(names::PREDICTIONS)).unwrap();
    assert_eq!(back, got.rows);

    // --strict: the same inputs fail, after writing the folder.
    let strict_out = tmp.path().join("strict");
    let opts = cxr_predict::PredictOptions {
        strict: true,
        ..options(&strict_out)
    };
    let e = predict(&run, &inputs, &opts).unwrap_err();
    assert!(matches!(e, PredictError::Unreadable { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("--strict") && msg.contains("text.png"),
        "{msg}"
    );
    assert!(strict_out.join(names::PREDICTIONS).is_file());

    // A second prediction into the same folder is refused.
    let again = predict(&run, &[good], &options(&out)).unwrap_err();
    assert!(
        again.to_string().contains("already holds a prediction"),
        "{again}"
    );
}

#[test]
fn nothing_readable_or_nothing_found_fails_after_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path());
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = tmp.path().join("out_empty");
    let e = predict(&run, std::slice::from_ref(&empty), &options(&out)).unwrap_err();
    assert!(e.to_string().contains("no input files were found"), "{e}");
    assert!(out.join(names::PREDICT_SUMMARY).is_file());

    let junk = tmp.path().join("junk.png");
    std::fs::write(&junk, b"junk").unwrap();
    let out = tmp.path().join("out_junk");
    let e = predict(&run, &[junk], &options(&out)).unwrap_err();
    assert!(e.to_string().contains("none of the 1 input files"), "{e}");
}

#[test]
fn run_folders_without_a_card_derive_one_and_diverged_runs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path());
    let img = tmp.path().join("a.png");
    gray_png(&img, 28);
    let with_card = predict(
        &run,
        std::slice::from_ref(&img),
        &options(&tmp.path().join("o1")),
    )
    .unwrap();
    assert!(!with_card.summary.card_derived);

    std::fs::remove_file(run.join(names::MODEL_CARD)).unwrap();
    let derived = predict(
        &run,
        std::slice::from_ref(&img),
        &options(&tmp.path().join("o2")),
    )
    .unwrap();
    assert!(derived.summary.card_derived);
    assert!(derived.summary.site_check.is_none());
    // Same weights, same preprocessing: the same probability.
    assert_eq!(derived.rows[0].prob, with_card.rows[0].prob);
    assert!(ModelCard::of_run(&run).unwrap().derived.is_some());

    // An operating point the card does not have is refused, naming those it has.
    let opts = cxr_predict::PredictOptions {
        operating_point: OperatingPointChoice::Named("f1".into()),
        ..options(&tmp.path().join("o3"))
    };
    let e = predict(&run, std::slice::from_ref(&img), &opts).unwrap_err();
    assert!(e.to_string().contains("youden"), "{e}");

    let config_path = run.join(names::CONFIG);
    let mut config = RunConfig::read(&config_path).unwrap();
    config.status = RunStatus::Diverged;
    config.error = Some("the training loss is not finite".into());
    config.write(&config_path).unwrap();
    let e = predict(&run, &[img], &options(&tmp.path().join("o4"))).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("diverged") && msg.contains("not finite"),
        "{msg}"
    );
}
