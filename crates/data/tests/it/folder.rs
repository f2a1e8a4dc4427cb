//! The Kaggle image-folder layout: decoding any bit depth, and bad files.

use std::path::Path;

use cxr_data::{DataError, load_folder};

use crate::check;

fn gray8(path: &Path, v: u8) {
    image::GrayImage::from_pixel(40, 30, image::Luma([v]))
        .save(path)
        .unwrap();
}

/// A tiny valid tree: per split and class two images in different formats.
fn tree(root: &Path) {
    for split in ["train", "val", "test"] {
        for class in ["NORMAL", "PNEUMONIA"] {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            gray8(&d.join("a.png"), 10);
            image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_pixel(
                20,
                20,
                image::Luma([65535]),
            )
            .save(d.join("b16.png"))
            .unwrap();
            image::RgbImage::from_pixel(16, 24, image::Rgb([200, 200, 200]))
                .save(d.join("c.JPEG"))
                .unwrap();
            std::fs::write(d.join(".DS_Store"), b"junk").unwrap();
        }
    }
}

#[test]
fn decodes_every_format_to_the_requested_size() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let (d, skipped) = load_folder(dir.path(), 32, false).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(d.train.len(), 6);
    assert_eq!(d.train.class_counts(), [3, 3]);
    assert_eq!((d.train.height, d.train.width), (32, 32));
    // sorted order within NORMAL: a.png (10), b16.png (16-bit white → 255), c.JPEG (~200)
    assert_eq!(d.train.image(0)[0], 10);
    assert_eq!(d.train.image(1)[100], 255);
    assert!((d.train.image(2)[100] as i32 - 200).abs() <= 2);
    assert_eq!(d.sha256.len(), 64);
    let (again, _) = load_folder(dir.path(), 32, false).unwrap();
    assert_eq!(again.sha256, d.sha256);
}

#[test]
fn non_image_and_corrupt_jpeg_are_listed_or_skipped() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let normal = dir.path().join("train/NORMAL");
    std::fs::write(normal.join("notes.png"), b"this is text, not a PNG").unwrap();
    let good = std::fs::read(dir.path().join("val/NORMAL/c.JPEG")).unwrap();
    std::fs::write(normal.join("cut.jpeg"), &good[..good.len() / 3]).unwrap();
    check(
        load_folder(dir.path(), 28, false),
        |e| matches!(e, DataError::BadFiles { files, .. } if files.len() == 2),
        &["notes.png", "cut.jpeg", "--skip-bad"],
    );
    let (d, skipped) = load_folder(dir.path(), 28, true).unwrap();
    assert_eq!(skipped.len(), 2);
    assert_eq!(d.train.len(), 6);
}

#[test]
fn missing_class_folder_and_empty_split() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    std::fs::remove_dir_all(dir.path().join("test/PNEUMONIA")).unwrap();
    check(
        load_folder(dir.path(), 28, false),
        |e| matches!(e, DataError::Layout { .. }),
        &["PNEUMONIA"],
    );
    std::fs::create_dir_all(dir.path().join("test/PNEUMONIA")).unwrap();
    for f in std::fs::read_dir(dir.path().join("test/NORMAL")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    check(
        load_folder(dir.path(), 28, false),
        |e| matches!(e, DataError::Layout { .. }),
        &["test", "no readable images"],
    );
}
