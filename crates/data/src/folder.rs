//! The Kaggle chest X-ray folder layout: `ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/*`.

use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;
use sha2::Digest as _;

use crate::{DataError, Dataset, ImageSet, Result, Split, SplitFiles};

/// Class folders and their labels.
const CLASSES: [(&str, u8); 2] = [("NORMAL", 0), ("PNEUMONIA", 1)];
/// Image extensions read (compared case-insensitively).
const EXTENSIONS: [&str; 3] = ["jpeg", "jpg", "png"];
/// Accepted output sizes.
const SIZE_RANGE: std::ops::RangeInclusive<usize> = 8..=4096;

/// Decodes one image file to 8-bit grayscale, centre-crops it to a square and
/// resizes it to `size × size`; see [`load_folder`] for the exact steps. The error
/// is the reader's or decoder's message.
pub fn decode_image(path: &Path, size: usize) -> std::result::Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    decode_image_bytes(&bytes, size)
}

/// [`decode_image`] on the bytes of an image file held in memory.
pub fn decode_image_bytes(bytes: &[u8], size: usize) -> std::result::Result<Vec<u8>, String> {
    let mut img = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    img.limits(decode_limits());
    if img.format().is_none() {
        return Err("not a recognised image format (PNG/JPEG/BMP/TIFF)".into());
    }
    let img = img.decode().map_err(decode_error)?;
    fit_square(img.to_luma8(), size)
}

/// Centre-crops an 8-bit gray image to a square of its shorter side and resizes that
/// to `size × size` with the `image` crate's Triangle (bilinear, antialiased) filter
/// (no resize when the side is already `size`): the geometry every image file and
/// DICOM frame goes through.
pub fn fit_square(gray: image::GrayImage, size: usize) -> std::result::Result<Vec<u8>, String> {
    let side_out = u32::try_from(size).map_err(|_| format!("size {size} too large"))?;
    let (w, h) = gray.dimensions();
    if w == 0 || h == 0 {
        return Err("empty image (0 pixels)".into());
    }
    let side = w.min(h);
    let cropped =
        image::imageops::crop_imm(&gray, (w - side) / 2, (h - side) / 2, side, side).to_image();
    let resized = if side == side_out {
        cropped
    } else {
        image::imageops::resize(
            &cropped,
            side_out,
            side_out,
            image::imageops::FilterType::Triangle,
        )
    };
    Ok(resized.into_raw())
}

/// Longest image side accepted by [`decode_image`].
const MAX_SIDE: u32 = 8192;
/// Most bytes of decoded pixels accepted by [`decode_image`].
const MAX_DECODED_BYTES: u64 = 32 << 20;

/// What a header may claim before decoding is refused: sides up to [`MAX_SIDE`] and at
/// most [`MAX_DECODED_BYTES`] of pixels (a 4096×4096 16-bit grayscale image; the
/// Kaggle radiographs are at most about 3000×3000 8-bit RGB, 27 MB). A small file
/// declaring a huge image (a 300-byte progressive JPEG can claim 8220×7168, seconds of
/// decoding) fails before the allocation and the work.
fn decode_limits() -> image::Limits {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    limits
}

/// The decoder's error, with the limits spelled out when they were exceeded.
fn decode_error(e: image::ImageError) -> String {
    match e {
        image::ImageError::Limits(_) => format!(
            "the image is larger than cxr decodes (sides up to {MAX_SIDE} pixels, at most \
             {} MiB of pixels): downscale it first",
            MAX_DECODED_BYTES >> 20
        ),
        e => e.to_string(),
    }
}

/// Whether `name` is an image file name this loader reads (not hidden, known extension).
fn is_image_name(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let known = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    !hidden && known
}

/// The image files of one class folder, sorted by path.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut files = Vec::new();
    let mut ignored = 0usize;
    for entry in entries {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if path.is_file() && is_image_name(&path) {
            files.push(path);
        } else {
            ignored += 1;
        }
    }
    if ignored > 0 {
        tracing::debug!(
            "{}: ignored {ignored} entries that are not .jpeg/.jpg/.png files \
             (hidden files, other extensions, folders)",
            dir.display()
        );
    }
    files.sort();
    Ok(files)
}

