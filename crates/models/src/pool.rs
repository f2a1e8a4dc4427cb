use candle_core::{D, Tensor};

use crate::{ModelError, Result, cpu_fast_path_enabled};
use cxr_kernels::{PoolSpec, max_pool2d_cpu, pool_fast_path_applies};

fn check_pool_input(x: &Tensor) -> Result<(usize, usize, usize, usize)> {
    let (n, c, h, w) = x.dims4().map_err(|_| ModelError::Input {
        expected: "[N, C, H, W]".into(),
        actual: x.dims().to_vec(),
    })?;
    if h < 2 || w < 2 {
        return Err(ModelError::Input {
            expected: "spatial size at least 2×2 for a 2×2 max-pool".into(),
            actual: x.dims().to_vec(),
        });
    }
    Ok((n, c, h, w))
}

/// The CPU fast path for a `k`×`k` pool with `stride` and `pad` (optionally after a
/// ReLU), or `None` where it does not apply (other devices or dtypes, or switched off).
fn fast_pool(
    x: &Tensor,
    k: usize,
    stride: usize,
    pad: usize,
    relu: bool,
) -> Option<Result<Tensor>> {
    (cpu_fast_path_enabled() && pool_fast_path_applies(x)).then(|| {
        let spec = PoolSpec {
            k,
            stride,
            pad,
            relu,
        };
        Ok(max_pool2d_cpu(x, spec)?)
    })
}

/// `max_pool2d(relu(x))` (equal to `relu(max_pool2d(x))`), fused into one pass each way
/// on the CPU fast path; elsewhere a ReLU followed by [`max_pool2d`].
pub fn relu_max_pool2d(x: &Tensor) -> Result<Tensor> {
    check_pool_input(x)?;
    if let Some(y) = fast_pool(x, 2, 2, 0, true) {
        return y;
    }
    max_pool2d(&x.relu()?)
}

/// 2×2 max-pool with stride 2 over an `[N, C, H, W]` tensor, dropping a trailing odd
/// row/column as PyTorch's `MaxPool2d(2)` does (floor mode).
///
/// On the CPU (f32) this is one custom op whose backward sends each window's gradient
/// to its first maximum, as PyTorch does. Elsewhere it is written as a reshape followed
/// by two `max` reductions so that candle's autograd routes each window's gradient to
/// its maximum. candle 0.11.1's own `max_pool2d`
/// backward scales gradients by 1/4 and misaligns odd sizes; this one matches
/// PyTorch whenever a window's maximum is unique (on that path ties, which only arise
/// here for post-ReLU zeros, send the gradient to every tied element; ReLU's backward
/// then zeroes it for negative pre-activations).
pub fn max_pool2d(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = check_pool_input(x)?;
    if let Some(y) = fast_pool(x, 2, 2, 0, false) {
        return y;
    }
    let (ho, wo) = (h / 2, w / 2);
    let x = if h % 2 == 1 || w % 2 == 1 {
        x.narrow(2, 0, ho * 2)?.narrow(3, 0, wo * 2)?
    } else {
        x.clone()
    };
    let x = x.reshape((n, c, ho, 2, wo, 2))?;
    Ok(x.max(5)?.max(3)?)
}

/// 3×3 max-pool with stride 2 and padding 1 over an `[N, C, H, W]` tensor (ResNet's
/// stem pool, PyTorch's `MaxPool2d(3, 2, 1)`): output `⌊(H − 1)/2⌋ + 1` by
/// `⌊(W − 1)/2⌋ + 1`, padding with −∞ so it never wins.
///
/// candle 0.11.1's `max_pool2d_with_stride(3, 2)` has no backward. This one pads,
/// reshapes so that stride-2 window offsets become plain slices, and takes the maximum
/// of three row offsets and then of three column offsets with `maximum`, whose gradient
/// candle routes to the maximum (split evenly between exact ties). With a unique
/// maximum per window, as for real-valued inputs, the gradient equals PyTorch's.
pub fn max_pool2d_3x3_s2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4().map_err(|_| ModelError::Input {
        expected: "[N, C, H, W]".into(),
        actual: x.dims().to_vec(),
    })?;
    if h == 0 || w == 0 {
        return Err(ModelError::Input {
            expected: "a non-empty [N, C, H, W] for a 3×3 max-pool".into(),
            actual: x.dims().to_vec(),
        });
    }
    if let Some(y) = fast_pool(x, 3, 2, 1, false) {
        return y;
    }
    pool_3x3_s2_shifted(x, (n, c, h, w))
}

