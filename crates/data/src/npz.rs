//! MedMNIST `.npz` reading: a zip of `.npy` arrays, stored or deflated.
//!
//! The `.npy` header is parsed here (candle's `read_npz` cannot read deflated
//! archives), and every declared size is checked against the zip entry before any
//! buffer is allocated.

use std::io::{Read, Seek};
use std::path::Path;

use crate::{DataError, Dataset, ImageSet, Result, sha256_file};

/// Image sizes MedMNIST v2 publishes; other square sizes (≥ [`MIN_SIZE`]) load with a warning.
const MEDMNIST_SIZES: [usize; 4] = [28, 64, 128, 224];
/// Smallest accepted image side.
const MIN_SIZE: usize = 8;
/// Deflate cannot expand data by more than 1032:1 (258-byte matches coded in 2 bits).
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The parsed header of one `.npy` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NpyHeader {
    /// Format major version (1, 2 or 3).
    pub version: u8,
    /// numpy dtype string, e.g. `|u1`.
    pub descr: String,
    /// Whether the data is column-major.
    pub fortran_order: bool,
    /// Array shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Bytes before the data (magic + version + length field + header text).
    pub header_len: usize,
}

/// Bytes of the fixed prelude (magic, version, header length) for a format version,
/// or `None` for an unsupported version.
fn prelude_len(major: u8) -> Option<usize> {
    match major {
        1 => Some(10),
        2 | 3 => Some(12),
        _ => None,
    }
}

/// From the prelude at the start of `buf`: (major version, total header length).
fn parse_prelude(buf: &[u8]) -> std::result::Result<(u8, usize), String> {
    if buf.len() < 8 || !buf.starts_with(b"\x93NUMPY") {
        return Err("not an .npy array (bad magic; expected \\x93NUMPY)".into());
    }
    let major = buf[6];
    let start = prelude_len(major).ok_or_else(|| {
        format!(
            "unsupported .npy format version {major}.{} (1, 2 and 3 are read)",
            buf[7]
        )
    })?;
    let text_len = match (major, buf.get(8..start)) {
        (1, Some(&[a, b])) => u16::from_le_bytes([a, b]) as usize,
        (_, Some(&[a, b, c, d])) => u32::from_le_bytes([a, b, c, d]) as usize,
        _ => return Err("truncated .npy header".into()),
    };
    Ok((major, start + text_len))
}

/// Parses an npy header (format versions 1, 2 and 3) from the start of `buf`, which
/// must hold the whole header.
pub(crate) fn parse_npy_header(buf: &[u8]) -> std::result::Result<NpyHeader, String> {
    let (version, header_len) = parse_prelude(buf)?;
    let start = prelude_len(version).unwrap_or(10);
    let raw = buf.get(start..header_len).ok_or("truncated .npy header")?;
    // Versions 1 and 2 are latin-1, 3 is utf-8; a valid MedMNIST header is ASCII.
    let text = std::str::from_utf8(raw).map_err(|_| "the .npy header is not text")?;
    let mut p = DictParser { s: text, pos: 0 };
    let entries = p.dict()?;
    let mut descr = None;
    let mut fortran_order = None;
    let mut shape = None;
    for (key, value) in entries {
        match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr = Some(s),
            ("descr", Value::List) => {
                return Err("'descr' is a structured dtype; expected a plain dtype string".into());
            }
            ("fortran_order", Value::Bool(b)) => fortran_order = Some(b),
            ("shape", Value::Tuple(t)) => shape = Some(t),
            ("descr" | "fortran_order" | "shape", v) => {
                return Err(format!("header field '{key}' has the wrong type ({v:?})"));
            }
            _ => {} // numpy ignores nothing else, but extra keys do not hurt reading
        }
    }
    Ok(NpyHeader {
        version,
        descr: descr.ok_or("the .npy header lacks 'descr'")?,
        fortran_order: fortran_order.ok_or("the .npy header lacks 'fortran_order'")?,
        shape: shape.ok_or("the .npy header lacks 'shape'")?,
        header_len,
    })
}

/// A value in an npy header dict.
#[derive(Debug)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
    /// A list (structured dtype); its content is not kept.
    List,
}

/// A parser for the Python dict literal of an npy header.
struct DictParser<'a> {
    s: &'a str,
    pos: usize,
}

