use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::Digest as _;

use crate::{DataError, Dataset, ImageSet, Result, sha256_file};

const CLASSES: [(&str, u8); 2] = [("NORMAL", 0), ("PNEUMONIA", 1)];
const EXTENSIONS: [&str; 3] = ["jpeg", "jpg", "png"];

/// Decodes one image file to 8-bit grayscale (luma), centre-crops it to a square and
/// resizes it to `size × size` (bilinear). Any bit depth or colour type the `image`
/// crate reads is accepted; 16-bit images are scaled to 8 bits.
pub fn decode_image(path: &Path, size: usize) -> std::result::Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let img = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| e.to_string())?;
    let gray = img.to_luma8();
    let (w, h) = gray.dimensions();
    if w == 0 || h == 0 {
        return Err("empty image".into());
    }
    let side = w.min(h);
    let cropped =
        image::imageops::crop_imm(&gray, (w - side) / 2, (h - side) / 2, side, side).to_image();
    let resized = image::imageops::resize(
        &cropped,
        size as u32,
        size as u32,
        image::imageops::FilterType::Triangle,
    );
    Ok(resized.into_raw())
}

fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut files = Vec::new();
    let mut ignored = 0usize;
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if path.is_file() && is_image {
            files.push(path);
        } else {
            ignored += 1;
        }
    }
    if ignored > 0 {
        tracing::debug!(
            "{}: ignored {ignored} entries that are not .jpeg/.jpg/.png files",
            dir.display()
        );
    }
    files.sort();
    Ok(files)
}

/// Reads the Kaggle chest X-ray layout `root/{train,val,test}/{NORMAL,PNEUMONIA}/*.{jpeg,jpg,png}`
/// (extensions case-insensitive; other files are ignored) into a [`Dataset`] of
/// `size × size` grayscale images, decoding in parallel. Files are taken in path
/// order, so the result is deterministic.
///
/// Unreadable images are an error listing every one of them unless `skip_bad`, in
/// which case they are left out and returned with their decoder messages.
/// `Dataset::sha256` is the sha256 of the lines `<relative path> <file sha256>`
/// of every file used, in order.
pub fn load_folder(
    root: &Path,
    size: usize,
    skip_bad: bool,
) -> Result<(Dataset, Vec<(PathBuf, String)>)> {
    if size < 8 {
        return Err(DataError::Invalid {
            name: "image size".into(),
            reason: format!("must be at least 8, got {size}"),
        });
    }
    let mut splits = Vec::new();
    let mut bad_all = Vec::new();
    let mut manifest = sha2::Sha256::new();
    for split in ["train", "val", "test"] {
        let mut files = Vec::new();
        for (class, label) in CLASSES {
            let dir = root.join(split).join(class);
            if !dir.is_dir() {
                return Err(DataError::Layout {
                    path: dir,
                    reason: format!(
                        "missing folder (expected {split}/{class} under the data root)"
                    ),
                });
            }
            files.extend(list_images(&dir)?.into_iter().map(|p| (p, label)));
        }
        let decoded: Vec<std::result::Result<Vec<u8>, String>> = files
            .par_iter()
            .map(|(p, _)| decode_image(p, size))
            .collect();
        let mut set = ImageSet {
            images: Vec::new(),
            labels: Vec::new(),
            height: size,
            width: size,
        };
        for ((path, label), result) in files.iter().zip(decoded) {
            match result {
                Ok(pixels) => {
                    set.images.extend(pixels);
                    set.labels.push(*label);
                    let rel = path.strip_prefix(root).unwrap_or(path);
                    manifest
                        .update(format!("{} {}\n", rel.display(), sha256_file(path)?).as_bytes());
                }
                Err(e) => bad_all.push((path.clone(), e)),
            }
        }
        splits.push((split, set));
    }
    if !bad_all.is_empty() && !skip_bad {
        return Err(DataError::BadFiles {
            root: root.to_path_buf(),
            files: bad_all,
        });
    }
    for (split, set) in &splits {
        if set.is_empty() {
            return Err(DataError::Layout {
                path: root.join(split),
                reason: "no readable images in this split".into(),
            });
        }
    }
    let mut it = splits.into_iter().map(|(_, s)| s);
    let (train, val, test) = match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), Some(c)) => (a, b, c),
        _ => unreachable!("three splits are always built"),
    };
    if !bad_all.is_empty() {
        tracing::warn!(
            "{}: skipped {} unreadable image files",
            root.display(),
            bad_all.len()
        );
    }
    Ok((
        Dataset {
            train,
            val,
            test,
            source: root.to_path_buf(),
            sha256: hex::encode(manifest.finalize()),
        },
        bad_all,
    ))
}