/// The device-agnostic 3×3/s2/p1 max-pool: nine shifted views combined with `maximum`.
fn pool_3x3_s2_shifted(x: &Tensor, (n, c, h, w): (usize, usize, usize, usize)) -> Result<Tensor> {
    let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    // Pad to (2·ho + 2) × (2·wo + 2): one −∞ row/column before, the rest after.
    let (hp, wp) = (2 * ho + 2, 2 * wo + 2);
    let neg = |rows: usize, cols: usize| {
        Tensor::full(f32::NEG_INFINITY, (n, c, rows, cols), x.device())?.to_dtype(x.dtype())
    };
    let xp = Tensor::cat(&[&neg(h, 1)?, x, &neg(h, wp - w - 1)?], 3)?;
    let xp = Tensor::cat(&[&neg(1, wp)?, &xp, &neg(hp - h - 1, wp)?], 2)?;
    // Rows: output row i covers padded rows 2i, 2i + 1, 2i + 2.
    let r = xp.reshape((n, c, ho + 1, 2, wp))?;
    let top = r.narrow(2, 0, ho)?;
    let bottom = r.narrow(2, 1, ho)?.narrow(3, 0, 1)?;
    let rows = top
        .narrow(3, 0, 1)?
        .maximum(&top.narrow(3, 1, 1)?)?
        .maximum(&bottom)?; // [n, c, ho, 1, wp]
    // Columns, likewise.
    let r = rows.reshape((n, c, ho, wo + 1, 2))?;
    let left = r.narrow(3, 0, wo)?;
    let right = r.narrow(3, 1, wo)?.narrow(4, 0, 1)?;
    let out = left
        .narrow(4, 0, 1)?
        .maximum(&left.narrow(4, 1, 1)?)?
        .maximum(&right)?; // [n, c, ho, wo, 1]
    Ok(out.reshape((n, c, ho, wo))?)
}