impl DictParser<'_> {
    fn rest(&self) -> &str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.ws();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "malformed .npy header: expected `{c}` at byte {} of {:?}",
                self.pos, self.s
            ))
        }
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        self.ws();
        let quote = match self.rest().chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => {
                return Err(format!(
                    "malformed .npy header: expected a quoted string at byte {} of {:?}",
                    self.pos, self.s
                ));
            }
        };
        let body = &self.rest()[1..];
        let end = body
            .find(quote)
            .ok_or("malformed .npy header: unterminated string")?;
        let out = body[..end].to_string();
        self.pos += 1 + end + 1;
        Ok(out)
    }

    fn value(&mut self) -> std::result::Result<Value, String> {
        self.ws();
        let r = self.rest();
        if r.starts_with('\'') || r.starts_with('"') {
            return self.string().map(Value::Str);
        }
        for (word, b) in [("True", true), ("False", false)] {
            if r.starts_with(word) {
                self.pos += word.len();
                return Ok(Value::Bool(b));
            }
        }
        if r.starts_with('[') {
            // structured dtype: skip to the matching bracket
            let mut depth = 0usize;
            for (i, c) in r.char_indices() {
                match c {
                    '[' => depth += 1,
                    ']' => {
                        depth -= 1;
                        if depth == 0 {
                            self.pos += i + 1;
                            return Ok(Value::List);
                        }
                    }
                    _ => {}
                }
            }
            return Err("malformed .npy header: unterminated list".into());
        }
        if r.starts_with('(') {
            self.pos += 1;
            let mut dims = Vec::new();
            loop {
                if self.eat(')') {
                    return Ok(Value::Tuple(dims));
                }
                self.ws();
                let r = self.rest();
                let len = r
                    .find(|c: char| !c.is_ascii_alphanumeric())
                    .unwrap_or(r.len());
                let tok = &r[..len];
                // Python 2 wrote long integers as `3L`.
                let digits = tok.strip_suffix('L').unwrap_or(tok);
                let d = digits
                    .parse::<u64>()
                    .ok()
                    .and_then(|d| usize::try_from(d).ok())
                    .ok_or_else(|| format!("bad dimension `{tok}` in 'shape'"))?;
                dims.push(d);
                self.pos += len;
                if !self.eat(',') {
                    self.expect(')')?;
                    return Ok(Value::Tuple(dims));
                }
            }
        }
        Err(format!(
            "malformed .npy header: unexpected value at byte {} of {:?}",
            self.pos, self.s
        ))
    }

    fn dict(&mut self) -> std::result::Result<Vec<(String, Value)>, String> {
        self.expect('{')?;
        let mut out = Vec::new();
        loop {
            if self.eat('}') {
                break;
            }
            let key = self.string()?;
            self.expect(':')?;
            let value = self.value()?;
            out.push((key, value));
            if !self.eat(',') {
                self.expect('}')?;
                break;
            }
        }
        Ok(out)
    }
}

