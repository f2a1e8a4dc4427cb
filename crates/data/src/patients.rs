//! Patient ids of image-folder data — from a file-name pattern or a table — the
//! patients found in more than one split, and a validation split drawn from the
//! training split by patient.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use rand::SeedableRng as _;
use rand::seq::SliceRandom as _;
use rand_chacha::ChaCha8Rng;
use sha2::Digest as _;

use crate::folder::manifest_name;
use crate::{DataError, Dataset, PatientIds, Result, Split, SplitFiles};

/// The default patient pattern, for the Kaggle `chest_xray` file names: the patient is
/// `personN` in `personN_bacteria_M.jpeg` / `personN_virus_M.jpeg` (PNEUMONIA), and
/// `IM-XXXX` in `IM-XXXX-YYYY.jpeg` or `NORMAL2-IM-XXXX` in `NORMAL2-IM-XXXX-YYYY.jpeg`
/// (NORMAL). The ids keep their prefix, so the numbering series stay apart: `person1`,
/// `IM-0001` and `NORMAL2-IM-0001` are three patients (nothing in the data links them).
pub const KAGGLE_PATIENT_PATTERN: &str = r"^((?:NORMAL2-)?IM-\d+|person\d+)[-_]";

/// Prefix of the id given to an image whose file no pattern or table row matched: the
/// image is its own patient, named by its path relative to the data root.
pub const OWN_PATIENT_PREFIX: &str = "file:";

/// A regular expression whose one capture group, matched against an image's file name
/// (not its folders), is the image's patient id.
#[derive(Debug, Clone)]
pub struct PatientPattern {
    regex: regex::Regex,
}

impl PatientPattern {
    /// Compiles `pattern` (Rust `regex` syntax); it must have exactly one capture group
    /// (non-capturing `(?:…)` groups are free). The error names the pattern.
    pub fn new(pattern: &str) -> Result<Self> {
        let bad = |reason: String| DataError::Pattern {
            pattern: pattern.to_string(),
            reason,
        };
        let regex = regex::Regex::new(pattern).map_err(|e| bad(e.to_string()))?;
        // captures_len counts the whole match as group 0.
        let groups = regex.captures_len() - 1;
        if groups != 1 {
            return Err(bad(format!(
                "needs exactly one capture group `(...)` around the patient id, found {groups} \
                 (use `(?:...)` for other groups)"
            )));
        }
        Ok(Self { regex })
    }

    /// [`KAGGLE_PATIENT_PATTERN`].
    pub fn kaggle() -> Self {
        Self::new(KAGGLE_PATIENT_PATTERN).expect("the built-in pattern has one capture group")
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// The patient id in `file_name`: the capture group of the first match, or `None`
    /// when the pattern does not match or captures nothing.
    pub fn patient(&self, file_name: &str) -> Option<String> {
        let m = self.regex.captures(file_name)?.get(1)?;
        (!m.as_str().is_empty()).then(|| m.as_str().to_string())
    }
}

/// Which column of a [`PatientTable`] names the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TableKey {
    /// `path`: relative to the data root, `/` separators.
    Path,
    /// `file`: the file name alone (every image of that name).
    File,
}

/// Patient ids from a CSV table with a header: a column `patient` and a column `path`
/// (relative to the data root, `/` separators, e.g. `train/NORMAL/IM-0001-0001.jpeg`) or,
/// without `path`, a column `file` (a file name, applied to every image of that name).
/// Other columns are ignored.
#[derive(Debug, Clone)]
pub struct PatientTable {
    path: PathBuf,
    key: TableKey,
    /// Key → (patient, line).
    rows: BTreeMap<String, (String, u64)>,
    sha256: String,
}