/// Adaptive average pool to 1×1 followed by flattening: `[N, C, H, W]` → `[N, C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    if x.rank() != 4 {
        return Err(ModelError::Input {
            expected: "[N, C, H, W]".into(),
            actual: x.dims().to_vec(),
        });
    }
    Ok(x.mean(D::Minus1)?.mean(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    /// The gradient of `x` in `grads`, flattened.
    fn grad_of(grads: &candle_core::backprop::GradStore, x: &Var) -> Vec<f32> {
        let g = grads.get(x.as_tensor()).expect("x has a gradient");
        g.flatten_all().unwrap().to_vec1().unwrap()
    }

    /// The gradient of `sum(gw ⊙ y)` with respect to `x`; `gw` holds one weight per
    /// element of `y` (non-uniform, so that a misrouted gradient cannot cancel out).
    fn weighted_grad(y: &Tensor, x: &Var, gw: &[f32]) -> Vec<f32> {
        let gt = Tensor::from_vec(gw.to_vec(), y.dims(), &Device::Cpu).unwrap();
        let grads = (y * gt).unwrap().sum_all().unwrap().backward().unwrap();
        grad_of(&grads, x)
    }

    /// Checks a 3×3/s2/p1 max-pool of `vals` (`planes` planes of `h × w`) — its values
    /// `pooled` (bit for bit) and the gradient `g` of `sum(gw ⊙ pooled)` — against a
    /// brute-force walk of each window in row-major order: a later value wins only if
    /// strictly larger, or if it is the first NaN.
    fn check_brute_pool3(
        vals: &[f32],
        (planes, h, w): (usize, usize, usize),
        pooled: &[f32],
        g: &[f32],
        gw: &[f32],
    ) {
        let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
        let mut want_g = vec![0.0f32; vals.len()];
        for b in 0..planes {
            for oi in 0..ho {
                for oj in 0..wo {
                    let mut best: Option<(f32, usize)> = None;
                    for i in (2 * oi).saturating_sub(1)..(2 * oi + 2).min(h) {
                        for j in (2 * oj).saturating_sub(1)..(2 * oj + 2).min(w) {
                            let idx = b * h * w + i * w + j;
                            let v = vals[idx];
                            let later =
                                best.is_none_or(|(bv, _)| v > bv || (v.is_nan() && !bv.is_nan()));
                            if later {
                                best = Some((v, idx));
                            }
                        }
                    }
                    let (bv, bi) = best.unwrap();
                    let o = b * ho * wo + oi * wo + oj;
                    assert_eq!(pooled[o].to_bits(), bv.to_bits(), "{h}x{w} output {o}");
                    want_g[bi] += gw[o];
                }
            }
        }
        assert_eq!(g, want_g, "{h}x{w} gradient");
    }

    /// Gradient of `sum(max_pool(x))` must be 1 at each window's maximum and 0
    /// elsewhere; for 7×7 input, 9 windows → gradient sum 9 (candle's own gives 1.25).
    #[test]
    fn max_pool_gradient_odd_and_even() {
        for size in [7usize, 8] {
            let n = size * size;
            // distinct values so each window's maximum is unique
            let vals: Vec<f32> = (0..n).map(|i| ((i * 37) % n) as f32).collect();
            let x = Var::from_vec(vals.clone(), (1, 1, size, size), &Device::Cpu).unwrap();
            let y = max_pool2d(x.as_tensor()).unwrap();
            let out = size / 2;
            assert_eq!(y.dims(), &[1, 1, out, out]);
            let grads = y.sum_all().unwrap().backward().unwrap();
            let g = grad_of(&grads, &x);
            assert_eq!(g.iter().sum::<f32>(), (out * out) as f32);
            let pooled: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            for oi in 0..out {
                for oj in 0..out {
                    let mut best = (f32::MIN, 0);
                    for di in 0..2 {
                        for dj in 0..2 {
                            let idx = (2 * oi + di) * size + 2 * oj + dj;
                            if vals[idx] > best.0 {
                                best = (vals[idx], idx);
                            }
                        }
                    }
                    assert_eq!(pooled[oi * out + oj], best.0);
                    assert_eq!(g[best.1], 1.0);
                }
            }
        }
    }

    /// Forward and gradient of `sum(g ⊙ pool(x))` against a brute-force 3×3/s2/p1
    /// max-pool, for odd and even sizes; `g` is a fixed non-uniform weighting so a
    /// misrouted gradient cannot cancel out.
    #[test]
    fn max_pool_3x3_s2_matches_brute_force() {
        // both the CPU fast path and the shifted-views path used on other devices
        let shifted = |x: &Tensor| pool_3x3_s2_shifted(x, x.dims4().unwrap());
        let fast = |x: &Tensor| max_pool2d_3x3_s2(x);
        type Pool<'a> = &'a dyn Fn(&Tensor) -> Result<Tensor>;
        let paths: [Pool<'_>; 2] = [&fast, &shifted];
        for ((h, w), pool) in [(7usize, 7usize), (8, 8), (5, 6), (1, 2), (9, 4)]
            .into_iter()
            .flat_map(|hw| paths.iter().map(move |p| (hw, p)))
        {
            let (n, c) = (2usize, 3usize);
            let len = n * c * h * w;
            // distinct values (a permutation scaled) so each window's maximum is unique
            let vals: Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % len) as f32 * 0.5 - 10.0)
                .collect();
            let x = Var::from_vec(vals.clone(), (n, c, h, w), &Device::Cpu).unwrap();
            let y = pool(x.as_tensor()).unwrap();
            let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
            assert_eq!(y.dims(), &[n, c, ho, wo]);
            let gw: Vec<f32> = (0..n * c * ho * wo).map(|i| 1.0 + (i % 5) as f32).collect();
            let g = weighted_grad(&y, &x, &gw);
            let pooled: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            check_brute_pool3(&vals, (n * c, h, w), &pooled, &g, &gw);
        }
    }

    /// Ties go to the first maximum in row-major order and a NaN wins (the first NaN),
    /// in the value and in where the gradient goes.
    #[test]
    fn max_pool_3x3_s2_ties_and_nan() {
        let nan = f32::NAN;
        let vals = vec![1.0, 5.0, 5.0, 5.0, 0.0, 2.0, 3.0, nan, nan];
        let x = Var::from_vec(vals, (1, 1, 3, 3), &Device::Cpu).unwrap();
        let y = max_pool2d_3x3_s2(x.as_tensor()).unwrap();
        let got: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got[..2], [5.0, 5.0]);
        assert!(got[2].is_nan() && got[3].is_nan(), "{got:?}");
        let gt = Tensor::from_vec(vec![1f32, 2.0, 3.0, 4.0], (1, 1, 2, 2), &Device::Cpu).unwrap();
        let grads = (y * gt).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grad_of(&grads, &x);
        assert_eq!(g, [0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 7.0, 0.0]);
    }

    /// The same rules on maps with interior windows (the fast path's branch-free
    /// windows) and on their edges: coarse values with many ties, some NaN, against a
    /// brute-force walk of each window in row-major order.
    #[test]
    fn max_pool_3x3_s2_ties_and_nan_on_larger_maps() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for (h, w) in [(11usize, 12usize), (8, 9), (16, 16), (3, 40)] {
            let (n, c) = (2usize, 2usize);
            let len = n * c * h * w;
            let vals: Vec<f32> = (0..len)
                .map(|_| match rng.random_range(0..40) {
                    0 => f32::NAN,
                    v => (v % 4) as f32 - 2.0,
                })
                .collect();
            let x = Var::from_vec(vals.clone(), (n, c, h, w), &Device::Cpu).unwrap();
            let y = max_pool2d_3x3_s2(x.as_tensor()).unwrap();
            let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
            let gw: Vec<f32> = (0..n * c * ho * wo).map(|i| 1.0 + (i % 7) as f32).collect();
            let g = weighted_grad(&y, &x, &gw);
            let pooled: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            // without a gradient to keep (inference) the same values
            let untracked = max_pool2d_3x3_s2(&x.as_tensor().detach()).unwrap();
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            assert_eq!(
                bits(untracked.flatten_all().unwrap().to_vec1().unwrap()),
                bits(pooled.clone())
            );
            check_brute_pool3(&vals, (n * c, h, w), &pooled, &g, &gw);
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(max_pool2d(&x), Err(ModelError::Input { .. })));
        let x = Tensor::zeros((1, 1, 1, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(max_pool2d(&x), Err(ModelError::Input { .. })));
        assert!(matches!(
            max_pool2d_3x3_s2(&Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap()),
            Err(ModelError::Input { .. })
        ));
    }
}
