use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::{DataError, Result};

/// Random training-time augmentation of one grayscale image with values in [0, 1].
///
/// Geometry (crop, rotation, flip) is applied as one affine map with bilinear
/// sampling; pixels that fall outside the source are filled with 0 (black), as
/// torchvision's `RandomRotation` does. Photometric jitter follows, and the result
/// is clamped to [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Random resized crop: the crop's area as a fraction of the image, drawn
    /// uniformly from this range (square crops, random position), resized back to
    /// the full size. `None` disables it.
    pub random_resized_crop: Option<(f32, f32)>,
    /// Rotation by an angle drawn uniformly from ±this many degrees (0 disables).
    pub rotation_deg: f32,
    /// Brightness: add a value drawn uniformly from ±this (0 disables).
    pub brightness: f32,
    /// Contrast: scale deviations from the image mean by 1 ± this (0 disables).
    pub contrast: f32,
    /// Mirror left-right with probability 0.5. Off in every preset: chest anatomy is
    /// not left-right symmetric.
    pub hflip: bool,
}

impl Augment {
    /// No augmentation (the seed recipe).
    pub fn none() -> Self {
        Self {
            random_resized_crop: None,
            rotation_deg: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            hflip: false,
        }
    }

    /// Light augmentation: crop 0.85–1 of the area, ±10°, brightness and contrast ±0.1.
    pub fn light() -> Self {
        Self {
            random_resized_crop: Some((0.85, 1.0)),
            rotation_deg: 10.0,
            brightness: 0.1,
            contrast: 0.1,
            hflip: false,
        }
    }

    /// Strong augmentation: crop 0.6–1 of the area, ±15°, brightness ±0.2 and contrast
    /// ±0.4 — wide enough to show the network the low-contrast and washed-out images
    /// on which the audit finds the light preset's normals misread as pneumonia.
    pub fn strong() -> Self {
        Self {
            random_resized_crop: Some((0.6, 1.0)),
            rotation_deg: 15.0,
            brightness: 0.2,
            contrast: 0.4,
            hflip: false,
        }
    }

    /// Whether this augmentation changes nothing.
    pub fn is_identity(&self) -> bool {
        self.random_resized_crop.is_none()
            && amount(self.rotation_deg, 360.0) == 0.0
            && amount(self.brightness, 1.0) == 0.0
            && amount(self.contrast, 1.0) == 0.0
            && !self.hflip
    }

