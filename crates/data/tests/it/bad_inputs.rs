//! Bad npz files: each gives a typed error naming the file (and the key).

use cxr_data::{DataError, load_npz};

use crate::{Arr, check, npy, real_npz, valid_arrays, write_edited, write_npz, write_zip};

/// An `Npz` error for `key` (empty: the archive itself).
fn npz_key(key: &'static str) -> impl Fn(&DataError) -> bool {
    move |e| matches!(e, DataError::Npz { key: k, .. } if k == key)
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("absent.npz");
    check(
        load_npz(&p),
        |e| matches!(e, DataError::Io { path, source } if path == &p && source.kind() == std::io::ErrorKind::NotFound),
        &["absent.npz"],
    );
}

#[test]
fn truncated_npz() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("half.npz");
    let src = match real_npz() {
        Some(real) => std::fs::read(real).unwrap(),
        None => {
            let full = dir.path().join("full.npz");
            write_npz(&full, &valid_arrays(50, 28), true);
            std::fs::read(full).unwrap()
        }
    };
    for cut in [src.len() / 2, src.len() - 10, 100, 0] {
        std::fs::write(&p, &src[..cut]).unwrap();
        check(
            load_npz(&p),
            npz_key(""),
            &["half.npz", "truncated or corrupt"],
        );
    }
}

#[test]
fn corrupted_compressed_data() {
    // the central directory intact but the deflated bytes of an array garbled
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.npz");
    write_npz(&full, &valid_arrays(50, 28), true);
    let mut bytes = std::fs::read(&full).unwrap();
    let mid = bytes.len() / 4;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let p = dir.path().join("garbled.npz");
    std::fs::write(&p, &bytes).unwrap();
    check(
        load_npz(&p),
        |e| matches!(e, DataError::Npz { .. }),
        &["garbled.npz"],
    );
}

#[test]
fn stored_entry_with_a_flipped_byte_fails_its_crc() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("crc.npz");
    // train_images filled with 0x11 so the flipped byte is surely inside its data
    let mut arrays = valid_arrays(40, 28);
    arrays[0].data = vec![0x11; 40 * 28 * 28];
    write_npz(&p, &arrays, false);
    let mut bytes = std::fs::read(&p).unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w.iter().all(|&b| b == 0x11))
        .unwrap()
        + 1000;
    bytes[at] ^= 0xff;
    std::fs::write(&p, &bytes).unwrap();
    check(
        load_npz(&p),
        npz_key("train_images"),
        &["crc.npz", "train_images", "corrupt"],
    );
}

#[test]
fn not_a_zip_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("text.npz");
    std::fs::write(&p, "hello").unwrap();
    check(load_npz(&p), npz_key(""), &["text.npz", "npz/zip"]);
}

#[test]
fn wrong_key_names() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("keys.npz");
    write_edited(&p, |a| a[2].name = "valid_images".into());
    check(
        load_npz(&p),
        npz_key("val_images"),
        &["keys.npz", "val_images", "missing", "valid_images"],
    );
    // an npz of other arrays entirely (e.g. from another tool)
    let p = dir.path().join("other.npz");
    write_npz(
        &p,
        &[Arr {
            name: "x_train".into(),
            descr: "|u1".into(),
            fortran: false,
            shape: vec![1],
            data: vec![0],
        }],
        false,
    );
    check(
        load_npz(&p),
        npz_key("train_images"),
        &["other.npz", "x_train"],
    );
}

#[test]
fn wrong_dtype_in_stored_and_deflated_archives() {
    let dir = tempfile::tempdir().unwrap();
    for deflate in [false, true] {
        let p = dir.path().join(format!("dtype-{deflate}.npz"));
        let mut arrays = valid_arrays(4, 28);
        arrays[0].descr = "<f4".into();
        arrays[0].data = vec![0u8; 4 * 28 * 28 * 4];
        write_npz(&p, &arrays, deflate);
        check(
            load_npz(&p),
            npz_key("train_images"),
            &[
                &format!("dtype-{deflate}.npz"),
                "train_images",
                "<f4",
                "uint8",
            ],
        );
    }
    let p = dir.path().join("labels64.npz");
    write_edited(&p, |a| {
        a[5].descr = "<i8".into();
        a[5].data = vec![0u8; 4 * 8];
    });
    check(
        load_npz(&p),
        npz_key("test_labels"),
        &["labels64.npz", "test_labels", "<i8"],
    );
}

#[test]
fn fortran_order_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fortran.npz");
    write_edited(&p, |a| a[4].fortran = true);
    check(
        load_npz(&p),
        npz_key("test_images"),
        &["fortran.npz", "test_images", "fortran_order"],
    );
}