/// One u8 array read from an npz archive: its shape and bytes.
struct U8Array {
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// Reads `key.npy` from the archive as a C-ordered uint8 array. `check_shape` vets the
/// declared shape before the data is read; every declared size is checked against
/// the entry (and the entry against the file) before anything is allocated.
fn read_u8_array<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    path: &Path,
    file_len: u64,
    key: &str,
    check_shape: impl Fn(&[usize]) -> std::result::Result<(), String>,
) -> Result<U8Array> {
    let err = |reason: String| DataError::Npz {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let name = format!("{key}.npy");
    let present: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok())
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect();
    let mut entry = match archive.by_name(&name) {
        Ok(e) => e,
        Err(zip::result::ZipError::FileNotFound) => {
            let mut present = present;
            present.sort();
            return Err(err(format!(
                "missing from the archive (a MedMNIST npz holds train/val/test _images and \
                 _labels; this one holds: {})",
                if present.is_empty() {
                    "nothing".to_string()
                } else {
                    present.join(", ")
                }
            )));
        }
        Err(e) => return Err(err(format!("cannot open the entry: {e}"))),
    };
    let method = entry.compression();
    if !matches!(
        method,
        zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated
    ) {
        return Err(err(format!(
            "compression {method:?} is not supported (stored or deflate only)"
        )));
    }
    let (size, csize) = (entry.size(), entry.compressed_size());
    if csize > file_len {
        return Err(err(format!(
            "the entry declares {csize} compressed bytes but the file holds only {file_len}: \
             truncated or corrupt file"
        )));
    }
    let max_plausible = match method {
        zip::CompressionMethod::Stored => csize,
        _ => csize.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1024),
    };
    if size > max_plausible {
        return Err(err(format!(
            "the entry declares {size} bytes from {csize} stored bytes: corrupt archive"
        )));
    }
    let size =
        usize::try_from(size).map_err(|_| err(format!("entry of {size} bytes too large")))?;

    // Header: the fixed prelude, then the text whose length it gives.
    let mut head = vec![0u8; size.min(12)];
    entry.read_exact(&mut head).map_err(|e| {
        err(format!(
            "cannot read the .npy header (truncated or corrupt?): {e}"
        ))
    })?;
    let (_, header_len) = parse_prelude(&head).map_err(err)?;
    if header_len > size {
        return Err(err(format!(
            "the .npy header claims {header_len} bytes but the entry holds {size}"
        )));
    }
    if header_len > head.len() {
        let have = head.len();
        head.resize(header_len, 0);
        entry.read_exact(&mut head[have..]).map_err(|e| {
            err(format!(
                "cannot read the .npy header (truncated or corrupt?): {e}"
            ))
        })?;
    }
    let h = parse_npy_header(&head).map_err(err)?;
    if !matches!(
        h.descr.as_str(),
        "|u1" | "u1" | "<u1" | ">u1" | "=u1" | "B" | "|B"
    ) {
        return Err(err(format!(
            "dtype is `{}`, expected uint8 (`|u1`)",
            h.descr
        )));
    }
    if h.fortran_order {
        return Err(err(
            "fortran_order is True; only C-ordered (row-major) arrays are read".into(),
        ));
    }
    check_shape(&h.shape).map_err(|r| err(format!("shape {:?}: {r}", h.shape)))?;
    let count = h
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("shape {:?} overflows", h.shape)))?;
    let available = size - header_len;
    if count != available {
        return Err(err(format!(
            "shape {:?} needs {count} bytes but the entry holds {available} data bytes",
            h.shape
        )));
    }
    // `count` is now bounded by the entry, which is bounded by the file; still grow the
    // buffer with the data actually read rather than trusting the header.
    let mut data = Vec::with_capacity(count.min(1 << 26));
    // (a tiny v1 header may leave a few data bytes in `head`)
    data.extend_from_slice(head.get(header_len..).unwrap_or(&[]));
    let rest = count.saturating_sub(data.len());
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
        return Err(err(format!(
            "truncated: {} of {count} data bytes",
            data.len()
        )));
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

fn check_image_shape(shape: &[usize]) -> std::result::Result<(), String> {
    match *shape {
        [n, h, w] => {
            if n == 0 {
                Err("the split is empty (N = 0)".into())
            } else if h != w {
                Err(format!("images are {h}×{w}, expected square"))
            } else if h < MIN_SIZE {
                Err(format!(
                    "images are {h}×{w}, expected at least {MIN_SIZE}×{MIN_SIZE}"
                ))
            } else {
                Ok(())
            }
        }
        [_, _, _, c] => Err(format!(
            "{c} channel(s) in the last axis; expected grayscale images [N, S, S] \
             (RGB MedMNIST sets are not supported)"
        )),
        _ => Err("expected grayscale images [N, S, S]".into()),
    }
}

fn check_label_shape(shape: &[usize]) -> std::result::Result<(), String> {
    match *shape {
        [0] | [0, 1] => Err("the split is empty (N = 0)".into()),
        [_] | [_, 1] => Ok(()),
        [_, k] => Err(format!(
            "{k} labels per image; expected one binary label ([N, 1] or [N])"
        )),
        _ => Err("expected [N, 1] or [N]".into()),
    }
}