/// `path` relative to `root` with `/` separators, for the manifest hash.
pub(crate) fn manifest_name(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn require_dir(path: PathBuf, what: &str) -> Result<PathBuf> {
    if path.is_dir() {
        Ok(path)
    } else {
        Err(DataError::Layout {
            reason: format!(
                "missing {what} folder (expected ROOT/{{train,val,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg)"
            ),
            path,
        })
    }
}

/// Reads the Kaggle chest X-ray layout
/// `root/{train,val,test}/{NORMAL,PNEUMONIA}/*.{jpeg,jpg,png}` into a [`Dataset`] of
/// `size × size` grayscale images (NORMAL = 0, PNEUMONIA = 1).
///
/// - Files: extensions compared case-insensitively; hidden files (names starting
///   with `.`, e.g. `.DS_Store`, macOS `._x.jpeg`), folders and other extensions
///   are ignored and counted in a `debug` log. Within a split, files are taken in
///   path order (NORMAL, then PNEUMONIA, each sorted), so the result is
///   deterministic; they are read, hashed and decoded in parallel (rayon).
/// - Decoding: any bit depth or colour type the `image` crate reads (PNG, JPEG, and
///   BMP/TIFF content under an image extension) becomes 8-bit luma (16-bit is scaled
///   to 8 bits, colour uses the `image` crate's Rec. 709 weights, alpha is
///   dropped), is centre-cropped to a square of the shorter side and resized to
///   `size` with the `image` crate's Triangle (bilinear, antialiased) filter.
/// - Images with a side above 8192 pixels or more than 32 MiB of decoded pixels are
///   refused before decoding (a small file can declare a huge image).
/// - `size` must be in 8..=4096.
/// - A missing root, split or class folder is a [`DataError::Layout`] naming it, as
///   is a split left without images.
/// - Files that cannot be read or decoded (a corrupt JPEG, text named `.png`) make
///   a [`DataError::BadFiles`] listing every one of them, unless `skip_bad`, in which
///   case they are left out and returned with the decoder's message.
/// - [`Dataset::sha256`] is the sha256 of the text made of one line
///   `<relative path> <sha256 of the file>\n` per image used (relative to `root`, `/`
///   separators), in the order above (train, val, test).
pub fn load_folder(
    root: &Path,
    size: usize,
    skip_bad: bool,
) -> Result<(Dataset, Vec<(PathBuf, String)>)> {
    if !SIZE_RANGE.contains(&size) {
        return Err(DataError::Invalid {
            name: "image size".into(),
            reason: format!("must be in 8..=4096, got {size}"),
        });
    }
    let root_dir = require_dir(root.to_path_buf(), "data root")?;
    let mut sets = Vec::with_capacity(3);
    let mut bad_all = Vec::new();
    let mut manifest = sha2::Sha256::new();
    let mut split_files: Vec<Vec<PathBuf>> = Vec::with_capacity(3);
    for split in Split::ALL {
        let split_dir = require_dir(root_dir.join(split.as_str()), "split")?;
        let mut files = Vec::new();
        for (class, label) in CLASSES {
            let dir = require_dir(split_dir.join(class), "class")?;
            files.extend(list_images(&dir)?.into_iter().map(|p| (p, label)));
        }
        let decoded: Vec<(std::result::Result<Vec<u8>, String>, String)> = files
            .par_iter()
            .map(|(p, _)| match std::fs::read(p) {
                Ok(bytes) => (
                    decode_image_bytes(&bytes, size),
                    hex::encode(sha2::Sha256::digest(&bytes)),
                ),
                Err(e) => (Err(format!("cannot read: {e}")), String::new()),
            })
            .collect();
        let mut set = ImageSet {
            images: Vec::new(),
            labels: Vec::new(),
            height: size,
            width: size,
        };
        let mut used = Vec::with_capacity(files.len());
        for ((path, label), (result, sha)) in files.iter().zip(decoded) {
            match result {
                Ok(pixels) => {
                    set.images.extend(pixels);
                    set.labels.push(*label);
                    used.push(path.clone());
                    manifest.update(format!("{} {sha}\n", manifest_name(root, path)).as_bytes());
                }
                Err(e) => bad_all.push((path.clone(), e)),
            }
        }
        tracing::debug!(
            "{}: {} images ({} bad so far)",
            split_dir.display(),
            set.len(),
            bad_all.len()
        );
        sets.push((split_dir, set));
        split_files.push(used);
    }
    if !bad_all.is_empty() && !skip_bad {
        return Err(DataError::BadFiles {
            root: root.to_path_buf(),
            files: bad_all,
        });
    }
    for (dir, set) in &sets {
        if set.is_empty() {
            return Err(DataError::Layout {
                path: dir.clone(),
                reason: "no readable .jpeg/.jpg/.png images in NORMAL/ or PNEUMONIA/".into(),
            });
        }
    }
    let [(_, train), (_, val), (_, test)]: [(PathBuf, ImageSet); 3] =
        sets.try_into().map_err(|_| DataError::Invalid {
            name: "splits".into(),
            reason: "expected three splits".into(),
        })?;
    if !bad_all.is_empty() {
        tracing::warn!(
            "{}: skipped {} unreadable image files",
            root.display(),
            bad_all.len()
        );
    }
    let sha256 = hex::encode(manifest.finalize());
    let mut split_files = split_files.into_iter();
    let mut next = || split_files.next().unwrap_or_default();
    let files = SplitFiles {
        train: next(),
        val: next(),
        test: next(),
    };
    tracing::info!(
        root = %root.display(),
        sha256 = %sha256,
        train = train.len(),
        val = val.len(),
        test = test.len(),
        size,
        "image folders loaded"
    );
    Ok((
        Dataset {
            train,
            val,
            test,
            source: root.to_path_buf(),
            sha256,
            files,
            patients: None,
        },
        bad_all,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        for ok in ["a.png", "b.JPEG", "c.Jpg", "dir/x.jpeg"] {
            assert!(is_image_name(Path::new(ok)), "{ok}");
        }
        for no in [
            ".DS_Store",
            "._a.jpeg",
            "README",
            "a.txt",
            "a.png.bak",
            "jpeg",
        ] {
            assert!(!is_image_name(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn manifest_names_use_slashes() {
        let root = Path::new("/r");
        assert_eq!(
            manifest_name(root, &root.join("train").join("NORMAL").join("a.png")),
            "train/NORMAL/a.png"
        );
    }

    #[test]
    fn decode_crops_to_the_centre_square() {
        // 6 wide × 2 high: columns 0..2 black, 2..4 white, 4..6 black → centre 2×2 white
        let img = image::GrayImage::from_fn(6, 2, |x, _| {
            image::Luma([if (2..4).contains(&x) { 255 } else { 0 }])
        });
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
        assert_eq!(decode_image_bytes(&bytes, 2).unwrap(), vec![255; 4]);
        assert!(
            decode_image_bytes(b"plain text", 8)
                .unwrap_err()
                .contains("not a recognised")
        );
    }
}
