//! The evaluation report (`cxr evaluate`): an `Evaluation` built in code with realistic
//! figures, and a one-class set where most figures cannot be computed.

use std::path::Path;

use cxr_report::{ReportError, check_embedded_images, write_evaluate_report};
use cxr_runfolder::{
    ErrorCount, EstimateCi, EvaluatedCalibration, EvaluatedPoint, EvaluatedSet, Evaluation,
    HeterogeneityTest, LabelShiftCheck, MetadataJoin, ModelComparison, ProportionEstimate,
    ReliabilityPoint, RocPoint, SetPrevalence, SiteCheck, SplitMetrics, SubgroupRow, SubgroupTable,
    names,
};

/// `k / n` with its 95 % Wilson interval and a bootstrap interval slightly wider.
fn prop(k: u64, n: u64) -> Option<ProportionEstimate> {
    if n == 0 {
        return None;
    }
    let z = 1.959_963_984_540_054_f64;
    let (kf, nf) = (k as f64, n as f64);
    let p = kf / nf;
    let denom = 1.0 + z * z / nf;
    let centre = (p + z * z / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt() / denom;
    Some(ProportionEstimate {
        estimate: p,
        successes: k,
        n,
        wilson_low: centre - half,
        wilson_high: centre + half,
        bootstrap_low: Some((centre - half - 0.004).max(0.0)),
        bootstrap_high: Some((centre + half + 0.003).min(1.0)),
    })
}

#[allow(clippy::too_many_arguments)]
fn point(
    name: &str,
    threshold: f64,
    source: &str,
    [tp, fp, tn, fn_]: [u64; 4],
    val: Option<(f64, f64)>,
) -> EvaluatedPoint {
    let f1 = 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64;
    EvaluatedPoint {
        name: name.into(),
        threshold,
        source: source.into(),
        tp,
        fp,
        tn,
        fn_,
        sensitivity: prop(tp, tp + fn_),
        specificity: prop(tn, tn + fp),
        ppv: prop(tp, tp + fp),
        npv: prop(tn, tn + fn_),
        accuracy: prop(tp + tn, tp + fp + tn + fn_).unwrap(),
        f1: (tp + fn_ > 0 && tn + fp > 0).then_some(EstimateCi {
            estimate: f1,
            low: f1 - 0.031,
            high: f1 + 0.027,
        }),
        val_sensitivity: val.map(|v| v.0),
        val_specificity: val.map(|v| v.1),
    }
}

fn bins(bend: f64) -> Vec<ReliabilityPoint> {
    (0..15)
        .map(|i| {
            let lower = i as f64 / 15.0;
            let confidence = lower + 1.0 / 30.0;
            ReliabilityPoint {
                lower,
                upper: lower + 1.0 / 15.0,
                count: [90, 60, 41, 30, 22, 18, 15, 14, 16, 18, 22, 30, 40, 55, 69][i],
                confidence,
                accuracy: confidence.powf(bend),
            }
        })
        .collect()
}

fn site_check(estimate: f64, verdict: &str) -> SiteCheck {
    SiteCheck {
        method: "EM prior adjustment (Saerens et al. 2002) on temperature-calibrated \
                 probabilities"
            .into(),
        estimate,
        ci_low: estimate - 0.05,
        ci_high: estimate + 0.05,
        level: 0.95,
        resamples: 1000,
        train_prevalence: 0.742,
        reference_prevalence: 0.742,
        calibration: "temperature T = 1.412 from the model card".into(),
        label_shift_test: Some(LabelShiftCheck {
            statistic: 0.041,
            p_value: 0.18,
            resamples: 500,
            rejected: false,
        }),
        differs: true,
        iterations: 14,
        converged: true,
        mean_probability: estimate + 0.09,
        verdict: verdict.into(),
    }
}

fn row(
    group: &str,
    n: u64,
    positives: u64,
    auc: Option<(f64, f64, f64)>,
    note: &str,
) -> SubgroupRow {
    let too_small = n < 30;
    let tp = positives * 9 / 10;
    let negatives = n - positives;
    let tn = negatives * 83 / 100;
    SubgroupRow {
        group: group.into(),
        n,
        positives,
        prevalence: positives as f64 / n as f64,
        too_small,
        auc: auc.map(|a| a.0),
        auc_low: auc.map(|a| a.1),
        auc_high: auc.map(|a| a.2),
        sensitivity: if too_small { None } else { prop(tp, positives) },
        specificity: if too_small { None } else { prop(tn, negatives) },
        note: note.into(),
    }
}

/// An evaluation on 540 images from another site, with subgroups, a comparison and a
/// metadata table that does not match every image.
pub fn full_evaluation() -> Evaluation {
    let youden = "Youden's J on the run's validation split";
    let points = vec![
        point(
            "youden",
            0.6213,
            youden,
            [160, 60, 300, 20],
            Some((0.95, 0.91)),
        ),
        point(
            "sensitivity_0.95",
            0.2107,
            "lowest threshold reaching sensitivity 0.95 on validation",
            [172, 120, 240, 8],
            Some((0.953, 0.78)),
        ),
        point(
            "default_0.5",
            0.5,
            "the conventional 0.5",
            [165, 75, 285, 15],
            Some((0.96, 0.88)),
        ),
    ];
    let adapted = vec![
        point("youden", 0.8391, youden, [141, 25, 335, 39], None),
        point("sensitivity_0.95", 0.4122, "", [168, 82, 278, 12], None),
        point("default_0.5", 0.7520, "", [150, 36, 324, 30], None),
    ];
    let roc = (0..=50)
        .map(|i| {
            let fpr = i as f64 / 50.0;
            RocPoint {
                fpr,
                tpr: fpr.powf(0.11),
            }
        })
        .collect();
    let sex = SubgroupTable {
        column: "sex".into(),
        kind: "categorical".into(),
        operating_point: "youden".into(),
        threshold: 0.6213,
        groups: vec![
            row("F", 262, 84, Some((0.911, 0.874, 0.948)), ""),
            row("M", 256, 90, Some((0.883, 0.841, 0.925)), ""),
            row("U", 12, 4, None, "fewer than 30 images"),
            row("(missing)", 10, 2, None, "fewer than 30 images"),
        ],
        auc_heterogeneity: Some(HeterogeneityTest {
            statistic: 0.98,
            df: 1,
            p_value: 0.322,
        }),
        sensitivity_heterogeneity: Some(HeterogeneityTest {
            statistic: 0.12,
            df: 1,
            p_value: 0.729,
        }),
        specificity_heterogeneity: Some(HeterogeneityTest {
            statistic: 11.6,
            df: 1,
            p_value: 0.000_66,
        }),
    };
    let age = SubgroupTable {
        column: "age".into(),
        kind: "quantile".into(),
        operating_point: "youden".into(),
        threshold: 0.6213,
        groups: vec![
            row("[18, 41)", 170, 51, Some((0.934, 0.897, 0.971)), ""),
            row("[41, 63)", 168, 55, Some((0.902, 0.856, 0.948)), ""),
            row("[63, 95]", 162, 74, Some((0.851, 0.793, 0.909)), ""),
            row(
                "(missing)",
                40,
                0,
                None,
                "one class only (no pneumonia images)",
            ),
        ],
        auc_heterogeneity: Some(HeterogeneityTest {
            statistic: 5.71,
            df: 2,
            p_value: 0.0575,
        }),
        sensitivity_heterogeneity: None,
        specificity_heterogeneity: Some(HeterogeneityTest {
            statistic: 2.2,
            df: 3,
            p_value: 0.532,
        }),
    };
    Evaluation {
        run: "runs/cnn-seed0".into(),
        network: "cnn".into(),
        card_derived: false,
        set: EvaluatedSet {
            source: "/data/siteB/test".into(),
            kind: "folder".into(),
            split: None,
            files: 545,
            images: 540,
            positives: 180,
            unreadable: 5,
            errors: vec![
                ErrorCount {
                    reason: "not a DICOM file (no DICM marker)".into(),
                    count: 3,
                },
                ErrorCount {
                    reason: "truncated PNG".into(),
                    count: 2,
                },
            ],
        },
        metrics: Some(SplitMetrics {
            accuracy: 0.833,
            precision: 0.688,
            recall: 0.917,
            specificity: 0.792,
            f1: 0.786,
            auc: 0.902,
            threshold: 0.5,
            tp: 165,
            fp: 75,
            tn: 285,
            fn_: 15,
            auc_ci_low: Some(0.876),
            auc_ci_high: Some(0.928),
            average_precision: Some(0.861),
            brier: Some(0.118),
            log_loss: Some(0.377),
            ece: Some(0.071),
            ece_pos: Some(0.083),
            mce: Some(0.19),
        }),
        auc: Some(EstimateCi {
            estimate: 0.9021,
            low: 0.8764,
            high: 0.9278,
        }),
        operating_points: points,
        default_operating_point: "youden".into(),
        calibration: Some(EvaluatedCalibration {
            temperature: 1.412,
            ece_before: 0.0831,
            ece_after: 0.0472,
            brier_before: 0.1183,
            brier_after: 0.1052,
            bins_before: bins(1.6),
            bins_after: bins(1.2),
        }),
        prevalence: SetPrevalence {
            true_prevalence: 0.3333,
            train_prevalence: Some(0.742),
            val_prevalence: Some(0.742),
            site_check: Some(site_check(
                0.361,
                "The estimated prevalence 0.361 (95% CI 0.311–0.411) is far below the \
                 training prevalence 0.742: thresholds chosen on the training data may not \
                 suit these images.",
            )),
            estimate_error: Some(0.0277),
            truth_in_interval: Some(true),
            adapted_points: adapted,
        },
        roc,
        resamples: 2000,
        seed: 7,
        metadata: Some(MetadataJoin {
            table: "/data/siteB/meta.csv".into(),
            join_on: "filename".into(),
            key: "file".into(),
            rows: 548,
            columns: vec!["filename".into(), "sex".into(), "age".into(), "view".into()],
            matched: 530,
            rows_without_image: 18,
            rows_without_image_examples: vec![
                "IM-0001.dcm".into(),
                "IM-0007.dcm".into(),
                "IM-0112.dcm".into(),
            ],
            images_without_row: 10,
            images_without_row_examples: vec!["scan_0410.png".into(), "scan_0977.png".into()],
        }),
        min_group_size: 30,
        subgroups: vec![sex, age],
        comparison: Some(ModelComparison {
            run_a: "runs/cnn-seed0".into(),
            network_a: "cnn".into(),
            run_b: "runs/resnet18-seed0".into(),
            network_b: "resnet18".into(),
            n: 540,
            auc_a: 0.9021,
            auc_b: 0.8812,
            auc_difference: 0.0209,
            auc_difference_low: -0.0041,
            auc_difference_high: 0.0459,
            delong_z: 1.64,
            delong_p: 0.101,
            operating_point_a: "youden".into(),
            threshold_a: 0.6213,
            operating_point_b: "youden".into(),
            threshold_b: 0.5502,
            accuracy_a: 0.852,
            accuracy_b: 0.835,
            only_a_correct: 31,
            only_b_correct: 22,
            mcnemar_statistic: 1.21,
            mcnemar_p: 0.271,
            mcnemar_exact: false,
        }),
        notes: vec![
            "age: sensitivity heterogeneity not tested — the (missing) group has no pneumonia \
             images"
                .into(),
            "10 images have no metadata row: they fall in each table's (missing) group".into(),
        ],
        seconds: 14.2,
        device: "cpu".into(),
        cxr_version: "0.1.0".into(),
    }
}

/// 200 pneumonia images and no normal one: no AUC, no ROC, no calibration.
fn one_class_evaluation() -> Evaluation {
    let points = vec![point(
        "youden",
        0.6213,
        "Youden's J on the run's validation split",
        [176, 0, 0, 24],
        Some((0.95, 0.91)),
    )];
    Evaluation {
        run: "runs/cnn-seed0".into(),
        network: "cnn".into(),
        card_derived: true,
        set: EvaluatedSet {
            source: "/data/pneumonia_only.npz".into(),
            kind: "npz".into(),
            split: Some("test".into()),
            files: 200,
            images: 200,
            positives: 200,
            unreadable: 0,
            errors: vec![],
        },
        metrics: None,
        auc: None,
        operating_points: points,
        default_operating_point: "youden".into(),
        calibration: None,
        prevalence: SetPrevalence {
            true_prevalence: 1.0,
            train_prevalence: None,
            val_prevalence: None,
            site_check: None,
            estimate_error: None,
            truth_in_interval: None,
            adapted_points: vec![],
        },
        roc: vec![],
        resamples: 2000,
        seed: 7,
        metadata: None,
        min_group_size: 30,
        subgroups: vec![],
        comparison: None,
        notes: vec!["the set has one class only: no AUC, ROC curve or calibration".into()],
        seconds: 3.1,
        device: "cpu".into(),
        cxr_version: "0.1.0".into(),
    }
}

/// Writes `ev` as `dir/evaluation.json`.
pub fn write_evaluation(dir: &Path, ev: &Evaluation) {
    std::fs::create_dir_all(dir).unwrap();
    ev.write(&dir.join(names::EVALUATION)).unwrap();
}

fn assert_contains(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "missing {n:?} in:\n{text}");
    }
}

