//! A metadata table joined by npz index and by file name: unmatched rows and images are
//! counted and listed, subgroups come out per column with too-small groups flagged,
//! and the parquet tables carry the metadata.

use std::fmt::Write as _;

use cxr_runfolder::names;
use polars::prelude::*;

use crate::{options, shared, write_folder};

/// A table for the 624 test images by index: `sex` (M/F alternating), `age` (a spread
/// of values, cut into quantile bins), `view` (a rare `LL` view of 5 images: too
/// small), without rows for images 600–623 and with 3 rows for images that do not
/// exist.
fn table() -> String {
    let mut csv = String::from("image_index,sex,age,view\n");
    for i in (0..600).chain(1000..1003) {
        let sex = if i % 2 == 0 { "M" } else { "F" };
        let age = 1 + (i * 37) % 90;
        let view = if i < 5 {
            "LL"
        } else if i % 3 == 0 {
            "AP"
        } else {
            "PA"
        };
        writeln!(csv, "{i},{sex},{age},{view}").unwrap();
    }
    csv
}

#[test]
fn npz_index_join_with_subgroups() {
    let Some(s) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let meta = tmp.path().join("meta.csv");
    std::fs::write(&meta, table()).unwrap();
    let out = tmp.path().join("eval");
    let opts = cxr_evaluate::EvaluateOptions {
        metadata: Some(meta.clone()),
        join_on: Some("image_index".into()),
        group_by: vec!["sex".into(), "age".into(), "view".into()],
        ..options(&out)
    };
    let e = cxr_evaluate::evaluate(&s.run_a, &s.npz, &opts)
        .unwrap()
        .evaluation;
    let m = e.metadata.as_ref().unwrap();
    assert_eq!(m.key, "index");
    assert_eq!(m.rows, 603);
    assert_eq!(m.matched, 600);
    assert_eq!(m.images_without_row, 24);
    assert_eq!(m.images_without_row_examples[0], "600");
    assert_eq!(m.rows_without_image, 3);
    assert_eq!(m.rows_without_image_examples, ["1000", "1001", "1002"]);

    let sex = &e.subgroups[0];
    assert_eq!(sex.kind, "categorical");
    let groups: Vec<&str> = sex.groups.iter().map(|g| g.group.as_str()).collect();
    assert_eq!(groups, ["F", "M", "(missing)"]);
    assert_eq!(sex.groups.iter().map(|g| g.n).sum::<u64>(), 624);
    assert_eq!(sex.groups[0].n, 300);
    assert!(sex.groups[0].auc.is_some() && sex.groups[0].sensitivity.is_some());
    assert!(sex.auc_heterogeneity.is_some());
    // (missing) holds 24 images: below the minimum of 30, left out of the tests.
    assert!(sex.groups[2].too_small);
    let h = sex.sensitivity_heterogeneity.unwrap();
    assert_eq!(h.df, 1);
    assert!((0.0..=1.0).contains(&h.p_value));

    let age = &e.subgroups[1];
    assert_eq!(age.kind, "quantile");
    assert_eq!(age.groups.len(), 5, "4 bins and (missing)");
    assert!(age.groups[0].group.starts_with('['));
    assert_eq!(age.groups.iter().map(|g| g.n).sum::<u64>(), 624);

    let view = &e.subgroups[2];
    let ll = view.groups.iter().find(|g| g.group == "LL").unwrap();
    assert_eq!(ll.n, 5);
    assert!(ll.too_small && ll.auc.is_none() && ll.sensitivity.is_none());
    assert!(ll.note.contains("too small"));

    // The tables: one row per image with the metadata; one per column and group.
    let preds =
        ParquetReader::new(std::fs::File::open(out.join(names::EVALUATE_PREDICTIONS)).unwrap())
            .finish()
            .unwrap();
    assert_eq!(preds.height(), 624);
    for c in [
        "path", "label", "logit", "prob", "decision", "sex", "age", "view",
    ] {
        assert!(preds.column(c).is_ok(), "{c}");
    }
    assert_eq!(preds.column("sex").unwrap().null_count(), 24);
    let sub = ParquetReader::new(std::fs::File::open(out.join(names::SUBGROUPS_PARQUET)).unwrap())
        .finish()
        .unwrap();
    let rows: usize = e.subgroups.iter().map(|t| t.groups.len()).sum();
    assert_eq!(sub.height(), rows);
    let csv = std::fs::read_to_string(out.join(names::SUBGROUPS_CSV)).unwrap();
    assert_eq!(csv.lines().count(), rows + 1);
    assert!(csv.starts_with("column,kind,group,n,"));
}

#[test]
fn folder_join_by_file_name_and_by_path() {
    let Some(s) = shared() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("site");
    let which: Vec<usize> = (0..120).collect();
    write_folder(&s.data.test, &which, &root);
    let class = |i: usize| {
        if s.data.test.labels[i] == 1 {
            "PNEUMONIA"
        } else {
            "NORMAL"
        }
    };
    let mut by_file = String::from("file_name,site\n");
    let mut by_path = String::from("path,site\n");
    for &i in &which {
        let site = if i % 2 == 0 { "A" } else { "B" };
        writeln!(by_file, "img_{i:04}.png,{site}").unwrap();
        // Windows separators and a leading ./ are normalised.
        writeln!(by_path, ".\\{}\\img_{i:04}.png,{site}", class(i)).unwrap();
    }
    for (name, text, col, key) in [
        (
            "file.csv",
            by_file,
            "file_name",
            cxr_evaluate::JoinKey::File,
        ),
        ("path.csv", by_path, "path", cxr_evaluate::JoinKey::Path),
    ] {
        let meta = tmp.path().join(name);
        std::fs::write(&meta, text).unwrap();
        let opts = cxr_evaluate::EvaluateOptions {
            metadata: Some(meta),
            join_on: Some(col.into()),
            join_key: Some(key),
            group_by: vec!["site".into()],
            ..options(&tmp.path().join(format!("eval-{name}")))
        };
        let e = cxr_evaluate::evaluate(&s.run_a, &root, &opts)
            .unwrap()
            .evaluation;
        let m = e.metadata.unwrap();
        assert_eq!(
            (m.matched, m.images_without_row, m.rows_without_image),
            (120, 0, 0),
            "{name}"
        );
        let site = &e.subgroups[0];
        assert_eq!(site.groups.len(), 2);
        assert_eq!(site.groups[0].n + site.groups[1].n, 120);
    }
}
