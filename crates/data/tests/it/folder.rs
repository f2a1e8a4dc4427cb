//! The Kaggle image-folder layout: decoding any bit depth and colour type, and bad files.

use std::path::Path;

use cxr_data::{DataError, load_folder};

use crate::check;

fn gray8(path: &Path, w: u32, h: u32, v: u8) {
    image::GrayImage::from_pixel(w, h, image::Luma([v]))
        .save(path)
        .unwrap();
}

/// A tiny valid tree: per split and class, four images of different kinds, plus
/// files and folders that must be ignored.
fn tree(root: &Path) {
    for split in ["train", "val", "test"] {
        for class in ["NORMAL", "PNEUMONIA"] {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            gray8(&d.join("a.png"), 40, 30, 10);
            image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_pixel(
                20,
                20,
                image::Luma([65535]),
            )
            .save(d.join("b16.png"))
            .unwrap();
            image::RgbImage::from_pixel(16, 24, image::Rgb([200, 200, 200]))
                .save_with_format(d.join("c.JPEG"), image::ImageFormat::Jpeg)
                .unwrap();
            image::RgbImage::from_pixel(30, 30, image::Rgb([0, 255, 0]))
                .save_with_format(d.join("d.Png"), image::ImageFormat::Png)
                .unwrap();
            std::fs::write(d.join(".DS_Store"), b"junk").unwrap();
            std::fs::write(d.join("README"), b"about").unwrap();
            std::fs::write(d.join("notes.txt"), b"text").unwrap();
            std::fs::create_dir_all(d.join("sub.png")).unwrap();
        }
    }
}

#[test]
fn decodes_every_format_to_the_requested_size() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let (d, skipped) = load_folder(dir.path(), 32, false).unwrap();
    assert!(skipped.is_empty());
    for set in [&d.train, &d.val, &d.test] {
        assert_eq!(set.len(), 8);
        assert_eq!(set.class_counts(), [4, 4]);
        assert_eq!((set.height, set.width), (32, 32));
        assert_eq!(set.labels, vec![0, 0, 0, 0, 1, 1, 1, 1]);
    }
    // sorted order within NORMAL: a.png (10), b16.png (16-bit white → 255),
    // c.JPEG (~200, JPEG tolerance ±2), d.Png (pure green → Rec. 709 luma ≈ 182, ±2)
    assert!(d.train.image(0).iter().all(|&v| v == 10));
    assert!(d.train.image(1).iter().all(|&v| v == 255));
    assert!((d.train.image(2)[100] as i32 - 200).abs() <= 2);
    assert!(
        (d.train.image(3)[100] as i32 - 182).abs() <= 2,
        "{}",
        d.train.image(3)[100]
    );
    assert_eq!(d.sha256.len(), 64);
    assert_eq!(d.source, dir.path());
    let (again, _) = load_folder(dir.path(), 32, false).unwrap();
    assert_eq!(again.sha256, d.sha256);
    assert_eq!(again.train, d.train);
    // the size changes pixels but not the manifest hash; a changed file changes it
    let (small, _) = load_folder(dir.path(), 8, false).unwrap();
    assert_eq!(small.sha256, d.sha256);
    assert_eq!(small.train.images.len(), 8 * 64);
    gray8(&dir.path().join("test/PNEUMONIA/a.png"), 40, 30, 11);
    let (changed, _) = load_folder(dir.path(), 8, false).unwrap();
    assert_ne!(changed.sha256, d.sha256);
}

#[test]
fn non_square_images_are_centre_cropped() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    // 30 wide × 10 high: white only in the centre 10 columns
    let img = image::GrayImage::from_fn(30, 10, |x, _| {
        image::Luma([if (10..20).contains(&x) { 255 } else { 0 }])
    });
    img.save(dir.path().join("val/NORMAL/0wide.png")).unwrap();
    let (d, _) = load_folder(dir.path(), 10, false).unwrap();
    assert_eq!(d.val.len(), 9);
    assert!(d.val.image(0).iter().all(|&v| v == 255));
}

#[test]
fn non_image_and_corrupt_jpeg_are_listed_or_skipped() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let normal = dir.path().join("train/NORMAL");
    std::fs::write(normal.join("notes.png"), b"this is text, not a PNG").unwrap();
    let good = std::fs::read(dir.path().join("val/NORMAL/c.JPEG")).unwrap();
    std::fs::write(normal.join("cut.jpeg"), &good[..good.len() / 3]).unwrap();
    std::fs::write(dir.path().join("test/PNEUMONIA/empty.jpg"), b"").unwrap();
    check(
        load_folder(dir.path(), 28, false),
        |e| matches!(e, DataError::BadFiles { root, files } if files.len() == 3 && root == dir.path()),
        &["notes.png", "cut.jpeg", "empty.jpg", "3 unreadable"],
    );
    let (d, skipped) = load_folder(dir.path(), 28, true).unwrap();
    assert_eq!(skipped.len(), 3);
    let names: Vec<String> = skipped
        .iter()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["cut.jpeg", "notes.png", "empty.jpg"]);
    assert!(skipped.iter().all(|(_, why)| !why.is_empty()));
    assert_eq!((d.train.len(), d.val.len(), d.test.len()), (8, 8, 8));
}

#[test]
fn skipping_every_file_of_a_split_is_still_an_error() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    for class in ["NORMAL", "PNEUMONIA"] {
        let d = dir.path().join("val").join(class);
        for f in std::fs::read_dir(&d).unwrap() {
            let p = f.unwrap().path();
            if p.is_file() {
                std::fs::write(&p, b"garbage").unwrap();
            }
        }
    }
    check(
        load_folder(dir.path(), 28, true),
        |e| matches!(e, DataError::Layout { path, .. } if path.ends_with("val")),
        &["val", "no readable"],
    );
}

#[test]
fn missing_root_split_and_class_folders() {
    let dir = tempfile::tempdir().unwrap();
    check(
        load_folder(&dir.path().join("nowhere"), 28, false),
        |e| matches!(e, DataError::Layout { .. }),
        &["nowhere", "missing data root folder"],
    );
    tree(dir.path());
    std::fs::remove_dir_all(dir.path().join("test/PNEUMONIA")).unwrap();
    check(
        load_folder(dir.path(), 28, false),
        |e| matches!(e, DataError::Layout { path, .. } if path.ends_with("test/PNEUMONIA")),
        &["PNEUMONIA", "missing class folder"],
    );
    std::fs::remove_dir_all(dir.path().join("val")).unwrap();
    check(
        load_folder(dir.path(), 28, false),
        |e| matches!(e, DataError::Layout { path, .. } if path.ends_with("val")),
        &["val", "missing split folder"],
    );
}

#[test]
fn empty_split_and_bad_size() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    for class in ["NORMAL", "PNEUMONIA"] {
        let d = dir.path().join("test").join(class);
        std::fs::remove_dir_all(&d).unwrap();
        std::fs::create_dir_all(&d).unwrap();
    }
    check(
        load_folder(dir.path(), 28, false),
        |e| matches!(e, DataError::Layout { path, .. } if path.ends_with("test")),
        &["test", "no readable"],
    );
    for size in [0, 7, 5000] {
        check(
            load_folder(dir.path(), size, false),
            |e| matches!(e, DataError::Invalid { .. }),
            &["image size"],
        );
    }
}
