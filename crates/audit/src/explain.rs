//! Explanations of single predictions: Grad-CAM and occlusion sensitivity.

use candle_core::{D, Device, Tensor, Var};
use cxr_data::{Normalize, resize_bilinear};
use cxr_models::Classifier;

use crate::{AuditError, Result};

/// The class an explanation is for. With one logit `z` (P(pneumonia) = σ(z)), the
/// evidence for pneumonia is `z` and the evidence for normal is `−z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetClass {
    /// Label 0.
    Normal,
    /// Label 1.
    Pneumonia,
}

impl TargetClass {
    /// The class predicted for probability `prob` at `threshold` (pneumonia iff
    /// `prob >= threshold`).
    pub fn predicted(prob: f64, threshold: f64) -> Self {
        if prob >= threshold {
            TargetClass::Pneumonia
        } else {
            TargetClass::Normal
        }
    }

    /// `normal` or `pneumonia`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetClass::Normal => "normal",
            TargetClass::Pneumonia => "pneumonia",
        }
    }

    fn sign(self) -> f32 {
        match self {
            TargetClass::Normal => -1.0,
            TargetClass::Pneumonia => 1.0,
        }
    }
}

/// A heat map over an image: `values` (row-major `height × width`) in [0, 1], where
/// 1 is the strongest evidence for the explained class and 0 none.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Normalised values in [0, 1] (all 0 when there is no positive evidence).
    pub values: Vec<f32>,
    /// The largest value before normalisation (Grad-CAM: of the ReLU'd map at the
    /// feature resolution; occlusion: the largest probability drop).
    pub raw_max: f32,
}

impl HeatMap {
    fn normalised(height: usize, width: usize, raw: Vec<f32>) -> Self {
        let raw: Vec<f32> = raw
            .into_iter()
            .map(|v| if v.is_finite() { v.max(0.0) } else { 0.0 })
            .collect();
        let max = raw.iter().fold(0.0f32, |m, &v| m.max(v));
        let values = if max > 0.0 {
            raw.iter().map(|v| v / max).collect()
        } else {
            vec![0.0; raw.len()]
        };
        HeatMap {
            height,
            width,
            values,
            raw_max: max,
        }
    }

    /// The fraction of the map's total mass inside rows `r0..r1` and columns
    /// `c0..c1` (0 for an all-zero map).
    pub fn mass_in(&self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) -> f32 {
        let total: f32 = self.values.iter().sum();
        if total <= 0.0 {
            return 0.0;
        }
        let mut inside = 0.0;
        for r in rows.start..rows.end.min(self.height) {
            for c in cols.start..cols.end.min(self.width) {
                inside += self.values[r * self.width + c];
            }
        }
        inside / total
    }
}

/// Grad-CAM (Selvaraju et al. 2017) for a batch `x` `[N, C, H, W]` of normalised
/// images, one target class per image.
///
/// For image `i` with activations `A` (`[C, h, w]`, from [`Classifier::features`])
/// and score `s = ±logit` (`+` for pneumonia, `−` for normal): the channel weights
/// are `αc = mean over (h, w) of ∂s/∂Ac`, the map is `ReLU(Σc αc·Ac)`, upsampled
/// bilinearly to `H × W` and divided by its maximum, so 1 (hot) is the strongest
/// evidence for the target class; the scale is never inverted. Gradients come from
/// candle's autograd through [`Classifier::head`].
pub fn grad_cam(
    model: &dyn Classifier,
    x: &Tensor,
    targets: &[TargetClass],
) -> Result<Vec<HeatMap>> {
    let (n, _, hh, ww) = x.dims4()?;
    if targets.len() != n {
        return Err(AuditError::Config {
            field: "targets".into(),
            reason: format!("{} target classes for {n} images", targets.len()),
        });
    }
    let features = model.features(x)?.detach();
    let (_, _, h, w) = features.dims4()?;
    let var = Var::from_tensor(&features)?;
    let logits = model.head(var.as_tensor())?;
    let signs: Vec<f32> = targets.iter().map(|t| t.sign()).collect();
    let signs = Tensor::from_vec(signs, n, logits.device())?.to_dtype(logits.dtype())?;
    // Each logit depends only on its own image's features, so the gradient of the
    // signed sum gives every image's gradient at once.
    let score = (logits * signs)?.sum_all()?;
    let grads = score.backward()?;
    let g = grads.get(var.as_tensor()).ok_or_else(|| {
        candle_core::Error::Msg("Grad-CAM: no gradient reached the features".into())
    })?;
    let alpha = g.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?; // [N, C, 1, 1]
    let cam = features
        .broadcast_mul(&alpha)?
        .sum(1)?
        .relu()?
        .to_dtype(candle_core::DType::F32)?
        .to_device(&Device::Cpu)?; // [N, h, w]
    let cam: Vec<f32> = cam.flatten_all()?.to_vec1()?;
    Ok((0..n)
        .map(|i| {
            let coarse = &cam[i * h * w..(i + 1) * h * w];
            let raw_max = coarse.iter().fold(0.0f32, |m, &v| m.max(v));
            let up = resize_bilinear(coarse, h, w, hh, ww);
            let mut map = HeatMap::normalised(hh, ww, up);
            map.raw_max = raw_max;
            map
        })
        .collect())
}

