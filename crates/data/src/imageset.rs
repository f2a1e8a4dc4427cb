use std::path::PathBuf;

use rayon::prelude::*;

use crate::{DataError, Result};

/// One split's images: `N` grayscale `height × width` images stored row-major as u8,
/// and their labels (0 = normal, 1 = pneumonia).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// `N * height * width` pixels, image after image, row-major.
    pub images: Vec<u8>,
    /// `N` labels, each 0 or 1.
    pub labels: Vec<u8>,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of image `i` (`height * width` bytes).
    ///
    /// # Panics
    /// If `i >= len()` or the set breaks its invariant (see [`Self::validate`]); the
    /// index is the caller's, never read from a file.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.height * self.width;
        &self.images[i * n..(i + 1) * n]
    }

    /// `[normal, pneumonia]` counts.
    pub fn class_counts(&self) -> [usize; 2] {
        let pos = self.labels.iter().filter(|&&l| l == 1).count();
        [self.len() - pos, pos]
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Result<ImageSet> {
        self.validate()?;
        let n = self.height * self.width;
        let mut images = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len() {
                return Err(DataError::Invalid {
                    name: "indices".into(),
                    reason: format!("index {i} out of range for {} images", self.len()),
                });
            }
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Ok(ImageSet {
            images,
            labels,
            height: self.height,
            width: self.width,
        })
    }

    /// Every image resized to `size × size` by bilinear interpolation with the
    /// semantics of PyTorch's `F.interpolate(x, size=(size, size), mode="bilinear",
    /// align_corners=False, antialias=False)` on float images (see
    /// [`resize_bilinear`]), each result rounded to the nearest u8. Like torch
    /// without antialiasing, strong downscaling aliases: it samples, it does not
    /// average. Images are resized in parallel.
    pub fn resized(&self, size: usize) -> Result<ImageSet> {
        if size == 0 {
            return Err(DataError::Invalid {
                name: "image size".into(),
                reason: "must be at least 1".into(),
            });
        }
        self.validate()?;
        let n = self.height * self.width;
        let out_n = size.checked_mul(size).ok_or_else(|| DataError::Invalid {
            name: "image size".into(),
            reason: format!("{size} is too large"),
        })?;
        let mut images = vec![0u8; self.len() * out_n];
        if n > 0 {
            images
                .par_chunks_mut(out_n)
                .zip(self.images.par_chunks(n))
                .for_each(|(dst, src)| {
                    let buf: Vec<f32> = src.iter().map(|&p| p as f32).collect();
                    let out = resize_bilinear(&buf, self.height, self.width, size, size);
                    for (d, v) in dst.iter_mut().zip(out) {
                        *d = v.round().clamp(0.0, 255.0) as u8;
                    }
                });
        }
        Ok(ImageSet {
            images,
            labels: self.labels.clone(),
            height: size,
            width: size,
        })
    }

    /// Checks the invariants: `images.len() == len() * height * width` and every
    /// label 0 or 1. Sets from [`load_npz`](crate::load_npz) and
    /// [`load_folder`](crate::load_folder) always pass; this guards hand-built sets.
    pub fn validate(&self) -> Result<()> {
        let expected = self
            .len()
            .checked_mul(self.height)
            .and_then(|v| v.checked_mul(self.width));
        if expected != Some(self.images.len()) {
            return Err(DataError::Invalid {
                name: "ImageSet".into(),
                reason: format!(
                    "{} pixel bytes for {} labels of {}×{} images",
                    self.images.len(),
                    self.len(),
                    self.height,
                    self.width
                ),
            });
        }
        if let Some((i, v)) = self.labels.iter().enumerate().find(|(_, v)| **v > 1) {
            return Err(DataError::Invalid {
                name: "ImageSet".into(),
                reason: format!("label {v} at index {i}; expected 0 or 1"),
            });
        }
        Ok(())
    }
}

/// Bilinear resize of one `h × w` row-major image to `oh × ow`, as PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False, antialias=False)` when given
/// an output size: output pixel `o` samples source coordinate
/// `max((o + 0.5) · in/out − 0.5, 0)`, between pixels `floor(src)` and the next one
/// (clamped to the last), weighted by the fractional part.
///
/// Never panics: an empty input (`h` or `w` zero) gives zeros, and pixels missing
/// from a short `img` read as 0.
pub fn resize_bilinear(img: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    if h == 0 || w == 0 {
        return vec![0.0; oh * ow];
    }
    let axis = |out: usize, inp: usize| -> Vec<(usize, usize, f32)> {
        let scale = inp as f32 / out as f32;
        (0..out)
            .map(|o| {
                let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src as usize).min(inp - 1);
                let i1 = (i0 + 1).min(inp - 1);
                (i0, i1, src - i0 as f32)
            })
            .collect()
    };
    let ys = axis(oh, h);
    let xs = axis(ow, w);
    let px = |y: usize, x: usize| img.get(y * w + x).copied().unwrap_or(0.0);
    let mut out = Vec::with_capacity(oh * ow);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let a = px(y0, x0) * (1.0 - fx) + px(y0, x1) * fx;
            let b = px(y1, x0) * (1.0 - fx) + px(y1, x1) * fx;
            out.push(a * (1.0 - fy) + b * fy);
        }
    }
    out
}

