//! Patient ids on a Kaggle-layout folder made from PneumoniaMNIST images: the default
//! pattern and a table, planted overlaps found, and the validation split drawn from
//! train by patient (one split per patient, stratified, seeded).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cxr_data::{
    DataError, Dataset, ImageSet, PatientPattern, PatientSource, PatientTable, Split, load_folder,
    load_npz,
};

/// Images per patient, cycled: several images for most patients.
const SIZES: [usize; 4] = [1, 3, 2, 4];

/// A Kaggle-style file name of image `k` of patient `id`: `personN_bacteria_K.png` or
/// `personN_virus_K.png` (pneumonia), `IM-XXXX-YYYY.png` or `NORMAL2-IM-XXXX-YYYY.png`
/// (normal, the series alternating by patient).
fn kaggle_name(label: u8, id: usize, k: usize) -> String {
    match (label, id % 2) {
        (1, 0) => format!("person{id}_bacteria_{k}.png"),
        (1, _) => format!("person{id}_virus_{k}.png"),
        (_, 0) => format!("IM-{id:04}-{k:04}.png"),
        (_, _) => format!("NORMAL2-IM-{id:04}-{k:04}.png"),
    }
}

/// The fixture: its root, and for each written file (relative path) its patient.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    patients: BTreeMap<String, String>,
}

/// Writes `ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*.png` from PneumoniaMNIST: per
/// split and class `counts` images (train and val from its train split, test from its
/// test split), grouped into patients of [`SIZES`] images, numbered per class across
/// splits so that no patient spans two splits. With `plant`, the first normal and the
/// first pneumonia patient of the test split take the ids of train patients.
fn fixture(counts: [usize; 3], plant: bool) -> Option<Fixture> {
    let npz = cxr_testkit::pneumoniamnist()?;
    let data = load_npz(&npz).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("chest_xray");
    let mut patients = BTreeMap::new();
    let mut next_id = [1usize, 1];
    let mut used_train = [0usize, 0];
    for (s, split) in Split::ALL.into_iter().enumerate() {
        let source = if split == Split::Test {
            &data.test
        } else {
            &data.train
        };
        for (label, class) in [(0u8, "NORMAL"), (1, "PNEUMONIA")] {
            let folder = root.join(split.as_str()).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            let mut pool = (0..source.len()).filter(|&i| source.labels[i] == label);
            if split == Split::Val {
                pool.by_ref().nth(used_train[label as usize] - 1);
            }
            let (mut written, mut patient) = (0, 0);
            while written < counts[s] {
                let id = if plant && split == Split::Test && patient == 0 {
                    1
                } else {
                    next_id[label as usize]
                };
                next_id[label as usize] += 1;
                let n = SIZES[patient % SIZES.len()].min(counts[s] - written);
                for k in 1..=n {
                    let i = pool.next().unwrap();
                    let name = kaggle_name(label, id, k);
                    image::GrayImage::from_raw(28, 28, source.image(i).to_vec())
                        .unwrap()
                        .save(folder.join(&name))
                        .unwrap();
                    let patient_id = format!("{}{id}", if label == 1 { "P" } else { "N" });
                    patients.insert(format!("{split}/{class}/{name}"), patient_id);
                }
                written += n;
                patient += 1;
            }
            if split == Split::Train {
                used_train[label as usize] = counts[s];
            }
        }
    }
    Some(Fixture {
        _dir: dir,
        root,
        patients,
    })
}

fn load(root: &Path) -> Dataset {
    load_folder(root, 28, false).unwrap().0
}