    /// Checks the settings: crop fractions `0 < lo ≤ hi ≤ 1`, rotation in
    /// `0..=180` degrees, brightness and contrast in `0..=1`, all finite.
    /// [`apply`](Self::apply) never panics on bad settings (it clamps them), but a
    /// [`Batcher`](crate::Batcher) rejects them with this check.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, reason: String| {
            Err(DataError::Invalid {
                name: format!("augment.{name}"),
                reason,
            })
        };
        if let Some((lo, hi)) = self.random_resized_crop
            && !(lo.is_finite() && hi.is_finite() && 0.0 < lo && lo <= hi && hi <= 1.0)
        {
            return bad(
                "random_resized_crop",
                format!("({lo}, {hi}): expected 0 < lo ≤ hi ≤ 1"),
            );
        }
        for (name, v, max) in [
            ("rotation_deg", self.rotation_deg, 180.0),
            ("brightness", self.brightness, 1.0),
            ("contrast", self.contrast, 1.0),
        ] {
            if !(v.is_finite() && (0.0..=max).contains(&v)) {
                return bad(name, format!("{v}: expected 0..={max}"));
            }
        }
        Ok(())
    }

    /// Applies the augmentation to an `h × w` row-major image with values in
    /// [0, 1], drawing from `rng`; returns an image of the same size.
    ///
    /// Steps, each skipped when off: (1) random resized crop — a square crop of
    /// area fraction `a ~ U(lo, hi)` (side `√a` of the image), placed uniformly at
    /// random, scaled back to `h × w`; (2) rotation by `θ ~ U(−r, r)` degrees about
    /// the crop centre; (3) left-right flip with probability ½. These form one affine
    /// map sampled bilinearly at pixel centres; source points outside the image read
    /// as 0 (zero padding, black — torchvision's `RandomRotation` default fill). Then
    /// photometric jitter: with brightness `β ~ U(−b, b)` and contrast
    /// `k ~ U(1 − c, 1 + c)`, each pixel becomes `clamp(m + (v − m)·k + β, 0, 1)`
    /// where `m` is the image mean.
    ///
    /// [`Augment::none`] returns the input unchanged (and draws nothing). Never
    /// panics: out-of-range settings are clamped and pixels missing from a short
    /// `img` read as 0.
    pub fn apply(&self, img: &[f32], h: usize, w: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        if self.is_identity() {
            return img.to_vec();
        }
        // Crop: side fraction and centre (in source pixels).
        let (frac, cy, cx) = match self.random_resized_crop {
            Some((lo, hi)) => {
                let lo = if lo.is_finite() {
                    lo.clamp(0.01, 1.0)
                } else {
                    1.0
                };
                let hi = if hi.is_finite() {
                    hi.clamp(lo, 1.0)
                } else {
                    lo
                };
                let area = if hi > lo {
                    rng.random_range(lo..hi)
                } else {
                    lo
                };
                let f = area.sqrt();
                let free_y = (1.0 - f) * h as f32;
                let free_x = (1.0 - f) * w as f32;
                let oy = rng.random::<f32>() * free_y;
                let ox = rng.random::<f32>() * free_x;
                (f, oy + f * h as f32 / 2.0, ox + f * w as f32 / 2.0)
            }
            None => (1.0, h as f32 / 2.0, w as f32 / 2.0),
        };
        let rot = amount(self.rotation_deg, 360.0);
        let theta = if rot > 0.0 {
            rng.random_range(-rot..rot).to_radians()
        } else {
            0.0
        };
        let flip = self.hflip && rng.random::<bool>();
        let (s, c) = theta.sin_cos();
        let mut out = vec![0f32; h * w];
        for y in 0..h {
            for x in 0..w {
                // output pixel centre relative to the output centre, scaled to the crop
                let mut dx = (x as f32 + 0.5 - w as f32 / 2.0) * frac;
                let dy = (y as f32 + 0.5 - h as f32 / 2.0) * frac;
                if flip {
                    dx = -dx;
                }
                let sx = cx + c * dx - s * dy - 0.5;
                let sy = cy + s * dx + c * dy - 0.5;
                out[y * w + x] = sample(img, h, w, sy, sx);
            }
        }
        let (bright, contrast) = (amount(self.brightness, 1.0), amount(self.contrast, 1.0));
        if bright > 0.0 || contrast > 0.0 {
            let b = if bright > 0.0 {
                rng.random_range(-bright..bright)
            } else {
                0.0
            };
            let k = if contrast > 0.0 {
                1.0 + rng.random_range(-contrast..contrast)
            } else {
                1.0
            };
            let mean = out.iter().sum::<f32>() / out.len().max(1) as f32;
            for v in &mut out {
                *v = (mean + (*v - mean) * k + b).clamp(0.0, 1.0);
            }
        }
        out
    }
}

impl Default for Augment {
    /// [`Augment::none`].
    fn default() -> Self {
        Self::none()
    }
}

/// A jitter amount: `v` if finite and positive (at most `max`), else 0 (off).
fn amount(v: f32, max: f32) -> f32 {
    if v.is_finite() && v > 0.0 {
        v.min(max)
    } else {
        0.0
    }
}

/// Bilinear sample at (y, x) in pixel-index coordinates; 0 outside the image.
fn sample(img: &[f32], h: usize, w: usize, y: f32, x: f32) -> f32 {
    let (y0, x0) = (y.floor(), x.floor());
    let (fy, fx) = (y - y0, x - x0);
    let px = |yy: f32, xx: f32| -> f32 {
        if yy < 0.0 || xx < 0.0 || yy >= h as f32 || xx >= w as f32 {
            0.0
        } else {
            img.get(yy as usize * w + xx as usize)
                .copied()
                .unwrap_or(0.0)
        }
    };
    let a = px(y0, x0) * (1.0 - fx) + px(y0, x0 + 1.0) * fx;
    let b = px(y0 + 1.0, x0) * (1.0 - fx) + px(y0 + 1.0, x0 + 1.0) * fx;
    a * (1.0 - fy) + b * fy
}

/// Pixel normalisation after scaling u8 to [0, 1]: `(x − mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    /// Subtracted mean.
    pub mean: f32,
    /// Divisor.
    pub std: f32,
}

