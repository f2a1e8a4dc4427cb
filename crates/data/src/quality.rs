//! Per-image quality measures on u8 grayscale images.

/// Image-quality measures of one grayscale image, computed on its pixels scaled to
/// [0, 1] (`u8 / 255`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    /// RMS contrast: the population standard deviation of the pixel values.
    pub contrast_rms: f64,
    /// Michelson contrast `(max − min) / (max + min)`; 0 for an all-black image.
    pub contrast_michelson: f64,
    /// Sharpness: the population variance of the 3×3 Laplacian
    /// `[[0, 1, 0], [1, −4, 1], [0, 1, 0]]` over the interior pixels (those with all
    /// four neighbours; no border padding). 0 for images under 3×3.
    pub sharpness: f64,
    /// Mean brightness: the mean pixel value.
    pub brightness: f64,
    /// Shannon entropy of the 256-bin grey-level histogram, in bits (0 to 8).
    pub entropy: f64,
}

impl Quality {
    /// The measures' names in [`Quality::values`] order: `contrast_rms`,
    /// `contrast_michelson`, `sharpness`, `brightness`, `entropy`.
    pub const NAMES: [&'static str; 5] = [
        "contrast_rms",
        "contrast_michelson",
        "sharpness",
        "brightness",
        "entropy",
    ];

    /// Measures an `h × w` row-major image. Pixels beyond `img.len()` are ignored
    /// (only `min(len, h·w)` pixels are read); an empty image gives all zeros.
    pub fn of(img: &[u8], h: usize, w: usize) -> Quality {
        let n = img.len().min(h.saturating_mul(w));
        let img = &img[..n];
        if n == 0 {
            return Quality {
                contrast_rms: 0.0,
                contrast_michelson: 0.0,
                sharpness: 0.0,
                brightness: 0.0,
                entropy: 0.0,
            };
        }
        let mut hist = [0u64; 256];
        for &p in img {
            hist[p as usize] += 1;
        }
        let nf = n as f64;
        let mut sum = 0.0;
        let mut min = 255usize;
        let mut max = 0usize;
        let mut entropy = 0.0;
        for (v, &c) in hist.iter().enumerate() {
            if c == 0 {
                continue;
            }
            sum += c as f64 * v as f64;
            min = min.min(v);
            max = max.max(v);
            let p = c as f64 / nf;
            entropy -= p * p.log2();
        }
        let mean = sum / nf;
        let var = hist
            .iter()
            .enumerate()
            .map(|(v, &c)| c as f64 * (v as f64 - mean).powi(2))
            .sum::<f64>()
            / nf;
        let michelson = if max + min == 0 {
            0.0
        } else {
            (max - min) as f64 / (max + min) as f64
        };
        Quality {
            contrast_rms: var.sqrt() / 255.0,
            contrast_michelson: michelson,
            sharpness: laplacian_variance(img, n.checked_div(w).unwrap_or(0), w),
            brightness: mean / 255.0,
            entropy: entropy.max(0.0),
        }
    }

    /// The measures in [`Quality::NAMES`] order.
    pub fn values(&self) -> [f64; 5] {
        [
            self.contrast_rms,
            self.contrast_michelson,
            self.sharpness,
            self.brightness,
            self.entropy,
        ]
    }
}

