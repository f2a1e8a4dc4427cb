//! Integration tests for cxr-data: the real PneumoniaMNIST file, and every bad input
//! named in the foundation issue, each asserting the error variant and that the
//! message names the file.

mod bad_inputs;
mod folder;

use std::io::Write;
use std::path::{Path, PathBuf};

use cxr_data::DataError;

/// One array for [`write_npz`]: name, numpy dtype string, shape, raw bytes.
pub struct Array<'a> {
    /// Array name without `.npy`.
    pub name: &'a str,
    /// numpy dtype string, e.g. `|u1`.
    pub descr: &'a str,
    /// Declared shape.
    pub shape: Vec<usize>,
    /// Raw bytes.
    pub data: Vec<u8>,
}

/// npy bytes (format 1.0) for `a` (the declared shape need not match the data).
pub fn npy(a: &Array<'_>) -> Vec<u8> {
    let dims: Vec<String> = a.shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        a.descr
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(&a.data);
    out
}

/// Writes an npz with `arrays`, deflated when `deflate`.
pub fn write_npz(path: &Path, arrays: &[Array<'_>], deflate: bool) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for a in arrays {
        zip.start_file(format!("{}.npy", a.name), opts).unwrap();
        zip.write_all(&npy(a)).unwrap();
    }
    zip.finish().unwrap();
}

/// A valid MedMNIST-layout set of arrays: `n` images per split of `size × size`.
pub fn valid_arrays(n: usize, size: usize) -> Vec<(String, &'static str, Vec<usize>, Vec<u8>)> {
    let mut out = Vec::new();
    for split in ["train", "val", "test"] {
        out.push((
            format!("{split}_images"),
            "|u1",
            vec![n, size, size],
            (0..n * size * size).map(|i| (i % 256) as u8).collect(),
        ));
        out.push((
            format!("{split}_labels"),
            "|u1",
            vec![n, 1],
            (0..n).map(|i| (i % 2) as u8).collect(),
        ));
    }
    out
}

/// Writes [`valid_arrays`] after `edit` has changed them.
pub fn write_edited(
    path: &Path,
    edit: impl FnOnce(&mut Vec<(String, &'static str, Vec<usize>, Vec<u8>)>),
) {
    let mut arrays = valid_arrays(4, 28);
    edit(&mut arrays);
    let arrays: Vec<Array<'_>> = arrays
        .iter()
        .map(|(n, d, s, b)| Array {
            name: n,
            descr: d,
            shape: s.clone(),
            data: b.clone(),
        })
        .collect();
    write_npz(path, &arrays, true);
}

/// Asserts `result` is an error matching `pred` whose message contains every needle.
pub fn check<T>(result: cxr_data::Result<T>, pred: impl Fn(&DataError) -> bool, needles: &[&str]) {
    match result {
        Err(e) => {
            assert!(pred(&e), "unexpected error variant: {e:?}");
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "`{n}` not in: {msg}");
            }
        }
        Ok(_) => panic!("expected an error matching {needles:?}, got Ok"),
    }
}

/// `pneumoniamnist.npz` from `CXR_DATA_DIR` or `../shared/data`; `None` outside CI when absent.
pub fn real_npz() -> Option<PathBuf> {
    let dir = std::env::var_os("CXR_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    let p = dir.join("pneumoniamnist.npz");
    if p.is_file() {
        Some(p)
    } else if std::env::var_os("CI").is_some() {
        panic!("{} not found (set CXR_DATA_DIR)", p.display());
    } else {
        eprintln!("skipped: {} not found (set CXR_DATA_DIR)", p.display());
        None
    }
}

#[test]
fn real_pneumoniamnist_loads_with_official_split_sizes() {
    let Some(p) = real_npz() else { return };
    let d = cxr_data::load_npz(&p).unwrap();
    assert_eq!((d.train.len(), d.val.len(), d.test.len()), (4708, 524, 624));
    assert_eq!(d.train.class_counts(), [1214, 3494]);
    assert_eq!(d.val.class_counts(), [135, 389]);
    assert_eq!(d.test.class_counts(), [234, 390]);
    assert_eq!((d.train.height, d.train.width), (28, 28));
    assert_eq!(d.sha256.len(), 64);
}

#[test]
fn stored_and_deflated_npz_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for deflate in [false, true] {
        let p = dir.path().join(format!("ok-{deflate}.npz"));
        let arrays = valid_arrays(3, 64);
        let arrays: Vec<Array<'_>> = arrays
            .iter()
            .map(|(n, d, s, b)| Array {
                name: n,
                descr: d,
                shape: s.clone(),
                data: b.clone(),
            })
            .collect();
        write_npz(&p, &arrays, deflate);
        let d = cxr_data::load_npz(&p).unwrap();
        assert_eq!(d.test.len(), 3);
        assert_eq!(d.test.height, 64);
        assert_eq!(d.test.images, arrays[4].data);
        assert_eq!(d.train.labels, vec![0, 1, 0]);
    }
}

#[test]
fn locator_order_and_offline_download_failure() {
    let dir = tempfile::tempdir().unwrap();
    let env_dir = dir.path().join("env");
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&env_dir).unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    std::fs::write(data_dir.join("x.npz"), b"d").unwrap();
    let loc = cxr_data::DataLocator {
        env_dir: Some(env_dir.clone()),
        default_dir: data_dir.clone(),
        allow_download: false,
        ..Default::default()
    };
    assert_eq!(loc.locate("x.npz").unwrap(), data_dir.join("x.npz"));
    std::fs::write(env_dir.join("x.npz"), b"e").unwrap();
    assert_eq!(loc.locate("x.npz").unwrap(), env_dir.join("x.npz"));
    // explicit folder and explicit missing file
    let explicit = cxr_data::DataLocator {
        explicit: Some(env_dir.clone()),
        ..loc.clone()
    };
    assert_eq!(explicit.locate("x.npz").unwrap(), env_dir.join("x.npz"));
    let missing = cxr_data::DataLocator {
        explicit: Some(dir.path().join("nope.npz")),
        ..loc.clone()
    };
    check(
        missing.locate("x.npz"),
        |e| matches!(e, DataError::NotFound { .. }),
        &["nope.npz", "--data"],
    );
    // nothing anywhere, downloads off: the error lists what was tried and how to supply it
    check(
        loc.locate("y.npz"),
        |e| matches!(e, DataError::NotFound { .. }),
        &["y.npz", "CXR_DATA_DIR", "--data"],
    );
    // download from an address that refuses connections: clean error, no partial file left
    let dl = cxr_data::DataLocator {
        allow_download: true,
        url: "http://127.0.0.1:9/pneumoniamnist.npz".into(),
        ..loc
    };
    check(
        dl.locate("z.npz"),
        |e| matches!(e, DataError::NotFound { .. }),
        &["download failed", "--data"],
    );
    let leftovers: Vec<_> = std::fs::read_dir(&data_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("x.npz")]);
}