impl Default for Normalize {
    /// mean 0.5, std 0.5: maps [0, 1] to [−1, 1] (MedMNIST's usual transform).
    fn default() -> Self {
        Self {
            mean: 0.5,
            std: 0.5,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn ramp(h: usize, w: usize) -> Vec<f32> {
        (0..h * w).map(|i| (i % w) as f32 / w as f32).collect()
    }

    #[test]
    fn none_is_identity_and_light_is_deterministic() {
        let img = ramp(28, 28);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(Augment::none().apply(&img, 28, 28, &mut rng), img);
        let a = Augment::light().apply(&img, 28, 28, &mut ChaCha8Rng::seed_from_u64(5));
        let b = Augment::light().apply(&img, 28, 28, &mut ChaCha8Rng::seed_from_u64(5));
        let c = Augment::light().apply(&img, 28, 28, &mut ChaCha8Rng::seed_from_u64(6));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn geometry_without_change_reproduces_the_image() {
        // crop of the full area, no rotation: the identity map through the sampler
        let img = ramp(16, 16);
        let aug = Augment {
            random_resized_crop: Some((1.0, 1.0)),
            ..Augment::none()
        };
        let out = aug.apply(&img, 16, 16, &mut ChaCha8Rng::seed_from_u64(0));
        for (a, b) in out.iter().zip(&img) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn hflip_only_mirrors_or_keeps() {
        let img = ramp(8, 8);
        let mirror: Vec<f32> = (0..64).map(|i| img[(i / 8) * 8 + 7 - i % 8]).collect();
        let aug = Augment {
            hflip: true,
            ..Augment::none()
        };
        let (mut kept, mut flipped) = (0, 0);
        for seed in 0..20 {
            let out = aug.apply(&img, 8, 8, &mut ChaCha8Rng::seed_from_u64(seed));
            let close = |a: &[f32]| out.iter().zip(a).all(|(x, y)| (x - y).abs() < 1e-5);
            if close(&img) {
                kept += 1;
            } else if close(&mirror) {
                flipped += 1;
            } else {
                panic!("seed {seed}: neither the image nor its mirror");
            }
        }
        assert!(kept > 0 && flipped > 0, "{kept} kept, {flipped} flipped");
    }

    #[test]
    fn rotation_zero_pads_corners_and_keeps_the_centre() {
        let img = vec![1.0f32; 15 * 15];
        let aug = Augment {
            rotation_deg: 45.0,
            ..Augment::none()
        };
        let out = aug.apply(&img, 15, 15, &mut ChaCha8Rng::seed_from_u64(3));
        assert!(
            (out[7 * 15 + 7] - 1.0).abs() < 1e-5,
            "centre kept (tolerance 1e-5)"
        );
        // at |θ| ≥ ~0.3° a corner pixel centre maps outside; with seed 3 θ is far from 0
        assert!(out[0] < 1.0, "a corner is zero-padded: {}", out[0]);
    }

    #[test]
    fn bad_settings_are_rejected_by_validate_and_never_panic_in_apply() {
        assert!(Augment::none().validate().is_ok());
        assert!(Augment::light().validate().is_ok());
        let bad = [
            Augment {
                random_resized_crop: Some((0.9, 0.5)),
                ..Augment::none()
            },
            Augment {
                random_resized_crop: Some((f32::NAN, 1.0)),
                ..Augment::none()
            },
            Augment {
                rotation_deg: f32::INFINITY,
                ..Augment::none()
            },
            Augment {
                brightness: -0.1,
                ..Augment::none()
            },
            Augment {
                contrast: f32::MAX,
                brightness: f32::MAX,
                ..Augment::none()
            },
        ];
        let img = ramp(6, 6);
        for a in bad {
            assert!(a.validate().is_err(), "{a:?}");
            let out = a.apply(&img, 6, 6, &mut ChaCha8Rng::seed_from_u64(0));
            assert_eq!(out.len(), 36);
            assert!(out.iter().all(|v| v.is_finite()), "{a:?}");
        }
        // a short buffer reads missing pixels as 0
        assert_eq!(
            Augment::light()
                .apply(&img[..10], 6, 6, &mut ChaCha8Rng::seed_from_u64(0))
                .len(),
            36
        );
    }
}