fn read_split<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    path: &Path,
    file_len: u64,
    split: &str,
) -> Result<ImageSet> {
    let ikey = format!("{split}_images");
    let lkey = format!("{split}_labels");
    let images = read_u8_array(archive, path, file_len, &ikey, check_image_shape)?;
    let n = images.shape.first().copied().unwrap_or(0);
    let expect_n = |shape: &[usize]| -> std::result::Result<(), String> {
        check_label_shape(shape)?;
        match shape.first() {
            Some(&ln) if ln != n => Err(format!("{ln} labels for {n} images in {ikey}")),
            _ => Ok(()),
        }
    };
    let labels = read_u8_array(archive, path, file_len, &lkey, expect_n)?;
    let (h, w) = match *images.shape.as_slice() {
        [_, h, w] => (h, w),
        _ => (0, 0), // unreachable: check_image_shape accepted only [N, S, S]
    };
    if !MEDMNIST_SIZES.contains(&h) {
        tracing::warn!(
            "{}: {ikey} are {h}×{w}, not a MedMNIST size (28/64/128/224); loading anyway",
            path.display()
        );
    }
    if let Some((i, v)) = labels.data.iter().enumerate().find(|(_, v)| **v > 1) {
        return Err(DataError::Npz {
            path: path.to_path_buf(),
            key: lkey,
            reason: format!("label {v} at index {i}; expected 0 (normal) or 1 (pneumonia)"),
        });
    }
    Ok(ImageSet {
        images: images.data,
        labels: labels.data,
        height: h,
        width: w,
    })
}

/// Reads a MedMNIST-layout `.npz` (a zip of `.npy` arrays, stored or deflated).
///
/// Required arrays: `{train,val,test}_images`, uint8 `[N, S, S]` with `N > 0` and
/// `S` one of 28/64/128/224 (any other square `S ≥ 8` loads with a warning), and
/// `{train,val,test}_labels`, uint8 `[N, 1]` or `[N]` with values 0 (normal) or 1
/// (pneumonia). All three splits must share `S`. Every key, dtype, shape, order and
/// label is checked; declared sizes are checked against the zip entry (and the entry
/// against the file) before anything is allocated. The file's sha256 is logged and
/// returned in [`Dataset::sha256`]. Other arrays in the archive are ignored.
pub fn load_npz(path: &Path) -> Result<Dataset> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    let (train, val, test) = read_splits(std::io::BufReader::new(file), path, file_len)?;
    let sha256 = sha256_file(path)?;
    finish(path, train, val, test, sha256)
}

/// [`load_npz`] on the bytes of an npz file held in memory; `name` is used in error
/// messages and as [`Dataset::source`]. Every check of [`load_npz`] applies, with the
/// buffer's length standing for the file size.
pub fn load_npz_bytes(bytes: &[u8], name: &Path) -> Result<Dataset> {
    use sha2::Digest as _;
    let (train, val, test) = read_splits(std::io::Cursor::new(bytes), name, bytes.len() as u64)?;
    let sha256 = hex::encode(sha2::Sha256::digest(bytes));
    finish(name, train, val, test, sha256)
}

/// The three splits of an npz archive read from `reader` (`file_len` bytes long).
fn read_splits<R: Read + Seek>(
    reader: R,
    path: &Path,
    file_len: u64,
) -> Result<(ImageSet, ImageSet, ImageSet)> {
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| DataError::Npz {
        path: path.to_path_buf(),
        key: String::new(),
        reason: format!("not a readable npz/zip archive (truncated or corrupt?): {e}"),
    })?;
    let train = read_split(&mut archive, path, file_len, "train")?;
    let val = read_split(&mut archive, path, file_len, "val")?;
    let test = read_split(&mut archive, path, file_len, "test")?;
    Ok((train, val, test))
}

