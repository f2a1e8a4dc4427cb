use rand::Rng;
use rand_chacha::ChaCha8Rng;

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
    /// Mirror left-right with probability 0.5. Off in both presets: chest anatomy is
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

    /// Whether this augmentation changes nothing.
    pub fn is_identity(&self) -> bool {
        self.random_resized_crop.is_none()
            && self.rotation_deg == 0.0
            && self.brightness == 0.0
            && self.contrast == 0.0
            && !self.hflip
    }

    /// Applies the augmentation to an `h × w` image, drawing from `rng`.
    pub fn apply(&self, img: &[f32], h: usize, w: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        if self.is_identity() {
            return img.to_vec();
        }
        // Crop: side fraction and centre (in source pixels).
        let (frac, cy, cx) = match self.random_resized_crop {
            Some((lo, hi)) => {
                let area = if hi > lo {
                    rng.random_range(lo..hi)
                } else {
                    lo
                };
                let f = area.clamp(0.01, 1.0).sqrt();
                let free_y = (1.0 - f) * h as f32;
                let free_x = (1.0 - f) * w as f32;
                let oy = rng.random::<f32>() * free_y;
                let ox = rng.random::<f32>() * free_x;
                (f, oy + f * h as f32 / 2.0, ox + f * w as f32 / 2.0)
            }
            None => (1.0, h as f32 / 2.0, w as f32 / 2.0),
        };
        let theta = if self.rotation_deg > 0.0 {
            rng.random_range(-self.rotation_deg..self.rotation_deg)
                .to_radians()
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
        if self.brightness > 0.0 || self.contrast > 0.0 {
            let b = if self.brightness > 0.0 {
                rng.random_range(-self.brightness..self.brightness)
            } else {
                0.0
            };
            let k = if self.contrast > 0.0 {
                1.0 + rng.random_range(-self.contrast..self.contrast)
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

/// Bilinear sample at (y, x) in pixel-centre coordinates; 0 outside the image.
fn sample(img: &[f32], h: usize, w: usize, y: f32, x: f32) -> f32 {
    let (y0, x0) = (y.floor(), x.floor());
    let (fy, fx) = (y - y0, x - x0);
    let px = |yy: f32, xx: f32| -> f32 {
        if yy < 0.0 || xx < 0.0 || yy >= h as f32 || xx >= w as f32 {
            0.0
        } else {
            img[yy as usize * w + xx as usize]
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
}