/// Writes `rows` as a CSV with the given header next to the fixture.
fn table(f: &Fixture, header: &str, rows: &[(String, String)]) -> PathBuf {
    let path = f.root.with_file_name("patients.csv");
    let mut text = format!("{header}\n");
    for (k, p) in rows {
        text.push_str(&format!("{k},{p}\n"));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Patient → splits holding them.
fn splits_of(d: &Dataset) -> BTreeMap<String, BTreeSet<Split>> {
    let ids = d.patients.as_ref().unwrap();
    let mut m: BTreeMap<String, BTreeSet<Split>> = BTreeMap::new();
    for s in Split::ALL {
        for id in ids.split(s) {
            m.entry(id.clone()).or_default().insert(s);
        }
    }
    m
}

#[test]
fn the_default_pattern_groups_kaggle_names_and_finds_no_overlap_in_clean_data() {
    let Some(f) = fixture([40, 8, 12], false) else {
        return;
    };
    let mut d = load(&f.root);
    let a = d
        .assign_patients(&PatientSource::Pattern(PatientPattern::kaggle()))
        .unwrap();
    assert!(a.unmatched.is_empty() && a.unused_rows.is_empty());
    let distinct: BTreeSet<&String> = f.patients.values().collect();
    assert_eq!(a.patients, distinct.len());
    let ids = d.patients.as_ref().unwrap();
    assert_eq!(ids.train.len(), 80);
    assert!(ids.train.iter().any(|p| p.starts_with("person")));
    assert!(ids.train.iter().any(|p| p.starts_with("NORMAL2-IM-")));
    assert!(ids.overlap().is_empty());
    ids.check_no_overlap().unwrap();
    // 40 images per class in patients of 1, 3, 2, 4 images: 16 patients per class.
    assert_eq!(ids.patients_in(Split::Train), 32);
}

#[test]
fn planted_overlap_is_found_by_pattern_and_by_table() {
    let Some(f) = fixture([20, 4, 8], true) else {
        return;
    };
    let mut d = load(&f.root);
    d.assign_patients(&PatientSource::Pattern(PatientPattern::kaggle()))
        .unwrap();
    let o = d.patients.as_ref().unwrap().overlap();
    let names: Vec<(&str, Vec<Split>)> = o
        .iter()
        .map(|o| {
            (
                o.patient.as_str(),
                o.images.iter().map(|(s, _)| *s).collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("NORMAL2-IM-0001", vec![Split::Train, Split::Test]),
            ("person1", vec![Split::Train, Split::Test])
        ]
    );
    // person1 has 1 image in train (patient sizes start at 1) and 1 in test.
    assert_eq!(o[1].images, vec![(Split::Train, 1), (Split::Test, 1)]);
    let e = d.patients.as_ref().unwrap().check_no_overlap().unwrap_err();
    assert!(matches!(e, DataError::PatientOverlap { .. }));
    let msg = e.to_string();
    assert!(msg.contains("NORMAL2-IM-0001 (train 1, test 1)"), "{msg}");

    // The same through a table of synthetic ids keyed by path.
    let rows: Vec<(String, String)> = f
        .patients
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let t = PatientTable::read(&table(&f, "path,patient", &rows)).unwrap();
    let mut d = load(&f.root);
    let a = d.assign_patients(&PatientSource::Table(t)).unwrap();
    assert!(a.unmatched.is_empty() && a.unused_rows.is_empty());
    let o = d.patients.as_ref().unwrap().overlap();
    let ids: Vec<&str> = o.iter().map(|o| o.patient.as_str()).collect();
    assert_eq!(ids, vec!["N1", "P1"]);
}

#[test]
fn a_table_keyed_by_file_plants_overlap_and_counts_what_it_misses() {
    let Some(f) = fixture([20, 4, 8], false) else {
        return;
    };
    // By file name; one test image given a train image's patient, two files left out,
    // one row naming no image.
    let mut rows: Vec<(String, String)> = f
        .patients
        .iter()
        .map(|(k, v)| (k.rsplit('/').next().unwrap().to_string(), v.clone()))
        .collect();
    let train_patient = f.patients["train/NORMAL/IM-0002-0001.png"].clone();
    let test_file = f
        .patients
        .keys()
        .find(|k| k.starts_with("test/PNEUMONIA/"))
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    for r in rows.iter_mut().filter(|r| r.0 == test_file) {
        r.1 = train_patient.clone();
    }
    let left_out: Vec<String> = rows.drain(..2).map(|r| r.0).collect();
    rows.push(("not-in-the-data.png".into(), "X".into()));
    let t = PatientTable::read(&table(&f, "file,patient", &rows)).unwrap();
    let mut d = load(&f.root);
    let a = d.assign_patients(&PatientSource::Table(t)).unwrap();
    assert_eq!(a.unused_rows, vec!["not-in-the-data.png".to_string()]);
    let unmatched: Vec<String> = a
        .unmatched
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(unmatched, left_out);
    let ids = d.patients.as_ref().unwrap();
    assert_eq!(ids.unmatched, 2);
    assert!(ids.source.starts_with("table ") && ids.source.ends_with("patients.csv"));
    let o = ids.overlap();
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].patient, train_patient);
    assert_eq!(
        o[0].images.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![Split::Train, Split::Test]
    );
}

#[test]
fn val_from_train_keeps_patients_whole_stratified_and_seeded() {
    let Some(f) = fixture([120, 8, 12], false) else {
        return;
    };
    let mut d = load(&f.root);
    d.assign_patients(&PatientSource::Pattern(PatientPattern::kaggle()))
        .unwrap();
    let (a, r) = d.val_from_train(0.25, 7).unwrap();
    // Every patient in one split; test untouched; the given val dropped.
    assert!(a.patients.as_ref().unwrap().overlap().is_empty());
    let before = splits_of(&d);
    for (p, s) in splits_of(&a) {
        if before[&p].contains(&Split::Train) {
            assert!(s == BTreeSet::from([Split::Train]) || s == BTreeSet::from([Split::Val]));
        }
    }
    assert_eq!(a.test, d.test);
    assert_eq!(a.files.test, d.files.test);
    assert_eq!(r.given_val_images, 16);
    assert_eq!(a.train.len() + a.val.len(), 240);
    assert_eq!((r.train_images, r.val_images), (a.train.len(), a.val.len()));
    assert!(
        a.files
            .val
            .iter()
            .all(|p| p.starts_with(f.root.join("train")))
    );
    // Each image keeps its label and file: the val images are the train files' pixels.
    for (i, p) in a.files.val.iter().enumerate() {
        let j = d.files.train.iter().position(|q| q == p).unwrap();
        assert_eq!(a.val.image(i), d.train.image(j));
        assert_eq!(a.val.labels[i], d.train.labels[j]);
    }
    // Stratified: each class's share near the fraction (patients hold at most 4 images).
    let [n, p] = a.val.class_counts();
    assert_eq!(r.val_class_counts, [n, p]);
    for c in [n, p] {
        assert!(
            (30..=33).contains(&c),
            "val class count {c} for 0.25 of 120"
        );
    }
    // Seeded: the same seed gives the same split on any number of threads; another
    // seed another split.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (b, _) = pool.install(|| d.val_from_train(0.25, 7).unwrap());
    assert_eq!(a.files, b.files);
    assert_eq!(a.train, b.train);
    let (c, _) = d.val_from_train(0.25, 8).unwrap();
    assert_ne!(a.files.val, c.files.val);
}

#[test]
fn bad_fractions_and_data_without_patients_are_errors() {
    let Some(f) = fixture([12, 4, 4], false) else {
        return;
    };
    let mut d = load(&f.root);
    let e = d.val_from_train(0.2, 0).unwrap_err().to_string();
    assert!(e.contains("no patient ids"), "{e}");
    d.assign_patients(&PatientSource::Pattern(PatientPattern::kaggle()))
        .unwrap();
    for bad in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
        let e = d.val_from_train(bad, 0).unwrap_err().to_string();
        assert!(
            e.contains("val-from-train") && e.contains("(0, 1)"),
            "{bad}: {e}"
        );
    }
    // npz data has no files, hence no patient ids.
    let mut npz = Dataset {
        train: ImageSet {
            images: vec![0; 4],
            labels: vec![0],
            height: 2,
            width: 2,
        },
        val: d.val.clone(),
        test: d.test.clone(),
        source: "x.npz".into(),
        sha256: String::new(),
        files: Default::default(),
        patients: None,
    };
    let e = npz
        .assign_patients(&PatientSource::Pattern(PatientPattern::kaggle()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("x.npz") && e.contains("no patient ids"), "{e}");
}

#[test]
fn unmatched_files_are_their_own_patients() {
    let Some(f) = fixture([8, 4, 4], false) else {
        return;
    };
    let odd = f.root.join("train/NORMAL/scan.png");
    std::fs::copy(f.root.join("train/NORMAL/NORMAL2-IM-0001-0001.png"), &odd).unwrap();
    let mut d = load(&f.root);
    let a = d
        .assign_patients(&PatientSource::Pattern(PatientPattern::kaggle()))
        .unwrap();
    assert_eq!(a.unmatched, vec![odd]);
    let ids = d.patients.as_ref().unwrap();
    assert_eq!(ids.unmatched, 1);
    assert!(
        ids.train
            .contains(&"file:train/NORMAL/scan.png".to_string())
    );
}