/// The three splits of a data set and where they came from.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Training split.
    pub train: ImageSet,
    /// Validation split.
    pub val: ImageSet,
    /// Test split.
    pub test: ImageSet,
    /// The file or folder the data was read from.
    pub source: PathBuf,
    /// sha256 of the npz file, or of the folder's file list (see `load_folder`).
    pub sha256: String,
    /// Each image's file, for data read from image files (empty for npz data).
    pub files: SplitFiles,
    /// Each image's patient, once given by
    /// [`Dataset::assign_patients`](crate::Dataset::assign_patients) (`None` for npz
    /// data: it has no patient ids).
    pub patients: Option<PatientIds>,
}

/// The file each image of a split was read from, in the split's order; empty lists
/// for data that did not come from image files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitFiles {
    /// Training split.
    pub train: Vec<PathBuf>,
    /// Validation split.
    pub val: Vec<PathBuf>,
    /// Test split.
    pub test: Vec<PathBuf>,
}

impl SplitFiles {
    /// The files of one split.
    pub fn split(&self, split: Split) -> &[PathBuf] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
}

/// Each image's patient id, per split in the split's order (see
/// [`Dataset::assign_patients`](crate::Dataset::assign_patients)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientIds {
    /// Training split.
    pub train: Vec<String>,
    /// Validation split.
    pub val: Vec<String>,
    /// Test split.
    pub test: Vec<String>,
    /// Where the ids came from (`pattern REGEX` or `table PATH`).
    pub source: String,
    /// Images that no pattern or table row matched, each its own patient (with an id
    /// starting with [`OWN_PATIENT_PREFIX`](crate::OWN_PATIENT_PREFIX)).
    pub unmatched: usize,
}

impl PatientIds {
    /// The ids of one split.
    pub fn split(&self, split: Split) -> &[String] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    /// Distinct patients of one split.
    pub fn patients_in(&self, split: Split) -> usize {
        let mut ids: Vec<&str> = self.split(split).iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

/// A split name (ordered train, val, test).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    /// Training split.
    Train,
    /// Validation split.
    Val,
    /// Test split.
    Test,
}

impl Split {
    /// `train`, `val` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// All three, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Dataset {
    /// The images of one split.
    pub fn split(&self, split: Split) -> &ImageSet {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2×2 → 4×4 against the values of
    /// `F.interpolate(torch.tensor([[[[0., 10], [20, 30]]]]), size=4, mode="bilinear",
    /// align_corners=False)`, worked out with torch's formula
    /// (src = (dst + 0.5) · 2/4 − 0.5, clamped at 0; last index clamped). Tolerance 1e-6.
    #[test]
    fn bilinear_matches_torch_formula() {
        let img = [0.0, 10.0, 20.0, 30.0];
        let out = resize_bilinear(&img, 2, 2, 4, 4);
        #[rustfmt::skip]
        let expected = [
            0.0, 2.5, 7.5, 10.0,
            5.0, 7.5, 12.5, 15.0,
            15.0, 17.5, 22.5, 25.0,
            20.0, 22.5, 27.5, 30.0,
        ];
        assert_eq!(out.len(), 16);
        for (i, (a, e)) in out.iter().zip(expected).enumerate() {
            assert!((a - e).abs() < 1e-6, "pixel {i}: {a} vs {e}");
        }
        // identity size keeps the image
        assert_eq!(resize_bilinear(&img, 2, 2, 2, 2), img.to_vec());
        // 4 → 2 samples at src 0.5 and 2.5: the mean of each pixel pair (no antialias)
        let row: Vec<f32> = (0..4).map(|x| x as f32 * 10.0).collect();
        let down = resize_bilinear(&row, 1, 4, 1, 2);
        assert!((down[0] - 5.0).abs() < 1e-6 && (down[1] - 25.0).abs() < 1e-6);
        // 3 → 2 (scale 1.5): src 0.25 and 1.75
        let row = [0.0, 10.0, 20.0];
        let down = resize_bilinear(&row, 1, 3, 1, 2);
        assert!((down[0] - 2.5).abs() < 1e-6 && (down[1] - 17.5).abs() < 1e-6);
        // degenerate inputs do not panic
        assert_eq!(resize_bilinear(&[], 0, 0, 2, 2), vec![0.0; 4]);
        assert_eq!(resize_bilinear(&[1.0], 2, 2, 1, 1).len(), 1);
    }

    #[test]
    fn resized_rounds_and_validates() {
        let s = ImageSet {
            images: vec![0, 10, 20, 30],
            labels: vec![1],
            height: 2,
            width: 2,
        };
        let r = s.resized(4).unwrap();
        assert_eq!((r.height, r.width, r.len()), (4, 4, 1));
        // 2.5 → 3 (round half away from zero), 7.5 → 8
        assert_eq!(&r.image(0)[..4], &[0, 3, 8, 10]);
        assert!(s.resized(0).is_err());
        let broken = ImageSet {
            images: vec![0; 3],
            ..s.clone()
        };
        assert!(broken.resized(4).is_err());
        assert!(broken.subset(&[0]).is_err());
        let bad_label = ImageSet {
            labels: vec![2],
            ..s
        };
        assert!(
            bad_label
                .validate()
                .unwrap_err()
                .to_string()
                .contains("label 2")
        );
    }

    #[test]
    fn subset_and_counts() {
        let s = ImageSet {
            images: vec![1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3],
            labels: vec![0, 1, 1],
            height: 2,
            width: 2,
        };
        assert_eq!(s.class_counts(), [1, 2]);
        let t = s.subset(&[2, 0]).unwrap();
        assert_eq!(t.image(0), &[3, 3, 3, 3]);
        assert_eq!(t.labels, vec![1, 0]);
        assert!(s.subset(&[3]).is_err());
        assert_eq!(s.resized(4).unwrap().image(1), &[2u8; 16][..]);
    }
}