/// Population variance of the 4-neighbour Laplacian over interior pixels of an
/// `h × w` image scaled to [0, 1]; 0 when the image is under 3×3.
fn laplacian_variance(img: &[u8], h: usize, w: usize) -> f64 {
    if h < 3 || w < 3 || img.len() < h * w {
        return 0.0;
    }
    let px = |y: usize, x: usize| img[y * w + x] as f64 / 255.0;
    let mut sum = 0.0;
    let mut sum2 = 0.0;
    let mut count = 0.0;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let l = px(y - 1, x) + px(y + 1, x) + px(y, x - 1) + px(y, x + 1) - 4.0 * px(y, x);
            sum += l;
            sum2 += l * l;
            count += 1.0;
        }
    }
    let mean = sum / count;
    (sum2 / count - mean * mean).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-12;

    /// A 3-pixel-wide box blur (horizontal then vertical, edge-clamped) in u8.
    fn box_blur(img: &[u8], h: usize, w: usize) -> Vec<u8> {
        let get = |v: &[f64], y: isize, x: isize| {
            let y = y.clamp(0, h as isize - 1) as usize;
            let x = x.clamp(0, w as isize - 1) as usize;
            v[y * w + x]
        };
        let src: Vec<f64> = img.iter().map(|&p| p as f64).collect();
        let mut tmp = vec![0.0; h * w];
        for y in 0..h as isize {
            for x in 0..w as isize {
                tmp[y as usize * w + x as usize] =
                    (get(&src, y, x - 1) + get(&src, y, x) + get(&src, y, x + 1)) / 3.0;
            }
        }
        let mut out = vec![0u8; h * w];
        for y in 0..h as isize {
            for x in 0..w as isize {
                let v = (get(&tmp, y - 1, x) + get(&tmp, y, x) + get(&tmp, y + 1, x)) / 3.0;
                out[y as usize * w + x as usize] = v.round() as u8;
            }
        }
        out
    }

    #[test]
    fn two_level_image_has_exact_contrast_brightness_and_entropy() {
        // half the pixels 51 (0.2), half 204 (0.8), in stripes
        let (h, w) = (8, 8);
        let img: Vec<u8> = (0..h * w)
            .map(|i| if (i / w) % 2 == 0 { 51 } else { 204 })
            .collect();
        let q = Quality::of(&img, h, w);
        assert!((q.brightness - 0.5).abs() < TOL, "{q:?}");
        // population std of {0.2, 0.8} in equal parts: 0.3
        assert!((q.contrast_rms - 0.3).abs() < TOL, "{q:?}");
        // (204 − 51) / (204 + 51) = 0.6
        assert!((q.contrast_michelson - 0.6).abs() < TOL, "{q:?}");
        // two equally likely levels: one bit
        assert!((q.entropy - 1.0).abs() < TOL, "{q:?}");
    }

    #[test]
    fn constant_and_empty_images() {
        let q = Quality::of(&[100; 64], 8, 8);
        assert_eq!(q.contrast_rms, 0.0);
        assert_eq!(q.contrast_michelson, 0.0);
        assert_eq!(q.sharpness, 0.0);
        assert_eq!(q.entropy, 0.0);
        assert!((q.brightness - 100.0 / 255.0).abs() < TOL);
        let black = Quality::of(&[0; 16], 4, 4);
        assert_eq!(black.contrast_michelson, 0.0);
        assert_eq!(Quality::of(&[], 0, 0).values(), [0.0; 5]);
        // short buffers and tiny images do not panic
        assert_eq!(Quality::of(&[1, 2], 2, 2).sharpness, 0.0);
    }

    #[test]
    fn uniform_histogram_has_eight_bits() {
        let img: Vec<u8> = (0..=255).collect();
        let q = Quality::of(&img, 16, 16);
        assert!((q.entropy - 8.0).abs() < TOL);
        assert!((q.contrast_michelson - 1.0).abs() < TOL);
    }

    #[test]
    fn laplacian_variance_of_a_checkerboard_is_known() {
        // checkerboard 0/255: interior Laplacian is +4 on black, −4 on white (in [0,1]
        // units), half each → variance 16
        let (h, w) = (6, 6);
        let img: Vec<u8> = (0..h * w)
            .map(|i| if (i / w + i % w) % 2 == 0 { 0 } else { 255 })
            .collect();
        let q = Quality::of(&img, h, w);
        assert!((q.sharpness - 16.0).abs() < 1e-9, "{}", q.sharpness);
        // a linear ramp has zero Laplacian everywhere
        let ramp: Vec<u8> = (0..h * w).map(|i| (i % w * 40) as u8).collect();
        assert!(Quality::of(&ramp, h, w).sharpness < TOL);
    }

    #[test]
    fn blurring_lowers_laplacian_variance_and_rms_contrast() {
        // a deterministic textured image
        let (h, w) = (28, 28);
        let img: Vec<u8> = (0..h * w)
            .map(|i| ((i * 7919 + (i / w) * 104_729) % 251) as u8)
            .collect();
        let q0 = Quality::of(&img, h, w);
        let once = box_blur(&img, h, w);
        let q1 = Quality::of(&once, h, w);
        let q2 = Quality::of(&box_blur(&once, h, w), h, w);
        assert!(q1.sharpness < q0.sharpness * 0.5, "{q0:?} {q1:?}");
        assert!(q2.sharpness < q1.sharpness, "{q1:?} {q2:?}");
        assert!(q1.contrast_rms < q0.contrast_rms);
        // the mean survives a blur up to rounding and edge clamping
        assert!((q1.brightness - q0.brightness).abs() < 0.02);
    }
}
