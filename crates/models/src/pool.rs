use candle_core::{D, Tensor};

use crate::cpu_pool::{PoolSpec, max_pool2d_cpu, pool_fast_path_applies};
use crate::{ModelError, Result, cpu_fast_path_enabled};

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

/// `max_pool2d(relu(x))` (equal to `relu(max_pool2d(x))`), fused into one pass each way
/// on the CPU fast path; elsewhere a ReLU followed by [`max_pool2d`].
pub fn relu_max_pool2d(x: &Tensor) -> Result<Tensor> {
    check_pool_input(x)?;
    if cpu_fast_path_enabled() && pool_fast_path_applies(x) {
        let spec = PoolSpec {
            k: 2,
            stride: 2,
            pad: 0,
            relu: true,
        };
        return Ok(max_pool2d_cpu(x, spec)?);
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
    if cpu_fast_path_enabled() && pool_fast_path_applies(x) {
        let spec = PoolSpec {
            k: 2,
            stride: 2,
            pad: 0,
            relu: false,
        };
        return Ok(max_pool2d_cpu(x, spec)?);
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
            let g: Vec<f32> = grads
                .get(x.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
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

    #[test]
    fn rejects_bad_shapes() {
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(max_pool2d(&x), Err(ModelError::Input { .. })));
        let x = Tensor::zeros((1, 1, 1, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(max_pool2d(&x), Err(ModelError::Input { .. })));
    }
}