#[test]
fn label_outside_zero_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("labels.npz");
    write_edited(&p, |a| {
        a[5].data[2] = 7;
        a[5].data[3] = 9;
    });
    check(
        load_npz(&p),
        npz_key("test_labels"),
        &["labels.npz", "test_labels", "label 7 at index 2"],
    );
}

#[test]
fn empty_split() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.npz");
    write_edited(&p, |a| {
        a[2].shape = vec![0, 28, 28];
        a[2].data.clear();
        a[3].shape = vec![0, 1];
        a[3].data.clear();
    });
    check(
        load_npz(&p),
        npz_key("val_images"),
        &["empty.npz", "val_images", "empty"],
    );
    // images present but no labels
    let p = dir.path().join("nolabels.npz");
    write_edited(&p, |a| {
        a[3].shape = vec![0];
        a[3].data.clear();
    });
    check(
        load_npz(&p),
        npz_key("val_labels"),
        &["nolabels.npz", "val_labels"],
    );
}

#[test]
fn rgb_images_are_rejected_as_not_grayscale() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rgb.npz");
    write_edited(&p, |a| {
        a[0].shape = vec![4, 28, 28, 3];
        a[0].data = vec![0u8; 4 * 28 * 28 * 3];
    });
    check(
        load_npz(&p),
        npz_key("train_images"),
        &["rgb.npz", "train_images", "expected grayscale"],
    );
}

/// An edit of the valid arrays.
type Edit = Box<dyn Fn(&mut Vec<Arr>)>;

#[test]
fn bad_image_and_label_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, &'static str, Edit, &str)> = vec![
        (
            "count.npz",
            "train_labels",
            Box::new(|a| {
                a[1].shape = vec![3, 1];
                a[1].data = vec![0, 1, 0];
            }),
            "3 labels for 4 images",
        ),
        (
            "nonsquare.npz",
            "train_images",
            Box::new(|a| {
                a[0].shape = vec![4, 28, 14];
                a[0].data.truncate(4 * 28 * 14);
            }),
            "square",
        ),
        (
            "tiny.npz",
            "val_images",
            Box::new(|a| {
                a[2].shape = vec![4, 4, 4];
                a[2].data.truncate(64);
            }),
            "at least 8",
        ),
        (
            "flat.npz",
            "train_images",
            Box::new(|a| a[0].shape = vec![4 * 28 * 28]),
            "expected grayscale images [N, S, S]",
        ),
        (
            "multilabel.npz",
            "train_labels",
            Box::new(|a| {
                a[1].shape = vec![4, 2];
                a[1].data = vec![0; 8];
            }),
            "2 labels per image",
        ),
        (
            "short.npz",
            "test_images",
            Box::new(|a| a[4].data.truncate(3 * 28 * 28)),
            "needs 3136 bytes but the entry holds 2352",
        ),
        (
            "long.npz",
            "test_labels",
            Box::new(|a| a[5].data.push(1)),
            "needs 4 bytes but the entry holds 5",
        ),
        (
            "sizes.npz",
            "test_images",
            Box::new(|a| {
                a[4].shape = vec![4, 64, 64];
                a[4].data = vec![0; 4 * 64 * 64];
            }),
            "64×64",
        ),
    ];
    for (file, key, edit, needle) in cases {
        let p = dir.path().join(file);
        write_edited(&p, edit);
        check(load_npz(&p), npz_key(key), &[file, key, needle]);
    }
}

#[test]
fn header_claiming_a_huge_shape_is_rejected_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.npz");
    write_edited(&p, |a| a[0].shape = vec![1_000_000_000_000, 28, 28]);
    check(
        load_npz(&p),
        npz_key("train_images"),
        &["huge.npz", "train_images", "needs 784000000000000 bytes"],
    );
    let p = dir.path().join("overflow.npz");
    write_edited(&p, |a| a[0].shape = vec![usize::MAX, 28, 28]);
    check(
        load_npz(&p),
        npz_key("train_images"),
        &["overflow.npz", "overflows"],
    );
    // labels claiming more entries than the file could hold
    let p = dir.path().join("hugelabels.npz");
    write_edited(&p, |a| a[1].shape = vec![1 << 40]);
    check(
        load_npz(&p),
        npz_key("train_labels"),
        &["hugelabels.npz", "train_labels"],
    );
}

