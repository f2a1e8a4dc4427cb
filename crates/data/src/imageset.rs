use std::path::PathBuf;

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

    /// Pixels of image `i` (`height * width` bytes). Panics if `i >= len()`.
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

    /// Every image resized to `size × size` with bilinear interpolation, with
    /// the semantics of PyTorch's `F.interpolate(mode="bilinear",
    /// align_corners=False, antialias=False)`, rounded to the nearest u8.
    pub fn resized(&self, size: usize) -> Result<ImageSet> {
        if size == 0 {
            return Err(DataError::Invalid {
                name: "image size".into(),
                reason: "must be at least 1".into(),
            });
        }
        let n = self.height * self.width;
        let mut images = Vec::with_capacity(self.len() * size * size);
        let mut buf = vec![0f32; n];
        for i in 0..self.len() {
            for (b, &p) in buf.iter_mut().zip(self.image(i)) {
                *b = p as f32;
            }
            let out = resize_bilinear(&buf, self.height, self.width, size, size);
            images.extend(out.iter().map(|&v| v.round().clamp(0.0, 255.0) as u8));
        }
        Ok(ImageSet {
            images,
            labels: self.labels.clone(),
            height: size,
            width: size,
        })
    }
}

/// Bilinear resize of one `h × w` image to `oh × ow`, `align_corners=False` (pixel
/// centres at half-integers, source coordinates clamped at the border), as PyTorch.
pub fn resize_bilinear(img: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let axis = |out: usize, inp: usize| -> Vec<(usize, usize, f32)> {
        let scale = inp as f32 / out as f32;
        (0..out)
            .map(|o| {
                let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(inp - 1);
                let i1 = (i0 + 1).min(inp - 1);
                (i0, i1, src - i0 as f32)
            })
            .collect()
    };
    let ys = axis(oh, h);
    let xs = axis(ow, w);
    let mut out = Vec::with_capacity(oh * ow);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let a = img[y0 * w + x0] * (1.0 - fx) + img[y0 * w + x1] * fx;
            let b = img[y1 * w + x0] * (1.0 - fx) + img[y1 * w + x1] * fx;
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
}

/// A split name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// 2×2 → 4×4 against values worked out with PyTorch's formula
    /// (src = (dst + 0.5) / 2 − 0.5, clamped at 0).
    #[test]
    fn bilinear_matches_torch_formula() {
        let img = [0.0, 10.0, 20.0, 30.0];
        let out = resize_bilinear(&img, 2, 2, 4, 4);
        let row0 = [0.0, 2.5, 7.5, 10.0];
        for (x, &e) in row0.iter().enumerate() {
            assert!((out[x] - e).abs() < 1e-6, "{out:?}");
        }
        // row 1: src y = 0.25 → 0.75·row0 + 0.25·row1
        assert!((out[4] - 5.0).abs() < 1e-6);
        assert!((out[15] - 30.0).abs() < 1e-6);
        // identity size keeps the image
        assert_eq!(resize_bilinear(&img, 2, 2, 2, 2), img.to_vec());
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