impl PatientTable {
    /// Reads and checks the table: a missing column, an empty cell, a malformed line or
    /// a file listed twice is an error naming the table (and the lines).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Self::parse(path, &bytes)
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| DataError::PatientTable {
            path: path.to_path_buf(),
            reason,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let headers = reader
            .headers()
            .map_err(|e| bad(format!("cannot read the header: {e}")))?
            .clone();
        let column = |name: &str| headers.iter().position(|h| h == name);
        let patient_col = column("patient");
        let (key, key_col) = match (column("path"), column("file")) {
            (Some(c), _) => (TableKey::Path, Some(c)),
            (None, Some(c)) => (TableKey::File, Some(c)),
            (None, None) => (TableKey::Path, None),
        };
        let (Some(patient_col), Some(key_col)) = (patient_col, key_col) else {
            let missing: Vec<&str> = [
                patient_col.is_none().then_some("`patient`"),
                key_col.is_none().then_some("`path` (or `file`)"),
            ]
            .into_iter()
            .flatten()
            .collect();
            return Err(bad(format!(
                "missing column {} (the header has: {})",
                missing.join(" and "),
                headers.iter().collect::<Vec<_>>().join(", ")
            )));
        };
        let key_name = match key {
            TableKey::Path => "path",
            TableKey::File => "file",
        };
        let mut rows: BTreeMap<String, (String, u64)> = BTreeMap::new();
        for record in reader.records() {
            let record = record.map_err(|e| bad(e.to_string()))?;
            let line = record.position().map_or(0, |p| p.line());
            let cell = |c: usize| record.get(c).unwrap_or("");
            let mut k = cell(key_col).replace('\\', "/");
            while let Some(rest) = k.strip_prefix("./") {
                k = rest.to_string();
            }
            let patient = cell(patient_col).to_string();
            if k.is_empty() || patient.is_empty() {
                return Err(bad(format!(
                    "line {line}: empty `{}`",
                    if k.is_empty() { key_name } else { "patient" }
                )));
            }
            if let Some((_, first)) = rows.get(&k) {
                return Err(bad(format!(
                    "{key_name} `{k}` is listed twice (lines {first} and {line})"
                )));
            }
            rows.insert(k, (patient, line));
        }
        if rows.is_empty() {
            return Err(bad("no rows".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            key,
            rows,
            sha256: hex::encode(sha2::Sha256::digest(bytes)),
        })
    }

    /// The table's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows (files listed).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no rows (never true for a table that was read).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// sha256 of the table's bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// Where patient ids come from.
#[derive(Debug, Clone)]
pub enum PatientSource {
    /// A file-name pattern.
    Pattern(PatientPattern),
    /// A table of files and patients.
    Table(PatientTable),
}

impl fmt::Display for PatientSource {
    /// `pattern REGEX` or `table PATH`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pattern(p) => write!(f, "pattern {}", p.as_str()),
            Self::Table(t) => write!(f, "table {}", t.path.display()),
        }
    }
}

impl PatientIds {
    /// Patients with images in more than one split, sorted by id.
    pub fn overlap(&self) -> Vec<PatientOverlap> {
        let mut counts: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
        for (s, split) in Split::ALL.into_iter().enumerate() {
            for id in self.split(split) {
                counts.entry(id).or_default()[s] += 1;
            }
        }
        counts
            .into_iter()
            .filter(|(_, c)| c.iter().filter(|&&n| n > 0).count() > 1)
            .map(|(id, c)| PatientOverlap {
                patient: id.to_string(),
                images: Split::ALL
                    .into_iter()
                    .zip(c)
                    .filter(|&(_, n)| n > 0)
                    .collect(),
            })
            .collect()
    }

    /// `Ok` when no patient has images in more than one split, else a
    /// [`DataError::PatientOverlap`] listing them.
    pub fn check_no_overlap(&self) -> Result<()> {
        let overlap = self.overlap();
        if overlap.is_empty() {
            Ok(())
        } else {
            Err(DataError::PatientOverlap {
                overlap: overlap.iter().map(ToString::to_string).collect(),
            })
        }
    }
}

/// A patient with images in more than one split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientOverlap {
    /// The patient id.
    pub patient: String,
    /// The splits holding the patient's images, in split order, with image counts.
    pub images: Vec<(Split, usize)>,
}

impl fmt::Display for PatientOverlap {
    /// `person7 (train 3, test 1)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let splits: Vec<String> = self
            .images
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect();
        write!(f, "{} ({})", self.patient, splits.join(", "))
    }
}

/// What [`Dataset::assign_patients`] matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientAssignment {
    /// Distinct patients over all splits (unmatched images included, one each).
    pub patients: usize,
    /// Images whose file matched no pattern or table row, each its own patient.
    pub unmatched: Vec<PathBuf>,
    /// Table rows naming no image of the data set (`path` or `file` as written).
    pub unused_rows: Vec<String>,
}

/// What [`Dataset::val_from_train`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ValFromTrain {
    /// Fraction of each class's training images aimed for in validation.
    pub fraction: f64,
    /// Images of the given validation split, no longer used.
    pub given_val_images: usize,
    /// Patients (and images) left in training.
    pub train_patients: usize,
    /// Training images left.
    pub train_images: usize,
    /// Patients moved to validation.
    pub val_patients: usize,
    /// Validation images.
    pub val_images: usize,
    /// Validation images per class (normal, pneumonia).
    pub val_class_counts: [usize; 2],
}