#[test]
fn garbage_npy_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut good: Vec<(String, Vec<u8>)> = valid_arrays(4, 28)
        .iter()
        .map(|a| (format!("{}.npy", a.name), npy(a)))
        .collect();
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("magic.npz", b"PK not an npy".to_vec(), "bad magic"),
        (
            "version.npz",
            b"\x93NUMPY\x07\x00\x10\x00".to_vec(),
            "version 7",
        ),
        (
            "header.npz",
            {
                let mut v = b"\x93NUMPY\x01\x00".to_vec();
                v.extend(100u16.to_le_bytes());
                v.extend(b"{'descr': '|u1'");
                v
            },
            "header claims 110 bytes",
        ),
        (
            "dict.npz",
            {
                let text = "{'descr': '|u1', 'fortran_order': False, 'shape': [4, 28, 28], }\n";
                let mut v = b"\x93NUMPY\x01\x00".to_vec();
                v.extend((text.len() as u16).to_le_bytes());
                v.extend(text.as_bytes());
                v
            },
            "wrong type",
        ),
    ];
    for (file, bytes, needle) in cases {
        good[0].1 = bytes;
        let p = dir.path().join(file);
        write_zip(&p, &good, true);
        check(load_npz(&p), npz_key("train_images"), &[file, needle]);
    }
}

/// Patches the central-directory record of `name` in a zip: `(offset in record, u32)`.
fn patch_central_dir(bytes: &mut [u8], name: &str, patches: &[(usize, u32)]) {
    let sig = [0x50, 0x4b, 0x01, 0x02];
    let at = (0..bytes.len() - 46)
        .find(|&i| {
            bytes[i..i + 4] == sig && {
                let n = u16::from_le_bytes([bytes[i + 28], bytes[i + 29]]) as usize;
                bytes.get(i + 46..i + 46 + n) == Some(name.as_bytes())
            }
        })
        .unwrap();
    for &(off, v) in patches {
        bytes[at + off..at + off + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// `(offset in a central-directory record, new u32)` pairs.
type Patches = &'static [(usize, u32)];

#[test]
fn zip_entries_declaring_impossible_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, bool, Patches, &str); 3] = [
        // stored: uncompressed size (offset 24) beyond the stored bytes
        ("stored.npz", false, &[(24, 0xFFFF_FFF0)], "corrupt archive"),
        // deflated: uncompressed size beyond deflate's 1032:1 limit
        ("bomb.npz", true, &[(24, 0xFFFF_FFF0)], "corrupt archive"),
        // compressed size (offset 20) beyond the file
        (
            "csize.npz",
            true,
            &[(20, 0x7FFF_FFFF)],
            "the file holds only",
        ),
    ];
    for (file, deflate, patches, needle) in cases {
        let p = dir.path().join(file);
        write_npz(&p, &valid_arrays(4, 28), deflate);
        let mut bytes = std::fs::read(&p).unwrap();
        patch_central_dir(&mut bytes, "train_labels.npy", patches);
        std::fs::write(&p, &bytes).unwrap();
        check(
            load_npz(&p),
            |e| matches!(e, DataError::Npz { .. }),
            &[file, needle],
        );
    }
}

/// A 24-bit BMP header declaring `width × height` with no pixel data.
fn bmp_header(width: i32, height: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(b"BM");
    b.extend(54u32.to_le_bytes()); // file size (as if empty)
    b.extend([0u8; 4]);
    b.extend(54u32.to_le_bytes()); // pixel data offset
    b.extend(40u32.to_le_bytes()); // BITMAPINFOHEADER
    b.extend(width.to_le_bytes());
    b.extend(height.to_le_bytes());
    b.extend(1u16.to_le_bytes()); // planes
    b.extend(24u16.to_le_bytes()); // bits per pixel
    b.extend([0u8; 24]); // no compression, sizes, resolution, palette
    b
}

#[test]
fn image_header_claiming_a_huge_size_is_rejected_without_allocating() {
    // 60000 × 60000 × 3 bytes ≈ 10 GB, declared by a 54-byte file: refused by the
    // decoder's limits (sides ≤ 8192, ≤ 32 MiB of pixels) before any buffer is made.
    for (w, h) in [(60_000, 60_000), (8000, 8000)] {
        let err = cxr_data::decode_image_bytes(&bmp_header(w, h), 28).unwrap_err();
        assert!(err.contains("larger than cxr decodes"), "{w}×{h}: {err}");
    }
    // A small header without its pixels is a decoding error, not a panic.
    assert!(cxr_data::decode_image_bytes(&bmp_header(16, 16), 28).is_err());
}

#[test]
fn fuzz_found_jpeg_declaring_8220x7168_is_refused_at_once() {
    // 302 bytes of progressive JPEG that took seconds to decode (a libFuzzer timeout)
    // before the decoder limits.
    let bytes = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/regressions/image/progressive-jpeg-8220x7168-timeout.jpeg"
    ));
    let start = std::time::Instant::now();
    let err = cxr_data::decode_image_bytes(bytes, 28).unwrap_err();
    assert!(err.contains("larger than cxr decodes"), "{err}");
    assert!(start.elapsed().as_secs_f64() < 0.5, "{:?}", start.elapsed());
}
