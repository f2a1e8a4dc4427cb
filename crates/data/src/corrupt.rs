//! Seeded, graded image corruptions for robustness sweeps.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{DataError, ImageSet, Result};

/// Highest severity; severities run `1..=MAX_SEVERITY` (0 is the clean image).
pub const MAX_SEVERITY: u8 = 5;

/// A corruption of a grayscale image, applied at a severity 1–5 (0 = unchanged).
///
/// Spatial parameters are given for 28-pixel images and scale with the image: an
/// `h × w` image uses them multiplied by `min(h, w) / 28`. Pixel values are handled
/// in [0, 1] (`u8 / 255`), and results are rounded to the nearest u8 after clamping.
///
/// | corruption | parameter | severities 1–5 |
/// |---|---|---|
/// | `gaussian_blur` | σ in pixels (at 28 px), separable kernel of radius ⌈3σ⌉, edges replicated | 0.5, 0.75, 1, 1.5, 2 |
/// | `motion_blur` | line length in pixels (at 28 px); angle uniform in [0°, 180°) per image | 2, 3, 4, 6, 8 |
/// | `gaussian_noise` | σ of added N(0, σ²) noise per pixel | 0.04, 0.08, 0.12, 0.18, 0.26 |
/// | `contrast` | factor `c`: `v ↦ m + c·(v − m)`, `m` the image mean | 0.75, 0.5, 0.35, 0.2, 0.1 |
/// | `brightness` | shift `b`: `v ↦ v + b` | 0.1, 0.2, 0.3, 0.4, 0.5 |
/// | `jpeg` | JPEG quality (the `image` crate's encoder, decoded back) | 75, 50, 30, 15, 5 |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Corruption {
    /// Gaussian blur.
    GaussianBlur,
    /// Linear motion blur at a random angle.
    MotionBlur,
    /// Additive Gaussian noise.
    GaussianNoise,
    /// Contrast reduction about the image mean.
    Contrast,
    /// Brightness shift (brighter).
    Brightness,
    /// JPEG compression.
    Jpeg,
}

impl Corruption {
    /// Every corruption, in table order.
    pub const ALL: [Corruption; 6] = [
        Corruption::GaussianBlur,
        Corruption::MotionBlur,
        Corruption::GaussianNoise,
        Corruption::Contrast,
        Corruption::Brightness,
        Corruption::Jpeg,
    ];

    /// `gaussian_blur`, `motion_blur`, `gaussian_noise`, `contrast`, `brightness`, `jpeg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Corruption::GaussianBlur => "gaussian_blur",
            Corruption::MotionBlur => "motion_blur",
            Corruption::GaussianNoise => "gaussian_noise",
            Corruption::Contrast => "contrast",
            Corruption::Brightness => "brightness",
            Corruption::Jpeg => "jpeg",
        }
    }

    /// The parameter at `severity` (see the table on [`Corruption`]); `None` outside
    /// `1..=5`.
    pub fn parameter(self, severity: u8) -> Option<f64> {
        let table: [f64; 5] = match self {
            Corruption::GaussianBlur => [0.5, 0.75, 1.0, 1.5, 2.0],
            Corruption::MotionBlur => [2.0, 3.0, 4.0, 6.0, 8.0],
            Corruption::GaussianNoise => [0.04, 0.08, 0.12, 0.18, 0.26],
            Corruption::Contrast => [0.75, 0.5, 0.35, 0.2, 0.1],
            Corruption::Brightness => [0.1, 0.2, 0.3, 0.4, 0.5],
            Corruption::Jpeg => [75.0, 50.0, 30.0, 15.0, 5.0],
        };
        (1..=MAX_SEVERITY)
            .contains(&severity)
            .then(|| table[severity as usize - 1])
    }

    fn id(self) -> u64 {
        Corruption::ALL.iter().position(|&c| c == self).unwrap_or(0) as u64
    }

    /// Applies the corruption at `severity` to one `h × w` row-major image, drawing
    /// any randomness from `rng`. Severity 0 returns the image unchanged.
    ///
    /// Errors: `img.len() != h·w`, a severity above 5, or a JPEG round trip failing.
    pub fn apply(
        self,
        img: &[u8],
        h: usize,
        w: usize,
        severity: u8,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<u8>> {
        if h.checked_mul(w) != Some(img.len()) {
            return Err(DataError::Invalid {
                name: "image".into(),
                reason: format!("{} pixels for a {h}×{w} image", img.len()),
            });
        }
        if severity == 0 || img.is_empty() {
            return Ok(img.to_vec());
        }
        let p = self.parameter(severity).ok_or_else(|| DataError::Invalid {
            name: "severity".into(),
            reason: format!("{severity}: expected 0..={MAX_SEVERITY}"),
        })?;
        let scale = h.min(w) as f64 / 28.0;
        let v: Vec<f64> = img.iter().map(|&x| x as f64 / 255.0).collect();
        let out = match self {
            Corruption::GaussianBlur => gaussian_blur(&v, h, w, p * scale),
            Corruption::MotionBlur => {
                let angle = rng.random::<f64>() * std::f64::consts::PI;
                motion_blur(&v, h, w, p * scale, angle)
            }
            Corruption::GaussianNoise => v.iter().map(|&x| x + p * normal(rng)).collect(),
            Corruption::Contrast => {
                let m = v.iter().sum::<f64>() / v.len() as f64;
                v.iter().map(|&x| m + p * (x - m)).collect()
            }
            Corruption::Brightness => v.iter().map(|&x| x + p).collect(),
            Corruption::Jpeg => return jpeg_round_trip(img, h, w, p as u8),
        };
        Ok(to_u8(&out))
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ImageSet {
    /// Every image corrupted by `corruption` at `severity` (0 = a copy), labels kept.
    ///
    /// Image `i` draws from its own ChaCha8 generator seeded by a hash of
    /// `(seed, corruption, severity, i)`, so the result depends on neither the thread
    /// count nor the order of evaluation. Images are processed in parallel.
    pub fn corrupted(&self, corruption: Corruption, severity: u8, seed: u64) -> Result<ImageSet> {
        self.validate()?;
        let (h, w) = (self.height, self.width);
        let n = h * w;
        let images: Vec<Vec<u8>> = (0..self.len())
            .into_par_iter()
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(mix(&[
                    seed,
                    corruption.id(),
                    severity as u64,
                    i as u64,
                ]));
                corruption.apply(&self.images[i * n..(i + 1) * n], h, w, severity, &mut rng)
            })
            .collect::<Result<_>>()?;
        Ok(ImageSet {
            images: images.concat(),
            labels: self.labels.clone(),
            height: h,
            width: w,
        })
    }
}