/// Stream key of the re-split's generator, apart from the batches' seeds.
const VAL_SPLIT_KEY: u64 = 0x7661_6c5f_6672_6f6d; // "val_from"

impl Dataset {
    /// Gives every image a patient id from `source` and stores them in
    /// [`Dataset::patients`]. A pattern is matched against each file name; a table by
    /// the path relative to [`Dataset::source`] (or by file name). An image that matches
    /// nothing becomes its own patient (id `file:<relative path>`); these and the table
    /// rows naming no image are counted, returned and logged as warnings.
    ///
    /// Errors: data without image files (npz) has no patient ids.
    pub fn assign_patients(&mut self, source: &PatientSource) -> Result<PatientAssignment> {
        let files = &self.files;
        for split in Split::ALL {
            if files.split(split).len() != self.split(split).len() {
                return Err(DataError::Invalid {
                    name: "patients".into(),
                    reason: format!(
                        "{}: no image files recorded for the {split} split (npz data has no \
                         patient ids)",
                        self.source.display()
                    ),
                });
            }
        }
        let root = self.source.clone();
        let mut used_rows: Vec<bool> = match source {
            PatientSource::Table(t) => vec![false; t.rows.len()],
            PatientSource::Pattern(_) => Vec::new(),
        };
        let row_index: HashMap<&str, usize> = match source {
            PatientSource::Table(t) => t
                .rows
                .keys()
                .enumerate()
                .map(|(i, k)| (k.as_str(), i))
                .collect(),
            PatientSource::Pattern(_) => HashMap::new(),
        };
        let mut unmatched = Vec::new();
        let mut ids_of = |paths: &[PathBuf]| -> Vec<String> {
            paths
                .iter()
                .map(|p| {
                    let rel = manifest_name(&root, p);
                    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                    let found = match source {
                        PatientSource::Pattern(pat) => name.and_then(|n| pat.patient(&n)),
                        PatientSource::Table(t) => {
                            let key = match t.key {
                                TableKey::Path => Some(rel.clone()),
                                TableKey::File => name,
                            };
                            key.and_then(|k| {
                                let i = *row_index.get(k.as_str())?;
                                used_rows[i] = true;
                                t.rows.get(&k).map(|(patient, _)| patient.clone())
                            })
                        }
                    };
                    found.unwrap_or_else(|| {
                        unmatched.push(p.clone());
                        format!("{OWN_PATIENT_PREFIX}{rel}")
                    })
                })
                .collect()
        };
        let SplitFiles { train, val, test } = files;
        let (train, val, test) = (ids_of(train), ids_of(val), ids_of(test));
        let unused_rows: Vec<String> = match source {
            PatientSource::Table(t) => t
                .rows
                .keys()
                .zip(&used_rows)
                .filter(|(_, used)| !**used)
                .map(|(k, _)| k.clone())
                .collect(),
            PatientSource::Pattern(_) => Vec::new(),
        };
        let ids = PatientIds {
            train,
            val,
            test,
            source: source.to_string(),
            unmatched: unmatched.len(),
        };
        let mut all: Vec<&str> = Split::ALL
            .into_iter()
            .flat_map(|s| ids.split(s).iter().map(String::as_str))
            .collect();
        all.sort_unstable();
        all.dedup();
        let patients = all.len();
        let total: usize = Split::ALL.into_iter().map(|s| self.split(s).len()).sum();
        if !unmatched.is_empty() {
            let first: Vec<String> = unmatched
                .iter()
                .take(3)
                .map(|p| manifest_name(&root, p))
                .collect();
            tracing::warn!(
                "{} of {total} images have no patient id from the {source} (each counted as its \
                 own patient), e.g. {}",
                unmatched.len(),
                first.join(", ")
            );
        }
        if !unused_rows.is_empty() {
            tracing::warn!(
                "{} of {} rows of the {source} name no image of {} (ignored), e.g. {}",
                unused_rows.len(),
                used_rows.len(),
                root.display(),
                unused_rows
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        tracing::info!(
            source = %source,
            patients,
            unmatched = unmatched.len(),
            "patient ids assigned"
        );
        self.patients = Some(ids);
        Ok(PatientAssignment {
            patients,
            unmatched,
            unused_rows,
        })
    }

    /// A new validation split drawn from the training split by patient; the given
    /// validation split is dropped (not merged into training), the test split kept.
    ///
    /// - A patient's label is "any pneumonia": pneumonia when any of their training
    ///   images is, else normal. Each label's patients are drawn separately
    ///   (stratified), so both classes keep about their share.
    /// - Within a label, patients are sorted by id and shuffled by a ChaCha8 generator
    ///   seeded by `seed` (on a key of its own), then moved to validation until it holds
    ///   at least `round(fraction × that label's training images)`; at least one
    ///   patient of a label with two or more goes to validation and at least one stays.
    /// - Images keep their relative order within each split. The result depends only on
    ///   the data, the ids, `fraction` and `seed` (no threads involved).
    ///
    /// Errors: `fraction` outside (0, 1), no patient ids ([`Dataset::assign_patients`]
    /// first; npz data has none), or a split left empty.
    pub fn val_from_train(&self, fraction: f64, seed: u64) -> Result<(Dataset, ValFromTrain)> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(DataError::Invalid {
                name: "val-from-train".into(),
                reason: format!("the fraction must lie in (0, 1), got {fraction}"),
            });
        }
        let ids = self.patients.as_ref().ok_or_else(|| DataError::Invalid {
            name: "val-from-train".into(),
            reason: format!(
                "{}: no patient ids to split by (npz data has none)",
                self.source.display()
            ),
        })?;
        if ids.train.len() != self.train.len() {
            return Err(DataError::Invalid {
                name: "val-from-train".into(),
                reason: format!(
                    "{} patient ids for {} training images",
                    ids.train.len(),
                    self.train.len()
                ),
            });
        }
        // Patient → (training image indices, any pneumonia), in id order.
        let mut by_patient: BTreeMap<&str, (Vec<usize>, bool)> = BTreeMap::new();
        for (i, id) in ids.train.iter().enumerate() {
            let e = by_patient.entry(id).or_default();
            e.0.push(i);
            e.1 |= self.train.labels[i] == 1;
        }
        let mut val_idx = Vec::new();
        let mut val_patients = 0;
        for label in [false, true] {
            let mut patients: Vec<&Vec<usize>> = by_patient
                .values()
                .filter(|(_, l)| *l == label)
                .map(|(idx, _)| idx)
                .collect();
            if patients.len() < 2 {
                continue;
            }
            let images: usize = patients.iter().map(|p| p.len()).sum();
            let target = ((fraction * images as f64).round() as usize).max(1);
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ VAL_SPLIT_KEY);
            rng.set_stream(u64::from(label));
            patients.shuffle(&mut rng);
            let mut taken = 0;
            for p in &patients[..patients.len() - 1] {
                if taken >= target {
                    break;
                }
                taken += p.len();
                val_idx.extend_from_slice(p);
                val_patients += 1;
            }
        }
        val_idx.sort_unstable();
        let train_idx: Vec<usize> = (0..self.train.len())
            .filter(|i| val_idx.binary_search(i).is_err())
            .collect();
        if val_idx.is_empty() || train_idx.is_empty() {
            return Err(DataError::Invalid {
                name: "val-from-train".into(),
                reason: format!(
                    "{} training patients cannot be split by a fraction of {fraction} (each \
                     class needs two patients or more)",
                    by_patient.len()
                ),
            });
        }
        let pick_files = |idx: &[usize]| -> Vec<PathBuf> {
            idx.iter()
                .filter_map(|&i| self.files.train.get(i).cloned())
                .collect()
        };
        let pick_ids =
            |idx: &[usize]| -> Vec<String> { idx.iter().map(|&i| ids.train[i].clone()).collect() };
        let val = self.train.subset(&val_idx)?;
        let report = ValFromTrain {
            fraction,
            given_val_images: self.val.len(),
            train_patients: by_patient.len() - val_patients,
            train_images: train_idx.len(),
            val_patients,
            val_images: val_idx.len(),
            val_class_counts: val.class_counts(),
        };
        let dataset = Dataset {
            train: self.train.subset(&train_idx)?,
            val,
            test: self.test.clone(),
            source: self.source.clone(),
            sha256: self.sha256.clone(),
            files: SplitFiles {
                train: pick_files(&train_idx),
                val: pick_files(&val_idx),
                test: self.files.test.clone(),
            },
            patients: Some(PatientIds {
                train: pick_ids(&train_idx),
                val: pick_ids(&val_idx),
                test: ids.test.clone(),
                source: ids.source.clone(),
                unmatched: ids.unmatched,
            }),
        };
        tracing::info!(
            fraction,
            seed,
            train_patients = report.train_patients,
            train_images = report.train_images,
            val_patients = report.val_patients,
            val_images = report.val_images,
            given_val_images = report.given_val_images,
            "validation drawn from train by patient; the given val split is not used"
        );
        Ok((dataset, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pattern_reads_kaggle_names() {
        let p = PatientPattern::kaggle();
        let cases = [
            ("person1_bacteria_1.jpeg", Some("person1")),
            ("person1_virus_6.jpeg", Some("person1")),
            ("person1000_virus_1681.jpeg", Some("person1000")),
            ("person10_bacteria_43.jpeg", Some("person10")),
            ("IM-0001-0001.jpeg", Some("IM-0001")),
            ("IM-0115-0001.jpeg", Some("IM-0115")),
            ("NORMAL2-IM-0001-0001.jpeg", Some("NORMAL2-IM-0001")),
            ("NORMAL2-IM-1427-0001.jpeg", Some("NORMAL2-IM-1427")),
            ("scan.jpeg", None),
            ("xperson1_bacteria_1.jpeg", None),
            ("person_bacteria_1.jpeg", None),
            ("IM-0001.jpeg", None),
        ];
        for (name, want) in cases {
            assert_eq!(p.patient(name).as_deref(), want, "{name}");
        }
        // The series stay apart: a normal IM-0001 is not pneumonia's person1.
        assert_ne!(
            p.patient("IM-0001-0001.jpeg"),
            p.patient("person1_virus_1.jpeg")
        );
        assert_ne!(
            p.patient("IM-0001-0001.jpeg"),
            p.patient("NORMAL2-IM-0001-0001.jpeg")
        );
    }

    #[test]
    fn patterns_need_one_capture_group() {
        let e = PatientPattern::new("person(\\d+").unwrap_err();
        assert!(matches!(e, DataError::Pattern { .. }), "{e}");
        assert!(e.to_string().contains("person(\\d+"), "{e}");
        for p in ["^person\\d+_", "^(a)(b)"] {
            let e = PatientPattern::new(p).unwrap_err().to_string();
            assert!(e.contains(p) && e.contains("capture group"), "{e}");
        }
        let p = PatientPattern::new("^(?:pat)-(\\w+)\\.").unwrap();
        assert_eq!(p.patient("pat-A7.png").as_deref(), Some("A7"));
        // an empty capture is no id
        assert_eq!(PatientPattern::new("^(x*)").unwrap().patient("y.png"), None);
    }

    #[test]
    fn tables_are_checked() {
        let t = |s: &str| PatientTable::parse(Path::new("p.csv"), s.as_bytes());
        let ok =
            t("path,patient,site\n./train/NORMAL/a.png, 7 ,x\ntrain/NORMAL/b.png,7,x\n").unwrap();
        assert_eq!((ok.key, ok.len()), (TableKey::Path, 2));
        assert_eq!(ok.rows["train/NORMAL/a.png"].0, "7");
        assert_eq!(t("file,patient\na.png,1\n").unwrap().key, TableKey::File);
        let err = |s: &str| t(s).unwrap_err().to_string();
        let e = err("path,subject\na.png,1\n");
        assert!(
            e.contains("p.csv") && e.contains("`patient`") && e.contains("path, subject"),
            "{e}"
        );
        let e = err("name,patient\na.png,1\n");
        assert!(e.contains("`path` (or `file`)"), "{e}");
        let e = err("file,patient\na.png,1\nb.png,2\na.png,3\n");
        assert!(e.contains("`a.png` is listed twice (lines 2 and 4)"), "{e}");
        let e = err("file,patient\na.png,\n");
        assert!(e.contains("line 2: empty `patient`"), "{e}");
        let e = err("file,patient\na.png,1,extra\n");
        assert!(e.contains("p.csv"), "{e}");
        assert!(err("file,patient\n").contains("no rows"));
    }

    #[test]
    fn overlap_lists_patients_in_several_splits() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let ids = PatientIds {
            train: s(&["a", "a", "b", "c"]),
            val: s(&["d", "c"]),
            test: s(&["a", "e", "c"]),
            ..PatientIds::default()
        };
        let o = ids.overlap();
        assert_eq!(
            o,
            vec![
                PatientOverlap {
                    patient: "a".into(),
                    images: vec![(Split::Train, 2), (Split::Test, 1)]
                },
                PatientOverlap {
                    patient: "c".into(),
                    images: vec![(Split::Train, 1), (Split::Val, 1), (Split::Test, 1)]
                },
            ]
        );
        let e = ids.check_no_overlap().unwrap_err().to_string();
        assert!(
            e.starts_with("2 patient(s)") && e.contains("a (train 2, test 1)"),
            "{e}"
        );
        assert_eq!(ids.patients_in(Split::Train), 3);
    }
}