#[test]
fn evaluation_report_shows_every_section_with_intervals() {
    let dir = tempfile::tempdir().unwrap();
    write_evaluation(dir.path(), &full_evaluation());
    let files = write_evaluate_report(dir.path()).unwrap();
    let names: Vec<String> = files
        .figures
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "roc.png",
            "reliability.png",
            "subgroups_1_sex.png",
            "subgroups_2_age.png"
        ]
    );
    for f in &files.figures {
        assert!(f.is_file(), "{}", f.display());
    }
    let images = check_embedded_images(&files.html).unwrap();
    assert_eq!(images.len(), 4);
    // Every embedded image is the figure written beside the report.
    for (img, path) in images.iter().zip(&files.figures) {
        let png = std::fs::read(path).unwrap();
        assert_eq!(cxr_report::png_size(&png), Some((img.width, img.height)));
    }

    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert_contains(
        &md,
        &[
            // Header and headline.
            "**Set:** /data/siteB/test (folder): 545 files, 540 images scored, 180 pneumonia (33.3%), 5 files unreadable.",
            "| not a DICOM file (no DICM marker) | 3 |",
            "On this set the model's AUC is 0.902 [0.876–0.928] (95% DeLong interval); at the \
             card's default operating point (Youden J, threshold 0.621) sensitivity is 0.889 \
             [0.835–0.927] against 0.950 on the run's validation split, and specificity 0.833 \
             [0.791–0.868] against 0.910.",
            "applied here unchanged",
            // Operating points: Wilson, bootstrap and validation side by side.
            "| Youden J (default) | 0.889 [0.835–0.927] | 0.831–0.930 | 0.950 | 0.833 [0.791–0.868] | 0.787–0.871 | 0.910 |",
            "| sensitivity ≥ 0.95 | 0.2107 | lowest threshold reaching sensitivity 0.95 on validation | 172 | 120 | 240 | 8 |",
            "At the run's own threshold 0.500: accuracy 0.833",
            // Calibration.
            "| ECE, top-label (15 bins) | 0.083 | 0.047 |",
            // Prevalence shift.
            "| label-free estimate (site check of cxr predict) | 0.361 [0.311–0.411] (95% bootstrap interval, 1000 resamples) |",
            "| estimate − truth | +0.028 |",
            "KS distance 0.041, p = 0.180 (500 resamples): not rejected",
            "**Site check:** The estimated prevalence 0.361",
            "| Youden J | 0.621 → 0.839 | 0.889 → 0.783 [",
            // Metadata join, unmatched keys listed.
            "| rows without an image | 18 | IM-0001.dcm, IM-0007.dcm, IM-0112.dcm, … (15 more) |",
            "| images without a row | 10 | scan_0410.png, scan_0977.png, … (8 more) |",
            // Subgroups.
            "### By sex",
            "| U | 12 | — | too small (n < 30) | — | — | fewer than 30 images |",
            "| (missing) | 10 | — | too small (n < 30) |",
            "| F | 262 | 0.321 (84/262) | 0.911 [0.874–0.948] |",
            "Cochran's Q = 0.98 (df 1), p = 0.322",
            "specificity: χ² = 11.60 (df 1), p < 0.001",
            "### By age",
            "| (missing) | 40 | 0.000 (0/40) | — | — |",
            "sensitivity: — (fewer than two groups with pneumonia images)",
            // Comparison.
            "0.021 [-0.004 to 0.046] (95% DeLong interval); paired DeLong test z = 1.64, p = 0.101",
            "only A correct 31, only B correct 22; McNemar's test (χ² with continuity correction = 1.21): p = 0.271",
            // Notes.
            "- 10 images have no metadata row",
        ],
    );
    let html = std::fs::read_to_string(&files.html).unwrap();
    assert_contains(
        &html,
        &[
            "<h3>Prevalence shift</h3>",
            "<li>10 images have no metadata row: they fall in each table&#39;s (missing) group</li>",
            "<td>too small (n &lt; 30)</td>",
        ],
    );
    // No Markdown leaks into the HTML.
    assert!(!html.contains("**") && !html.contains('`'));
    // Atomic writes leave no temporary files behind.
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["evaluation.json", "figures", "report.html", "report.md"]
    );
}