/// SplitMix64 over the words: a well-mixed 64-bit seed from a tuple.
fn mix(words: &[u64]) -> u64 {
    let mut z = 0x9E37_79B9_7F4A_7C15u64;
    for &w in words {
        z ^= w;
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
    }
    z
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn to_u8(v: &[f64]) -> Vec<u8> {
    v.iter()
        .map(|&x| (x * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

/// Separable Gaussian blur with edges replicated; σ ≤ 0 returns the input.
pub(crate) fn gaussian_blur(v: &[f64], h: usize, w: usize, sigma: f64) -> Vec<f64> {
    if sigma <= 0.0 || !sigma.is_finite() {
        return v.to_vec();
    }
    let r = (3.0 * sigma).ceil() as isize;
    let mut k: Vec<f64> = (-r..=r)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.iter_mut().for_each(|x| *x /= s);
    let clamp = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
    let mut tmp = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| kv * v[y * w + clamp(x as isize + j as isize - r, w)])
                .sum();
        }
    }
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            out[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| kv * tmp[clamp(y as isize + j as isize - r, h) * w + x])
                .sum();
        }
    }
    out
}

/// Mean of bilinear samples along a centred line of `length` pixels at `angle`
/// (radians from the x axis), edges replicated.
fn motion_blur(v: &[f64], h: usize, w: usize, length: f64, angle: f64) -> Vec<f64> {
    let samples = (2.0 * length).ceil().max(2.0) as usize + 1;
    let (dy, dx) = (angle.sin(), angle.cos());
    let sample = |y: f64, x: f64| -> f64 {
        let y = y.clamp(0.0, (h - 1) as f64);
        let x = x.clamp(0.0, (w - 1) as f64);
        let (y0, x0) = (y.floor() as usize, x.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
        let (fy, fx) = (y - y0 as f64, x - x0 as f64);
        let a = v[y0 * w + x0] * (1.0 - fx) + v[y0 * w + x1] * fx;
        let b = v[y1 * w + x0] * (1.0 - fx) + v[y1 * w + x1] * fx;
        a * (1.0 - fy) + b * fy
    };
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for s in 0..samples {
                let t = -length / 2.0 + length * s as f64 / (samples - 1) as f64;
                acc += sample(y as f64 + t * dy, x as f64 + t * dx);
            }
            out[y * w + x] = acc / samples as f64;
        }
    }
    out
}

