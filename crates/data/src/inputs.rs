//! New images to predict on: image files, DICOM files and folders of them, read into
//! the square gray images a model was trained on.

use std::path::{Path, PathBuf};

use crate::dicom::{DicomWindow, decode_dicom_bytes, is_dicom};
use crate::folder::{decode_image_bytes, fit_square};

/// Image file extensions taken from folders (compared case-insensitively).
const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm"];
/// Folder depth walked below an input folder.
const MAX_DEPTH: usize = 64;
/// Largest input file read (a 4096 × 4096 × 16-bit image with headroom, or a modest
/// multi-frame DICOM; the decoders' own limits apply after that).
const MAX_FILE_BYTES: u64 = 512 << 20;

/// The files to predict on, in the order given: a file stays as given (whatever its
/// name; reading it tells whether it is an image); a folder is walked recursively
/// (symbolic links to folders are not followed) and contributes, sorted by path, its
/// non-hidden files with an image or DICOM extension (`png`, `jpg`, `jpeg`, `bmp`,
/// `tif`, `tiff`, `dcm`) and extension-less files that start as DICOM files do
/// (`DICM` at byte 128). A path that does not exist is kept, so that reading it
/// reports the problem against its name.
pub fn collect_inputs(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found = Vec::new();
            walk(input, 0, &mut found);
            found.sort();
            if found.is_empty() {
                tracing::warn!(
                    "{}: no image or DICOM files in this folder",
                    input.display()
                );
            }
            out.extend(found);
        } else {
            out.push(input.clone());
        }
    }
    out
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > MAX_DEPTH {
        tracing::warn!(
            "{}: deeper than {MAX_DEPTH} folders, not walked",
            dir.display()
        );
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            // Kept as an input so that the row names the folder and the reason.
            tracing::warn!("{}: cannot list: {e}", dir.display());
            out.push(dir.to_path_buf());
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&path, depth + 1, out);
        } else if (kind.is_file() || kind.is_symlink()) && path.is_file() && is_input_name(&path) {
            out.push(path);
        }
    }
}

fn is_input_name(path: &Path) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => IMAGE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()),
        None => starts_like_dicom(path),
    }
}

fn starts_like_dicom(path: &Path) -> bool {
    use std::io::Read as _;
    let mut head = [0u8; 132];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && is_dicom(&head)
}

/// Reads one input file into `size × size` 8-bit gray images: one for an image file,
/// one per frame for a DICOM file (told apart by content, not name). Image files are
/// decoded as the image-folder loader decodes them ([`crate::decode_image`]); DICOM
/// frames are mapped to 8 bits by `window` (see [`crate::decode_dicom_bytes`]) and
/// then cropped and resized the same way ([`fit_square`]). The error is the reason
/// alone; the caller names the file.
pub fn read_input(
    path: &Path,
    size: usize,
    window: DicomWindow,
) -> std::result::Result<Vec<Vec<u8>>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.is_dir() {
        return Err("a folder that could not be listed".into());
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} MiB is larger than cxr reads ({} MiB)",
            meta.len() >> 20,
            MAX_FILE_BYTES >> 20
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    read_input_bytes(&bytes, size, window)
}

/// [`read_input`] on a file's bytes held in memory.
pub fn read_input_bytes(
    bytes: &[u8],
    size: usize,
    window: DicomWindow,
) -> std::result::Result<Vec<Vec<u8>>, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    if !is_dicom(bytes) {
        return match decode_image_bytes(bytes, size) {
            Ok(img) => Ok(vec![img]),
            Err(e) => Err(e),
        };
    }
    let frames = decode_dicom_bytes(bytes, window)?;
    if frames.is_empty() {
        return Err("DICOM file without frames".into());
    }
    frames
        .into_iter()
        .map(|f| {
            let (w, h) = (
                u32::try_from(f.width).map_err(|_| "frame too wide".to_string())?,
                u32::try_from(f.height).map_err(|_| "frame too tall".to_string())?,
            );
            let gray = image::GrayImage::from_raw(w, h, f.pixels)
                .ok_or_else(|| format!("frame of {w}×{h} with the wrong number of pixels"))?;
            fit_square(gray, size)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_sorted_and_files_kept_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("b/c")).unwrap();
        for f in [
            "b/2.png",
            "b/1.JPG",
            "b/c/0.dcm",
            "b/.hidden.png",
            "b/notes.txt",
        ] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        let mut dicom = vec![0u8; 128];
        dicom.extend_from_slice(b"DICM");
        std::fs::write(d.join("b/IM0001"), &dicom).unwrap();
        std::fs::write(d.join("b/README"), b"not dicom").unwrap();
        let got = collect_inputs(&[d.join("z.txt"), d.join("b")]);
        let names: Vec<String> = got
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            ["z.txt", "b/1.JPG", "b/2.png", "b/IM0001", "b/c/0.dcm"]
        );
        assert!(collect_inputs(&[d.join("b/c/0.dcm")]).len() == 1);
    }

    #[test]
    fn unreadable_inputs_give_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_input(&dir.path().join("nope.png"), 28, DicomWindow::Auto);
        assert!(missing.unwrap_err().contains("cannot read"));
        let text = dir.path().join("a.png");
        std::fs::write(&text, b"hello").unwrap();
        assert!(read_input(&text, 28, DicomWindow::Auto).is_err());
        let empty = dir.path().join("e.png");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            read_input(&empty, 28, DicomWindow::Auto).unwrap_err(),
            "empty file"
        );
    }
}
