//! PNG tiles for the failure gallery: the image upscaled, and heat-map overlays.

use std::path::Path;

use cxr_data::resize_bilinear;

use cxr_runfolder::write_atomic;

use crate::{AuditError, Result};

/// Opacity of the heat map over the grayscale image in overlays.
pub const OVERLAY_ALPHA: f32 = 0.5;

/// Google's Turbo colour map (Mikhailov 2019) by its published polynomial
/// approximation (Ruofei Du): `t` in [0, 1] (clamped) to RGB in [0, 1]; 0 is near
/// black, low values blue (cold), the middle green-yellow, high values red (hot).
pub fn turbo(t: f32) -> [f32; 3] {
    let x = t.clamp(0.0, 1.0) as f64;
    let (x2, x3) = (x * x, x * x * x);
    let (x4, x5) = (x2 * x2, x2 * x3);
    let poly = |c: [f64; 6]| {
        (c[0] + c[1] * x + c[2] * x2 + c[3] * x3 + c[4] * x4 + c[5] * x5).clamp(0.0, 1.0) as f32
    };
    [
        poly([
            0.135_721_38,
            4.615_392_60,
            -42.660_322_58,
            132.131_082_34,
            -152.942_393_96,
            59.286_379_43,
        ]),
        poly([
            0.091_402_61,
            2.194_188_39,
            4.842_966_58,
            -14.185_033_33,
            4.277_298_57,
            2.829_566_04,
        ]),
        poly([
            0.106_673_30,
            12.641_946_08,
            -60.582_048_36,
            110.362_767_71,
            -89.903_109_12,
            27.348_249_73,
        ]),
    ]
}

/// Bilinear upscale of an `h × w` map to `size × size`.
fn upscale(v: &[f32], h: usize, w: usize, size: usize) -> Vec<f32> {
    resize_bilinear(v, h, w, size, size)
}

fn encode_png(path: &Path, img: image::DynamicImage) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| AuditError::io(path, std::io::Error::other(e)))?;
    Ok(write_atomic(path, buf.get_ref())?)
}

/// Writes the `h × w` grayscale image (values in [0, 1]) upscaled to
/// `size × size` as an 8-bit grayscale PNG.
pub fn write_gray_png(path: &Path, image: &[f32], h: usize, w: usize, size: usize) -> Result<()> {
    let up = upscale(image, h, w, size);
    let px: Vec<u8> = up
        .iter()
        .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect();
    let buf = image::GrayImage::from_raw(size as u32, size as u32, px)
        .ok_or_else(|| AuditError::io(path, std::io::Error::other("tile buffer size")))?;
    encode_png(path, image::DynamicImage::ImageLuma8(buf))
}

/// Writes the grayscale image with `heat` (same `h × w`, values in [0, 1], 1 = hot)
/// overlaid in [`turbo`] at opacity [`OVERLAY_ALPHA`], upscaled to `size × size`,
/// as an RGB PNG.
pub fn write_overlay_png(
    path: &Path,
    image: &[f32],
    heat: &[f32],
    h: usize,
    w: usize,
    size: usize,
) -> Result<()> {
    let gray = upscale(image, h, w, size);
    let heat = upscale(heat, h, w, size);
    let mut px = Vec::with_capacity(size * size * 3);
    for (&g, &t) in gray.iter().zip(&heat) {
        let c = turbo(t);
        for ch in c {
            let v = (1.0 - OVERLAY_ALPHA) * g + OVERLAY_ALPHA * ch;
            px.push((v * 255.0).round().clamp(0.0, 255.0) as u8);
        }
    }
    let buf = image::RgbImage::from_raw(size as u32, size as u32, px)
        .ok_or_else(|| AuditError::io(path, std::io::Error::other("tile buffer size")))?;
    encode_png(path, image::DynamicImage::ImageRgb8(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turbo_runs_cold_blue_to_hot_red() {
        // the approximation's values: 0 → (0.136, 0.091, 0.107) near black,
        // 0.1 → (0.288, 0.346, 0.867) blue, 0.5 → (0.589, 0.982, 0.313) green,
        // 0.9 → (0.721, 0.125, 0.031) red
        let near = |a: [f32; 3], b: [f32; 3]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 2e-3);
        assert!(near(turbo(0.0), [0.136, 0.091, 0.107]), "{:?}", turbo(0.0));
        assert!(near(turbo(0.1), [0.288, 0.346, 0.867]), "{:?}", turbo(0.1));
        assert!(near(turbo(0.5), [0.589, 0.982, 0.313]), "{:?}", turbo(0.5));
        assert!(near(turbo(0.9), [0.721, 0.125, 0.031]), "{:?}", turbo(0.9));
        assert_eq!(turbo(-1.0), turbo(0.0));
        assert_eq!(turbo(2.0), turbo(1.0));
        assert!(turbo(1.0).iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn tiles_are_written_as_pngs() {
        let dir = tempfile::tempdir().unwrap();
        let img: Vec<f32> = (0..16).map(|i| i as f32 / 15.0).collect();
        let p = dir.path().join("a.png");
        write_gray_png(&p, &img, 4, 4, 32).unwrap();
        let back = image::open(&p).unwrap().to_luma8();
        assert_eq!(back.dimensions(), (32, 32));
        assert!(back.get_pixel(31, 31)[0] > back.get_pixel(0, 0)[0]);
        // mid-grey image; heat 0.1 in the left half, 0.9 in the right half
        let grey = vec![0.5; 16];
        let heat: Vec<f32> = (0..16).map(|i| if i % 4 < 2 { 0.1 } else { 0.9 }).collect();
        let q = dir.path().join("b.png");
        write_overlay_png(&q, &grey, &heat, 4, 4, 32).unwrap();
        let back = image::open(&q).unwrap().to_rgb8();
        let (cold, hot) = (back.get_pixel(0, 16), back.get_pixel(31, 16));
        assert!(cold[2] > cold[0] && hot[0] > hot[2], "{cold:?} {hot:?}");
    }
}