/// Encodes with the `image` crate's JPEG encoder at `quality` and decodes back to L8.
fn jpeg_round_trip(img: &[u8], h: usize, w: usize, quality: u8) -> Result<Vec<u8>> {
    let err = |reason: String| DataError::Invalid {
        name: "jpeg corruption".into(),
        reason,
    };
    let (wu, hu) = (
        u32::try_from(w).map_err(|e| err(e.to_string()))?,
        u32::try_from(h).map_err(|e| err(e.to_string()))?,
    );
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .encode(img, wu, hu, image::ExtendedColorType::L8)
        .map_err(|e| err(format!("encoding: {e}")))?;
    let decoded = image::load_from_memory_with_format(&buf, image::ImageFormat::Jpeg)
        .map_err(|e| err(format!("decoding: {e}")))?
        .to_luma8();
    if decoded.dimensions() != (wu, hu) {
        return Err(err(format!(
            "decoded size {:?} differs from {w}×{h}",
            decoded.dimensions()
        )));
    }
    Ok(decoded.into_raw())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Quality;

    fn textured(h: usize, w: usize) -> Vec<u8> {
        (0..h * w)
            .map(|i| {
                let (y, x) = ((i / w) as f64, (i % w) as f64);
                (128.0 + 60.0 * (x * 0.9).sin() * (y * 0.7).cos() + 30.0 * ((x + y) * 0.3).sin())
                    as u8
            })
            .collect()
    }

    fn set(n: usize) -> ImageSet {
        let img = textured(28, 28);
        ImageSet {
            images: img.repeat(n),
            labels: (0..n).map(|i| (i % 2) as u8).collect(),
            height: 28,
            width: 28,
        }
    }

    #[test]
    fn severity_zero_is_identity_and_bad_inputs_are_errors() {
        let img = textured(28, 28);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for c in Corruption::ALL {
            assert_eq!(c.apply(&img, 28, 28, 0, &mut rng).unwrap(), img, "{c}");
            assert!(c.apply(&img, 28, 28, 6, &mut rng).is_err());
            assert!(c.apply(&img[..10], 28, 28, 1, &mut rng).is_err());
            assert!(c.parameter(0).is_none() && c.parameter(5).is_some());
        }
    }

    #[test]
    fn every_corruption_grows_with_severity() {
        let img = textured(28, 28);
        let q0 = Quality::of(&img, 28, 28);
        for c in Corruption::ALL {
            let mut prev_dist = 0.0;
            for s in 1..=MAX_SEVERITY {
                let mut rng = ChaCha8Rng::seed_from_u64(3);
                let out = c.apply(&img, 28, 28, s, &mut rng).unwrap();
                assert_eq!(out.len(), img.len());
                let dist = img
                    .iter()
                    .zip(&out)
                    .map(|(&a, &b)| (a as f64 - b as f64).abs())
                    .sum::<f64>()
                    / img.len() as f64;
                // mean absolute change grows with severity (JPEG: non-decreasing up to
                // 1 grey level of slack, the codec is not monotone pixel by pixel)
                let slack = if c == Corruption::Jpeg { 1.0 } else { 0.0 };
                assert!(
                    dist + slack >= prev_dist && dist > 0.0,
                    "{c} severity {s}: {dist} after {prev_dist}"
                );
                prev_dist = dist;
                let q = Quality::of(&out, 28, 28);
                match c {
                    Corruption::GaussianBlur | Corruption::MotionBlur => {
                        assert!(q.sharpness < q0.sharpness, "{c} {s}")
                    }
                    Corruption::Contrast => assert!(q.contrast_rms < q0.contrast_rms),
                    Corruption::Brightness => assert!(q.brightness > q0.brightness),
                    Corruption::GaussianNoise => assert!(q.sharpness > q0.sharpness),
                    Corruption::Jpeg => {}
                }
            }
        }
    }

    #[test]
    fn gaussian_blur_keeps_a_constant_image_and_the_mean() {
        let v = vec![0.25; 64];
        let b = gaussian_blur(&v, 8, 8, 1.3);
        assert!(b.iter().all(|x| (x - 0.25).abs() < 1e-12));
        // a centred impulse spreads symmetrically and keeps its mass (no edge reached)
        let mut imp = vec![0.0; 15 * 15];
        imp[7 * 15 + 7] = 1.0;
        let b = gaussian_blur(&imp, 15, 15, 1.0);
        assert!((b.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((b[7 * 15 + 6] - b[7 * 15 + 8]).abs() < 1e-15);
        assert!((b[6 * 15 + 7] - b[7 * 15 + 6]).abs() < 1e-15);
    }

    #[test]
    fn contrast_and_brightness_are_exact() {
        let img = [51u8, 204, 51, 204];
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        // mean 0.5, factor 0.5 → 0.35 and 0.65 → 89.25 → 89, 165.75 → 166
        let out = Corruption::Contrast.apply(&img, 2, 2, 2, &mut rng).unwrap();
        assert_eq!(out, vec![89, 166, 89, 166]);
        // +0.2 (= 51 grey levels): 51 → 102, 240 → 291 → clamped to 255
        let out = Corruption::Brightness
            .apply(&[51, 240], 1, 2, 2, &mut rng)
            .unwrap();
        assert_eq!(out, vec![102, 255]);
    }

    #[test]
    fn corrupted_sets_are_seeded_and_thread_independent() {
        let s = set(6);
        let a = s.corrupted(Corruption::GaussianNoise, 3, 11).unwrap();
        let b = s.corrupted(Corruption::GaussianNoise, 3, 11).unwrap();
        let c = s.corrupted(Corruption::GaussianNoise, 3, 12).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.images, c.images);
        assert_eq!(a.labels, s.labels);
        // identical inputs at different indices get different noise
        assert_ne!(a.image(0), a.image(1));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let single = pool.install(|| s.corrupted(Corruption::GaussianNoise, 3, 11).unwrap());
        assert_eq!(single, a);
        assert_eq!(s.corrupted(Corruption::Jpeg, 0, 1).unwrap(), s);
        let j = s.corrupted(Corruption::Jpeg, 5, 1).unwrap();
        assert_eq!(j.images.len(), s.images.len());
    }
}
