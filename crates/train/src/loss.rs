use candle_core::Tensor;

use crate::Result;

/// Mean binary cross-entropy on logits, as PyTorch's `BCEWithLogitsLoss()`:
/// `mean(max(z, 0) − z·y + log(1 + exp(−|z|)))`, numerically stable for large |z|.
///
/// `logits` and `targets` are `[N]` f32 tensors; `targets` holds 0.0 or 1.0.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let pos = logits.relu()?;
    let zy = (logits * targets)?;
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok(((pos - zy)? + softplus)?.mean_all()?)
}

/// The same loss on host values (f64), per item; used to score predictions.
pub fn bce_with_logits_host(logit: f64, target: f64) -> f64 {
    logit.max(0.0) - logit * target + (-logit.abs()).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn matches_the_definition_and_stays_finite() {
        let z = [-120.0f32, -2.0, 0.0, 0.5, 90.0];
        let y = [0.0f32, 1.0, 1.0, 0.0, 1.0];
        let zt = Tensor::new(&z, &Device::Cpu).unwrap();
        let yt = Tensor::new(&y, &Device::Cpu).unwrap();
        let got = bce_with_logits(&zt, &yt)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // −[y log σ(z) + (1−y) log(1−σ(z))], computed directly where that is finite.
        let expected: f64 = z
            .iter()
            .zip(&y)
            .map(|(&z, &y)| bce_with_logits_host(z as f64, y as f64))
            .sum::<f64>()
            / 5.0;
        assert!((got as f64 - expected).abs() < 1e-5);
        let direct = |z: f64, y: f64| {
            let p = 1.0 / (1.0 + (-z).exp());
            -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
        };
        for (z, y) in [(-2.0, 1.0), (0.5, 0.0), (0.0, 1.0)] {
            assert!((bce_with_logits_host(z, y) - direct(z, y)).abs() < 1e-12);
        }
        assert!(got.is_finite());
    }
}
