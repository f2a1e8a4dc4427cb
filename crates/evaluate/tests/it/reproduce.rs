//! A run evaluated on its own npz test split gives the test figures of its own
//! `metrics.json` exactly, and the same images as PNG folders give the same.

use cxr_runfolder::{Evaluation, Metrics, SplitMetrics, names};

use crate::{options, shared, write_folder};

#[test]
fn own_test_split_reproduces_the_runs_metrics_exactly() {
    let Some(s) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("eval");
    let done = cxr_evaluate::evaluate(&s.run_a, &s.npz, &options(&out)).unwrap();
    let run = Metrics::read(&s.run_a.join(names::METRICS)).unwrap();
    let ours: SplitMetrics =
        serde_json::from_str(&std::fs::read_to_string(out.join(names::METRICS)).unwrap()).unwrap();
    assert_eq!(ours, run.test, "metrics.json equals the run's test block");
    let e = Evaluation::read(&out.join(names::EVALUATION)).unwrap();
    assert_eq!(e, done.evaluation);
    assert_eq!(e.set.images, 624);
    assert_eq!(e.set.kind, "npz");
    assert_eq!(e.set.split.as_deref(), Some("test"));
    assert_eq!(
        e.prevalence.true_prevalence,
        run.prevalence.unwrap().test,
        "the set's prevalence"
    );
    // The card's points scored here have the counts the run recorded on test.
    for p in &run.operating_points {
        let q = e
            .operating_points
            .iter()
            .find(|q| q.name == p.name)
            .unwrap();
        assert_eq!(
            (q.tp, q.fp, q.tn, q.fn_),
            (p.tp, p.fp, p.tn, p.fn_),
            "{}",
            p.name
        );
        let se = q.sensitivity.unwrap();
        assert_eq!(se.estimate, p.recall);
        assert!(se.wilson_low <= se.estimate && se.estimate <= se.wilson_high);
        assert!(se.wilson_high - se.wilson_low > 0.0);
        let (lo, hi) = (se.bootstrap_low.unwrap(), se.bootstrap_high.unwrap());
        assert!(lo <= se.estimate && se.estimate <= hi);
    }
    let auc = e.auc.unwrap();
    assert_eq!(auc.estimate, run.test.auc);
    let cal = e.calibration.as_ref().unwrap();
    let run_cal = run.calibration.unwrap();
    assert_eq!(cal.ece_before, run_cal.ece_before);
    assert_eq!(cal.ece_after, run_cal.ece_after);
    assert_eq!(cal.brier_after, run_cal.brier_after);
    let check = e.prevalence.site_check.as_ref().unwrap();
    assert!(check.ci_low <= check.estimate && check.estimate <= check.ci_high);
    assert_eq!(
        e.prevalence.estimate_error.unwrap(),
        check.estimate - e.prevalence.true_prevalence
    );
    assert_eq!(
        e.prevalence.adapted_points.len(),
        e.operating_points.len(),
        "every point re-derived for the set's prevalence"
    );
    assert!(e.roc.len() > 2);
    for f in [
        names::EVALUATE_PREDICTIONS,
        names::SUBGROUPS_CSV,
        names::SUBGROUPS_PARQUET,
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
}

#[test]
fn png_folders_of_the_test_split_give_the_same_figures() {
    let Some(s) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let all: Vec<usize> = (0..s.data.test.len()).collect();
    let root = tmp.path().join("site");
    write_folder(&s.data.test, &all, &root);
    let folder = cxr_evaluate::evaluate(&s.run_a, &root, &options(&tmp.path().join("a")))
        .unwrap()
        .evaluation;
    let npz = cxr_evaluate::evaluate(&s.run_a, &s.npz, &options(&tmp.path().join("b")))
        .unwrap()
        .evaluation;
    assert_eq!(folder.set.kind, "folder");
    assert_eq!(folder.set.images, 624);
    // The folder's order differs (NORMAL first); order-free figures agree exactly.
    assert_eq!(folder.auc, npz.auc);
    assert_eq!(
        folder.metrics.as_ref().unwrap().tp,
        npz.metrics.as_ref().unwrap().tp
    );
    assert_eq!(
        folder.metrics.as_ref().unwrap().fp,
        npz.metrics.as_ref().unwrap().fp
    );
    assert_eq!(
        folder.prevalence.true_prevalence,
        npz.prevalence.true_prevalence
    );
}

#[test]
fn compare_two_runs_on_the_same_images() {
    let Some(s) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let opts = cxr_evaluate::EvaluateOptions {
        compare: Some(s.run_b.clone()),
        ..options(&tmp.path().join("cmp"))
    };
    let e = cxr_evaluate::evaluate(&s.run_a, &s.npz, &opts)
        .unwrap()
        .evaluation;
    let c = e.comparison.unwrap();
    assert_eq!(c.n, 624);
    assert_eq!(c.auc_a, e.auc.unwrap().estimate);
    let b_alone = cxr_evaluate::evaluate(&s.run_b, &s.npz, &options(&tmp.path().join("b")))
        .unwrap()
        .evaluation;
    assert_eq!(c.auc_b, b_alone.auc.unwrap().estimate);
    // Discordant counts are the accuracy difference.
    let diff = (c.only_a_correct as f64 - c.only_b_correct as f64) / c.n as f64;
    assert!(((c.accuracy_a - c.accuracy_b) - diff).abs() < 1e-12);
    assert!((0.0..=1.0).contains(&c.delong_p) && (0.0..=1.0).contains(&c.mcnemar_p));
    assert!(c.auc_difference_low <= c.auc_difference && c.auc_difference <= c.auc_difference_high);
    assert_eq!(c.mcnemar_exact, c.only_a_correct + c.only_b_correct < 25);
}
