//! The labelled set: an npz split, a Kaggle-style folder with splits, or a folder with
//! `NORMAL/` and `PNEUMONIA/` (image and DICOM files, nested folders allowed).

use std::path::{Path, PathBuf};

use cxr_data::{DicomWindow, ImageSet, Split};
use rayon::prelude::*;

use crate::{EvaluateError, Result};

/// The class folders of a labelled folder, with their labels.
const CLASSES: [(&str, u8); 2] = [("NORMAL", 0), ("PNEUMONIA", 1)];

/// One scored image: where it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImageKey {
    /// Path relative to the set as given (`/` separators); for npz, `split/index`.
    pub path: String,
    /// File name (for npz, the same as `path`).
    pub file: String,
    /// Position in the split (npz) or in the file order (folders).
    pub index: usize,
    /// Frame of a multi-frame DICOM (0 otherwise).
    pub frame: usize,
}

/// The set read at the model's source size, labels known.
pub(crate) struct LabelledSet {
    pub source: PathBuf,
    pub kind: &'static str,
    pub split: Option<String>,
    pub images: ImageSet,
    pub keys: Vec<ImageKey>,
    pub files: usize,
    /// Files that could not be read, with the reason.
    pub unreadable: Vec<(String, String)>,
}

/// Reads `source` (see the module doc) at `size` × `size`. `split` picks the split of
/// an npz file or of a folder with `train/`, `val/`, `test/` (default `test`); a folder
/// with `NORMAL/` and `PNEUMONIA/` at its top has no splits and refuses `split`.
pub(crate) fn read_set(
    source: &Path,
    split: Option<Split>,
    size: usize,
    window: DicomWindow,
) -> Result<LabelledSet> {
    if source.is_file() {
        return read_npz(source, split.unwrap_or(Split::Test), size);
    }
    if !source.is_dir() {
        return Err(EvaluateError::setting(
            "data",
            format!("{} is neither an npz file nor a folder", source.display()),
        ));
    }
    let has_classes = CLASSES.iter().all(|(c, _)| source.join(c).is_dir());
    let (root, split_name) = if has_classes {
        if let Some(s) = split {
            return Err(EvaluateError::setting(
                "split",
                format!(
                    "{} holds NORMAL/ and PNEUMONIA/ directly, it has no `{}` split",
                    source.display(),
                    s.as_str()
                ),
            ));
        }
        (source.to_path_buf(), None)
    } else {
        let s = split.unwrap_or(Split::Test);
        let dir = source.join(s.as_str());
        if !CLASSES.iter().all(|(c, _)| dir.join(c).is_dir()) {
            return Err(EvaluateError::setting(
                "data",
                format!(
                    "{} has neither NORMAL/ and PNEUMONIA/ folders nor a `{}` split holding them",
                    source.display(),
                    s.as_str()
                ),
            ));
        }
        (dir, Some(s.as_str().to_string()))
    };
    let mut files: Vec<(PathBuf, u8)> = Vec::new();
    for (class, label) in CLASSES {
        let found = cxr_data::collect_inputs(&[root.join(class)]);
        files.extend(found.into_iter().map(|p| (p, label)));
    }
    let read: Vec<std::result::Result<Vec<Vec<u8>>, String>> = files
        .par_iter()
        .map(|(p, _)| cxr_data::read_input(p, size, window))
        .collect();
    let mut images = ImageSet {
        images: Vec::new(),
        labels: Vec::new(),
        height: size,
        width: size,
    };
    let mut keys = Vec::new();
    let mut unreadable = Vec::new();
    for (index, ((path, label), r)) in files.iter().zip(read).enumerate() {
        let rel = relative(source, path);
        match r {
            Ok(frames) => {
                for (frame, px) in frames.into_iter().enumerate() {
                    images.images.extend(px);
                    images.labels.push(*label);
                    keys.push(ImageKey {
                        path: rel.clone(),
                        file: file_name(path),
                        index,
                        frame,
                    });
                }
            }
            Err(reason) => unreadable.push((rel, reason)),
        }
    }
    Ok(LabelledSet {
        source: source.to_path_buf(),
        kind: "folder",
        split: split_name,
        images,
        keys,
        files: files.len(),
        unreadable,
    })
}

fn read_npz(path: &Path, split: Split, size: usize) -> Result<LabelledSet> {
    let data = cxr_data::load_npz(path)?;
    let set = match split {
        Split::Train => data.train,
        Split::Val => data.val,
        Split::Test => data.test,
    };
    if set.height != size || set.width != size {
        return Err(EvaluateError::setting(
            "data",
            format!(
                "{}: the {} split holds {}×{} images, the model takes {size}×{size} source images",
                path.display(),
                split.as_str(),
                set.height,
                set.width
            ),
        ));
    }
    let keys = (0..set.len())
        .map(|i| {
            let key = format!("{}/{i}", split.as_str());
            ImageKey {
                path: key.clone(),
                file: key,
                index: i,
                frame: 0,
            }
        })
        .collect();
    Ok(LabelledSet {
        source: path.to_path_buf(),
        kind: "npz",
        split: Some(split.as_str().to_string()),
        files: set.len(),
        images: set,
        keys,
        unreadable: Vec::new(),
    })
}

/// `path` relative to `root` with `/` separators (the path itself when not below it).
fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