/// Occlusion sensitivity (Zeiler & Fergus 2014) of one `h × w` image with pixel
/// values in [0, 1]: a `patch × patch` square is set to mid-grey (0.5) at every
/// position of a grid with step `stride` (the last row and column of positions are
/// moved to touch the far edges, so every pixel is covered), and the drop in the
/// target class's probability (`p` for pneumonia, `1 − p` for normal) is recorded.
/// Each pixel gets the mean drop of the patches covering it; the map is ReLU'd and
/// divided by its maximum (hot = occluding it removes evidence for the class).
#[allow(clippy::too_many_arguments)]
pub fn occlusion_map(
    model: &dyn Classifier,
    image: &[f32],
    h: usize,
    w: usize,
    target: TargetClass,
    normalize: Normalize,
    patch: usize,
    stride: usize,
    device: &Device,
) -> Result<HeatMap> {
    if image.len() != h * w || h == 0 || w == 0 {
        return Err(AuditError::Config {
            field: "image".into(),
            reason: format!("{} pixels for a {h}×{w} image", image.len()),
        });
    }
    let patch = patch.clamp(1, h.min(w));
    let stride = stride.max(1);
    let positions = |n: usize| -> Vec<usize> {
        let mut p: Vec<usize> = (0..=n - patch).step_by(stride).collect();
        if p.last() != Some(&(n - patch)) {
            p.push(n - patch);
        }
        p
    };
    let (ys, xs) = (positions(h), positions(w));
    let mut windows = Vec::with_capacity(ys.len() * xs.len());
    for &y in &ys {
        for &x in &xs {
            windows.push((y, x));
        }
    }
    let norm = |v: f32| (v - normalize.mean) / normalize.std;
    let mut buf = Vec::with_capacity((windows.len() + 1) * h * w);
    buf.extend(image.iter().map(|&v| norm(v)));
    let grey = norm(0.5);
    for &(y0, x0) in &windows {
        let start = buf.len();
        buf.extend(image.iter().map(|&v| norm(v)));
        for y in y0..y0 + patch {
            for x in x0..x0 + patch {
                buf[start + y * w + x] = grey;
            }
        }
    }
    let count = windows.len() + 1;
    let mut probs = Vec::with_capacity(count);
    // in chunks, to bound memory for large images
    let per_chunk = (1usize << 22) / (h * w).max(1);
    for chunk in buf.chunks(per_chunk.max(1) * h * w) {
        let k = chunk.len() / (h * w);
        let x = Tensor::from_vec(chunk.to_vec(), (k, 1, h, w), &Device::Cpu)?.to_device(device)?;
        let z: Vec<f32> = model
            .logits(&x)?
            .to_dtype(candle_core::DType::F32)?
            .to_device(&Device::Cpu)?
            .to_vec1()?;
        probs.extend(z.iter().map(|&z| {
            let p = 1.0 / (1.0 + (-z).exp());
            match target {
                TargetClass::Pneumonia => p,
                TargetClass::Normal => 1.0 - p,
            }
        }));
    }
    let base = probs[0];
    let mut sum = vec![0.0f32; h * w];
    let mut cover = vec![0u32; h * w];
    for (k, &(y0, x0)) in windows.iter().enumerate() {
        let drop = base - probs[k + 1];
        for y in y0..y0 + patch {
            for x in x0..x0 + patch {
                sum[y * w + x] += drop;
                cover[y * w + x] += 1;
            }
        }
    }
    let raw: Vec<f32> = sum
        .iter()
        .zip(&cover)
        .map(|(&s, &c)| if c > 0 { s / c as f32 } else { 0.0 })
        .collect();
    Ok(HeatMap::normalised(h, w, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_maps_are_relu_normalised_and_never_inverted() {
        let m = HeatMap::normalised(1, 4, vec![-2.0, 0.0, 1.0, 4.0]);
        assert_eq!(m.values, vec![0.0, 0.0, 0.25, 1.0]);
        assert_eq!(m.raw_max, 4.0);
        let z = HeatMap::normalised(1, 2, vec![-1.0, f32::NAN]);
        assert_eq!(z.values, vec![0.0, 0.0]);
        assert_eq!(z.mass_in(0..1, 0..1), 0.0);
        assert!((m.mass_in(0..1, 3..4) - 0.8).abs() < 1e-6);
    }

    #[test]
    fn target_class_follows_the_threshold() {
        assert_eq!(TargetClass::predicted(0.5, 0.5), TargetClass::Pneumonia);
        assert_eq!(TargetClass::predicted(0.49, 0.5), TargetClass::Normal);
        assert_eq!(TargetClass::Normal.as_str(), "normal");
    }
}