/// Checks that the splits share one image size and assembles the [`Dataset`].
fn finish(
    path: &Path,
    train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    sha256: String,
) -> Result<Dataset> {
    for (key, s) in [("val_images", &val), ("test_images", &test)] {
        if s.height != train.height || s.width != train.width {
            return Err(DataError::Npz {
                path: path.to_path_buf(),
                key: key.into(),
                reason: format!(
                    "images are {}×{} but train_images are {}×{}",
                    s.height, s.width, train.height, train.width
                ),
            });
        }
    }
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
        files: Default::default(),
        patients: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_header(major: u8, text: &str) -> Vec<u8> {
        let mut v = vec![0x93, b'N', b'U', b'M', b'P', b'Y', major, 0];
        if major == 1 {
            v.extend((text.len() as u16).to_le_bytes());
        } else {
            v.extend((text.len() as u32).to_le_bytes());
        }
        v.extend(text.as_bytes());
        v
    }

    #[test]
    fn parses_v1_v2_and_v3_headers() {
        let text = "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 28, 28), }          \n";
        let buf = npy_header(1, text);
        let h = parse_npy_header(&buf).unwrap();
        assert_eq!(h.version, 1);
        assert_eq!(h.shape, vec![3, 28, 28]);
        assert_eq!(h.descr, "|u1");
        assert!(!h.fortran_order);
        assert_eq!(h.header_len, 10 + text.len());

        let text = "{'descr': '<f4', 'fortran_order': True, 'shape': (5,), }";
        let h = parse_npy_header(&npy_header(2, text)).unwrap();
        assert_eq!((h.version, h.header_len), (2, 12 + text.len()));
        assert_eq!(h.shape, vec![5]);
        assert!(h.fortran_order);

        // v3 (utf-8), double quotes, no trailing comma, key order changed, scalar shape
        let text = "{\"shape\": (), \"fortran_order\": False, \"descr\": \"|u1\"}";
        let h = parse_npy_header(&npy_header(3, text)).unwrap();
        assert_eq!(h.shape, Vec::<usize>::new());
        assert_eq!(h.descr, "|u1");

        // Python 2 long integers
        let text = "{'descr': '|u1', 'fortran_order': False, 'shape': (2L, 3L), }";
        assert_eq!(
            parse_npy_header(&npy_header(1, text)).unwrap().shape,
            vec![2, 3]
        );
    }

    #[test]
    fn rejects_garbage_headers() {
        let e = |buf: &[u8]| parse_npy_header(buf).unwrap_err();
        assert!(e(b"hello").contains("bad magic"));
        assert!(e(b"\x93NUMPY\x09\x00\x00\x00").contains("version 9"));
        assert!(e(b"\x93NUMPY\x02\x00\x00").contains("truncated"));
        let mut v1 = b"\x93NUMPY\x01\x00".to_vec();
        v1.extend(200u16.to_le_bytes());
        v1.extend(b"{'descr'");
        assert!(e(&v1).contains("truncated"));
        let bad = [
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (x, 2), }",
                "bad dimension",
            ),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
                "bad dimension",
            ),
            ("{'descr': '|u1', 'shape': (2,), }", "lacks 'fortran_order'"),
            ("{'fortran_order': False, 'shape': (2,), }", "lacks 'descr'"),
            ("{'descr': '|u1', 'fortran_order': False}", "lacks 'shape'"),
            (
                "{'descr': '|u1', 'fortran_order': Flase, 'shape': (2,), }",
                "unexpected value",
            ),
            (
                "{'descr': '|u1', 'fortran_order': 0, 'shape': (2,), }",
                "unexpected value",
            ),
            (
                "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }",
                "structured",
            ),
            (
                "{'descr': '|u1', 'fortran_order': False, 'shape': 2, }",
                "unexpected value",
            ),
            (
                "{'descr': (2,), 'fortran_order': False, 'shape': (2,), }",
                "wrong type",
            ),
            ("{'descr: '|u1'}", "expected `:`"),
            ("'descr': '|u1'", "expected `{`"),
            ("{'descr': '|u1', 'shape': (2, 3", "expected `)`"),
        ];
        for (text, needle) in bad {
            let msg = e(&npy_header(1, text));
            assert!(msg.contains(needle), "{text}: `{needle}` not in `{msg}`");
        }
    }

    #[test]
    fn shape_checks() {
        assert!(check_image_shape(&[3, 28, 28]).is_ok());
        assert!(check_image_shape(&[3, 9, 9]).is_ok());
        assert!(
            check_image_shape(&[0, 28, 28])
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            check_image_shape(&[3, 7, 7])
                .unwrap_err()
                .contains("at least 8")
        );
        assert!(
            check_image_shape(&[3, 28, 27])
                .unwrap_err()
                .contains("square")
        );
        assert!(
            check_image_shape(&[3, 28, 28, 3])
                .unwrap_err()
                .contains("expected grayscale")
        );
        assert!(check_label_shape(&[3]).is_ok());
        assert!(check_label_shape(&[3, 1]).is_ok());
        assert!(check_label_shape(&[0, 1]).unwrap_err().contains("empty"));
        assert!(
            check_label_shape(&[3, 14])
                .unwrap_err()
                .contains("14 labels")
        );
    }
}