#[test]
fn a_one_class_set_renders_dashes_with_reasons_and_no_figures() {
    let dir = tempfile::tempdir().unwrap();
    write_evaluation(dir.path(), &one_class_evaluation());
    let files = write_evaluate_report(dir.path()).unwrap();
    assert!(files.figures.is_empty());
    assert!(check_embedded_images(&files.html).unwrap().is_empty());
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert_contains(
        &md,
        &[
            "(npz, split test): 200 files, 200 images scored, 200 pneumonia (100.0%)",
            "On this set no AUC can be computed (one class only)",
            "and specificity — (no normal images) against 0.910.",
            "model card was derived",
            "| Youden J (default) | 1.000 [0.979–1.000] |",
            "| — (no normal images) |",
            "— (one class only) |",
            "*Not computed: no ROC curve: the set has one class only*",
            "*Not computed: calibration needs both classes in the set*",
            "| training split (model card) | — (not in the model card) |",
            "| label-free estimate | — (the model card lacks what the site check needs) |",
            "*Not computed: no adapted operating points (see the notes)*",
            "*Not computed: no metadata table given*",
            "*Not computed: no subgroup column (--group-by with a metadata table)*",
            "*Not computed: no second model given (--compare)*",
            "- the set has one class only",
        ],
    );
    assert!(!md.contains("Unreadable") && !md.contains("unreadable: reason"));
}

#[test]
fn a_missing_or_malformed_evaluation_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = write_evaluate_report(dir.path()).unwrap_err().to_string();
    assert!(err.contains(names::EVALUATION), "{err}");

    std::fs::write(dir.path().join(names::EVALUATION), r#"{"run": "x"}"#).unwrap();
    let err = write_evaluate_report(dir.path()).unwrap_err();
    assert!(matches!(err, ReportError::Format { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(names::EVALUATION) && msg.contains("network"),
        "{msg}"
    );
    assert!(!dir.path().join(names::REPORT_HTML).exists());
}
