//! Bad inputs get errors naming the table, the column or the setting; a set with one
//! class only is evaluated with the figures that need both classes left out.

use cxr_evaluate::{EvaluateError, EvaluateOptions, evaluate};
use cxr_runfolder::names;

use crate::{options, shared, write_folder};

fn with_table(
    csv: &str,
    join_on: &str,
    group_by: &[&str],
    dir: &std::path::Path,
) -> EvaluateOptions {
    let meta = dir.join("meta.csv");
    std::fs::write(&meta, csv).unwrap();
    EvaluateOptions {
        metadata: Some(meta),
        join_on: Some(join_on.into()),
        group_by: group_by.iter().map(|s| s.to_string()).collect(),
        ..options(&dir.join("eval"))
    }
}

fn message(e: EvaluateError) -> String {
    e.to_string()
}

#[test]
fn metadata_errors_name_the_table_and_the_columns() {
    let Some(s) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = |opts: EvaluateOptions| message(evaluate(&s.run_a, &s.npz, &opts).unwrap_err());

    let e = run(with_table("idx,sex\n0,M\n1,F\n", "idx", &["age"], dir));
    assert!(
        e.contains("meta.csv") && e.contains("no column `age`") && e.contains("idx, sex"),
        "{e}"
    );

    let e = run(with_table("idx,sex\n0,M\n1,F\n", "image", &[], dir));
    assert!(
        e.contains("no column `image` to join on") && e.contains("idx, sex"),
        "{e}"
    );

    let e = run(with_table("idx,sex\n0,M\n1,F\n1,M\n", "idx", &[], dir));
    assert!(e.contains("occur more than once") && e.contains('1'), "{e}");

    let e = run(with_table("idx,sex\nzero,M\n", "idx", &[], dir));
    assert!(e.contains("whole numbers"), "{e}");

    let e = run(EvaluateOptions {
        group_by: vec!["sex".into()],
        ..options(&dir.join("e"))
    });
    assert!(e.contains("need a --metadata table"), "{e}");

    let meta = dir.join("meta.txt");
    std::fs::write(&meta, "a\n").unwrap();
    let e = run(EvaluateOptions {
        metadata: Some(meta),
        join_on: Some("a".into()),
        ..options(&dir.join("e"))
    });
    assert!(e.contains(".csv or .parquet"), "{e}");

    let e = run(EvaluateOptions {
        join_key: Some(cxr_evaluate::JoinKey::File),
        ..with_table("idx\n0\n", "idx", &[], dir)
    });
    assert!(e.contains("join on `index`"), "{e}");
    assert!(
        !dir.join("eval").join(names::EVALUATION).exists(),
        "nothing written"
    );
}

#[test]
fn bad_sets_and_settings() {
    let Some(s) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let e =
        message(evaluate(&s.run_a, &tmp.path().join("absent"), &options(tmp.path())).unwrap_err());
    assert!(e.contains("absent") && e.contains("neither"), "{e}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = message(evaluate(&s.run_a, &empty, &options(tmp.path())).unwrap_err());
    assert!(e.contains("NORMAL/ and PNEUMONIA/"), "{e}");
    let e = message(
        evaluate(
            &s.run_a,
            &s.npz,
            &EvaluateOptions {
                bins: 1,
                ..options(tmp.path())
            },
        )
        .unwrap_err(),
    );
    assert!(e.contains("bins"), "{e}");
    // An existing evaluation is not overwritten.
    let out = tmp.path().join("eval");
    evaluate(&s.run_a, &s.npz, &options(&out)).unwrap();
    let e = message(evaluate(&s.run_a, &s.npz, &options(&out)).unwrap_err());
    assert!(e.contains("already holds an evaluation"), "{e}");
}

#[test]
fn one_class_only_and_unreadable_files() {
    let Some(s) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("site");
    let normals: Vec<usize> = (0..s.data.test.len())
        .filter(|&i| s.data.test.labels[i] == 0)
        .take(40)
        .collect();
    write_folder(&s.data.test, &normals, &root);
    std::fs::write(root.join("NORMAL").join("broken.png"), b"not a png").unwrap();
    let e = evaluate(&s.run_a, &root, &options(&tmp.path().join("eval")))
        .unwrap()
        .evaluation;
    assert_eq!(e.set.images, 40);
    assert_eq!(e.set.files, 41);
    assert_eq!(e.set.unreadable, 1);
    assert_eq!(e.set.errors.len(), 1);
    assert!(e.metrics.is_none() && e.auc.is_none() && e.calibration.is_none());
    assert!(e.roc.is_empty());
    assert!(e.notes[0].contains("normal images only"), "{:?}", e.notes);
    let p = &e.operating_points[0];
    assert!(p.sensitivity.is_none(), "no positives: no sensitivity");
    let spec = p.specificity.unwrap();
    assert_eq!(spec.n, 40);
    assert!(spec.bootstrap_low.is_none(), "no bootstrap with one class");
    assert!(!tmp.path().join("eval").join(names::METRICS).exists());
}
