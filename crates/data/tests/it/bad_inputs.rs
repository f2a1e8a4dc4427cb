//! Bad npz files: each gives a typed error naming the file (and the key).

use cxr_data::{DataError, load_npz};

use crate::{check, real_npz, write_edited};

fn is_npz(e: &DataError) -> bool {
    matches!(e, DataError::Npz { .. })
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("absent.npz");
    check(
        load_npz(&p),
        |e| matches!(e, DataError::Io { .. }),
        &["absent.npz"],
    );
}

#[test]
fn truncated_npz() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("half.npz");
    let src = real_npz()
        .map(|p| std::fs::read(p).unwrap())
        .unwrap_or_else(|| {
            let full = dir.path().join("full.npz");
            write_edited(&full, |_| {});
            std::fs::read(full).unwrap()
        });
    std::fs::write(&p, &src[..src.len() / 2]).unwrap();
    check(load_npz(&p), is_npz, &["half.npz"]);
    // a cut inside the last array's data (the central directory intact is impossible
    // with a plain cut, so corrupt the middle instead)
    let mut corrupt = src.clone();
    let mid = corrupt.len() / 2;
    for b in &mut corrupt[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&p, &corrupt).unwrap();
    check(load_npz(&p), |e| is_npz(e), &["half.npz"]);
}

#[test]
fn not_a_zip_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("text.npz");
    std::fs::write(&p, "hello").unwrap();
    check(load_npz(&p), is_npz, &["text.npz", "npz/zip"]);
}

#[test]
fn wrong_key_names() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("keys.npz");
    write_edited(&p, |a| a[2].0 = "valid_images".into());
    check(load_npz(&p), is_npz, &["keys.npz", "val_images", "missing"]);
}

#[test]
fn wrong_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dtype.npz");
    write_edited(&p, |a| {
        a[0].1 = "<f4";
        a[0].3 = vec![0u8; 4 * 28 * 28 * 4];
    });
    check(load_npz(&p), is_npz, &["dtype.npz", "train_images", "<f4"]);
}

#[test]
fn label_outside_zero_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("labels.npz");
    write_edited(&p, |a| a[5].3[2] = 7);
    check(
        load_npz(&p),
        is_npz,
        &["labels.npz", "test_labels", "label 7 at index 2"],
    );
}

#[test]
fn empty_split() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.npz");
    write_edited(&p, |a| {
        a[2].2 = vec![0, 28, 28];
        a[2].3.clear();
        a[3].2 = vec![0, 1];
        a[3].3.clear();
    });
    check(load_npz(&p), is_npz, &["empty.npz", "val_images", "empty"]);
}

#[test]
fn rgb_images_and_mismatched_counts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rgb.npz");
    write_edited(&p, |a| {
        a[0].2 = vec![4, 28, 28, 3];
        a[0].3 = vec![0u8; 4 * 28 * 28 * 3];
    });
    check(load_npz(&p), is_npz, &["rgb.npz", "grayscale"]);
    let p = dir.path().join("count.npz");
    write_edited(&p, |a| {
        a[1].2 = vec![3, 1];
        a[1].3 = vec![0, 1, 0];
    });
    check(
        load_npz(&p),
        is_npz,
        &["count.npz", "train_labels", "3 labels for 4 images"],
    );
}

#[test]
fn header_claiming_a_huge_shape_is_rejected_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.npz");
    write_edited(&p, |a| a[0].2 = vec![1_000_000_000_000, 28, 28]);
    check(load_npz(&p), is_npz, &["huge.npz", "train_images"]);
    let p = dir.path().join("overflow.npz");
    write_edited(&p, |a| a[0].2 = vec![usize::MAX, 28, 28]);
    check(load_npz(&p), is_npz, &["overflow.npz", "overflows"]);
}
