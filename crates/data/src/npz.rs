use std::io::Read;
use std::path::Path;

use crate::{DataError, Dataset, ImageSet, Result, sha256_file};

/// The parsed header of one `.npy` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NpyHeader {
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    /// Bytes before the data (magic + version + length field + header text).
    pub header_len: usize,
}

/// Parses an npy header (format versions 1, 2 and 3) from the start of `buf`.
pub(crate) fn parse_npy_header(buf: &[u8]) -> std::result::Result<NpyHeader, String> {
    if buf.len() < 10 || &buf[..6] != b"\x93NUMPY" {
        return Err("not an .npy array (bad magic)".into());
    }
    let major = buf[6];
    let (len, start) = match major {
        1 => (u16::from_le_bytes([buf[8], buf[9]]) as usize, 10usize),
        2 | 3 => {
            if buf.len() < 12 {
                return Err("truncated .npy header".into());
            }
            (
                u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= buf.len())
        .ok_or("truncated .npy header")?;
    let text = std::str::from_utf8(&buf[start..end]).map_err(|_| "header is not text")?;
    let field = |name: &str| -> std::result::Result<&str, String> {
        let key = format!("'{name}':");
        let at = text.find(&key).ok_or(format!("header lacks '{name}'"))?;
        Ok(text[at + key.len()..].trim_start())
    };
    let descr = {
        let rest = field("descr")?;
        let rest = rest.strip_prefix('\'').ok_or("bad 'descr'")?;
        rest[..rest.find('\'').ok_or("bad 'descr'")?].to_string()
    };
    let fortran_order = field("fortran_order")?.starts_with("True");
    let shape = {
        let rest = field("shape")?;
        let rest = rest.strip_prefix('(').ok_or("bad 'shape'")?;
        let inner = &rest[..rest.find(')').ok_or("bad 'shape'")?];
        inner
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<usize>()
                    .map_err(|_| format!("bad dimension `{s}` in 'shape'"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?
    };
    Ok(NpyHeader {
        descr,
        fortran_order,
        shape,
        header_len: end,
    })
}

/// One u8 array read from an npz archive: its shape and bytes.
struct U8Array {
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn read_u8_array<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    path: &Path,
    key: &str,
) -> Result<U8Array> {
    let err = |reason: String| DataError::Npz {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let mut entry = archive.by_name(&format!("{key}.npy")).map_err(|_| {
        err(
            "missing from the archive (a MedMNIST npz has train/val/test _images and _labels)"
                .into(),
        )
    })?;
    let size = usize::try_from(entry.size()).map_err(|_| err("entry too large".into()))?;
    // Deflate cannot expand data by more than ~1032:1, so a declared size beyond that
    // is a lie: refuse it before allocating anything.
    let max_plausible = entry
        .compressed_size()
        .saturating_mul(1032)
        .saturating_add(1024);
    if entry.size() > max_plausible {
        return Err(err(format!(
            "declares {} bytes from {} compressed bytes: corrupt archive",
            entry.size(),
            entry.compressed_size()
        )));
    }
    // The header is at most 64 KiB in practice; read a bounded prefix first.
    let mut head = vec![0u8; size.min(65_536 + 12)];
    entry
        .read_exact(&mut head)
        .map_err(|e| err(format!("cannot read the array header: {e}")))?;
    let h = parse_npy_header(&head).map_err(err)?;
    if h.descr != "|u1" && h.descr != "<u1" && h.descr != "u1" {
        return Err(err(format!(
            "dtype is `{}`, expected uint8 (`|u1`)",
            h.descr
        )));
    }
    if h.fortran_order {
        return Err(err("Fortran-ordered arrays are not supported".into()));
    }
    let count = h
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("shape {:?} overflows", h.shape)))?;
    let available = size - h.header_len.min(size);
    if count != available {
        return Err(err(format!(
            "shape {:?} needs {count} bytes but the entry holds {available}",
            h.shape
        )));
    }
    let mut data = Vec::with_capacity(count.min(1 << 26));
    data.extend_from_slice(&head[h.header_len.min(head.len())..]);
    let rest = count - data.len();
    entry
        .by_ref()
        .take(rest as u64)
        .read_to_end(&mut data)
        .map_err(|e| {
            err(format!(
                "cannot read the data (truncated or corrupt file?): {e}"
            ))
        })?;
    if data.len() != count {
        return Err(err(format!("truncated: {} of {count} bytes", data.len())));
    }
    // Reading to the end of the entry makes the zip reader verify its CRC-32, which
    // catches corrupted compressed data that still inflates.
    let mut extra = [0u8; 1];
    match entry.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => return Err(err("the entry holds more data than its shape".into())),
        Err(e) => return Err(err(format!("corrupt data (checksum failed?): {e}"))),
    }
    Ok(U8Array {
        shape: h.shape,
        data,
    })
}

fn read_split<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    path: &Path,
    split: &str,
) -> Result<ImageSet> {
    let ikey = format!("{split}_images");
    let lkey = format!("{split}_labels");
    let images = read_u8_array(archive, path, &ikey)?;
    let labels = read_u8_array(archive, path, &lkey)?;
    let bad = |key: &str, reason: String| DataError::Npz {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let (n, h, w) = match images.shape.as_slice() {
        [n, h, w] => (*n, *h, *w),
        [_, _, _, c] => {
            return Err(bad(
                &ikey,
                format!(
                    "shape {:?} has {c} channels; expected grayscale [N, S, S]",
                    images.shape
                ),
            ));
        }
        s => return Err(bad(&ikey, format!("shape {s:?}, expected [N, S, S]"))),
    };
    if h != w {
        return Err(bad(&ikey, format!("images are {h}×{w}, expected square")));
    }
    if h < 8 {
        return Err(bad(
            &ikey,
            format!("images are {h}×{w}, expected at least 8×8"),
        ));
    }
    if ![28, 64, 128, 224].contains(&h) {
        tracing::warn!(
            "{}: {ikey} are {h}×{h}, not a MedMNIST size (28/64/128/224)",
            path.display()
        );
    }
    if n == 0 {
        return Err(bad(&ikey, "the split is empty".into()));
    }
    let ln = match labels.shape.as_slice() {
        [n] | [n, 1] => *n,
        s => return Err(bad(&lkey, format!("shape {s:?}, expected [N, 1] or [N]"))),
    };
    if ln != n {
        return Err(bad(&lkey, format!("{ln} labels for {n} images")));
    }
    if let Some((i, v)) = labels.data.iter().enumerate().find(|(_, v)| **v > 1) {
        return Err(bad(
            &lkey,
            format!("label {v} at index {i}; expected 0 (normal) or 1 (pneumonia)"),
        ));
    }
    Ok(ImageSet {
        images: images.data,
        labels: labels.data,
        height: h,
        width: w,
    })
}

/// Reads a MedMNIST-layout `.npz` (zip of `.npy` arrays, stored or deflated):
/// `{train,val,test}_images` uint8 `[N, S, S]` and `{train,val,test}_labels` uint8
/// `[N, 1]` with values 0/1. Every key, dtype, shape and label is checked, and
/// declared sizes are checked against the archive before anything is allocated.
pub fn load_npz(path: &Path) -> Result<Dataset> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut archive =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| DataError::Npz {
            path: path.to_path_buf(),
            key: "-".into(),
            reason: format!("not a readable npz/zip archive (truncated or corrupt?): {e}"),
        })?;
    let train = read_split(&mut archive, path, "train")?;
    let val = read_split(&mut archive, path, "val")?;
    let test = read_split(&mut archive, path, "test")?;
    for (key, s) in [("val_images", &val), ("test_images", &test)] {
        if s.height != train.height {
            return Err(DataError::Npz {
                path: path.to_path_buf(),
                key: key.into(),
                reason: format!(
                    "{}×{} images, train has {}×{}",
                    s.height, s.width, train.height, train.width
                ),
            });
        }
    }
    let sha256 = sha256_file(path)?;
    tracing::info!(
        file = %path.display(),
        sha256 = %sha256,
        train = train.len(),
        val = val.len(),
        test = test.len(),
        size = train.height,
        "npz loaded"
    );
    Ok(Dataset {
        train,
        val,
        test,
        source: path.to_path_buf(),
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2_headers() {
        let text = "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 28, 28), }";
        let mut v1 = b"\x93NUMPY\x01\x00".to_vec();
        v1.extend((text.len() as u16).to_le_bytes());
        v1.extend(text.as_bytes());
        let h = parse_npy_header(&v1).unwrap();
        assert_eq!(h.shape, vec![3, 28, 28]);
        assert_eq!(h.descr, "|u1");
        assert!(!h.fortran_order);
        assert_eq!(h.header_len, 10 + text.len());

        let text = "{'descr': '<f4', 'fortran_order': True, 'shape': (5,), }";
        let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
        v2.extend((text.len() as u32).to_le_bytes());
        v2.extend(text.as_bytes());
        let h = parse_npy_header(&v2).unwrap();
        assert_eq!(h.shape, vec![5]);
        assert!(h.fortran_order);
    }

    #[test]
    fn rejects_garbage_headers() {
        assert!(parse_npy_header(b"hello").is_err());
        assert!(parse_npy_header(b"\x93NUMPY\x09\x00\x00\x00").is_err());
        let mut v1 = b"\x93NUMPY\x01\x00".to_vec();
        v1.extend(200u16.to_le_bytes());
        v1.extend(b"{'descr'");
        assert!(parse_npy_header(&v1).is_err());
        let text = "{'descr': '|u1', 'fortran_order': False, 'shape': (x, 2), }";
        let mut v1 = b"\x93NUMPY\x01\x00".to_vec();
        v1.extend((text.len() as u16).to_le_bytes());
        v1.extend(text.as_bytes());
        assert!(parse_npy_header(&v1).unwrap_err().contains("bad dimension"));
    }
}
