//! A bias-free convolution and the BatchNorm (+ ReLU) after it, optionally followed by a
//! max-pool, as one autograd op.
//!
//! Every op input that needs a gradient costs candle's backprop a zero-filled tensor of
//! its size and an addition into it; the convolution's output, consumed only by the
//! BatchNorm, is such an input once per layer (ResNet18 at 64 px, batch 32: 4.4 M values
//! per step over its stem, first block convolutions and shortcuts; the stem's pool input,
//! 2 M more). This op takes the convolution's input, its kernel and the BatchNorm's
//! `[γ; β]`, runs the fast-path ops' own forwards one after the other ([`ConvOp`] or
//! [`WinogradConv`], then [`BnOp`], then [`MaxPool`]) and, backwards, their own backwards
//! with the intermediate tensors kept from the forward: the same kernels in the same
//! order, so the results are those of the ops applied one after the other, bit for bit
//! (tested against them).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Device, Layout, Shape, Tensor};

use crate::cpu_conv::{ConvOp, f32_slice};
use crate::cpu_norm::{Act, BnOp, Norm, SharedNorm};
use crate::cpu_pool::{MaxPool, PoolSpec};
use crate::cpu_winograd::WinogradConv;

/// Which fast-path convolution runs inside the fused op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKind {
    /// The implicit-im2col GEMM (`ConvOp`) with this stride and padding.
    Im2col {
        /// Stride in both axes.
        stride: usize,
        /// Zero padding on every side.
        pad: usize,
    },
    /// Winograd F(2×2, 3×3) (`WinogradConv`): 3×3, stride 1, padding 1.
    Winograd,
}

/// The convolution of [`ConvBnOp`].
enum Conv {
    Im2col(ConvOp),
    Winograd(WinogradConv),
}

/// `bn(conv(x, w))` (→ ReLU) (→ max-pool) as one op over `(x, w, [γ; β])`.
struct ConvBnOp {
    conv: Conv,
    bn: BnOp,
    pool: Option<MaxPool>,
    /// The convolution's output and, with a pool, the BatchNorm's, from the forward,
    /// read by every backward.
    saved: Mutex<Option<(Tensor, Option<Tensor>)>>,
}

fn lock_err() -> candle_core::Error {
    candle_core::Error::Msg("conv + batch norm: poisoned lock".into())
}

impl CustomOp3 for ConvBnOp {
    fn name(&self) -> &'static str {
        "cxr-conv-batch-norm"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sgb: &CpuStorage,
        lgb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (c, shape) = match &self.conv {
            Conv::Im2col(op) => {
                let co = lw.dims().first().copied().unwrap_or(0);
                let zero = CpuStorage::F32(vec![0f32; co]);
                op.cpu_fwd(sx, lx, sw, lw, &zero, &Layout::contiguous(co))?
            }
            Conv::Winograd(op) => op.cpu_fwd(sx, lx, sw, lw)?,
        };
        let CpuStorage::F32(c) = c else {
            candle_core::bail!("conv + batch norm: the convolution did not return f32 values");
        };
        let gb = f32_slice(sgb, lgb, "affine")?;
        let (y, y_shape) = self.bn.forward(&c, &Layout::contiguous(&shape), gb, None)?;
        let c = Tensor::from_vec(c, shape, &Device::Cpu)?;
        let Some(pool) = &self.pool else {
            *self.saved.lock().map_err(|_| lock_err())? = Some((c, None));
            return Ok((y, y_shape));
        };
        let out = pool.cpu_fwd(&y, &Layout::contiguous(&y_shape))?;
        let CpuStorage::F32(y) = y else {
            candle_core::bail!("conv + batch norm: the batch norm did not return f32 values");
        };
        let y = Tensor::from_vec(y, y_shape, &Device::Cpu)?;
        *self.saved.lock().map_err(|_| lock_err())? = Some((c, Some(y)));
        Ok(out)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        gb: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (c, bn_out) = self
            .saved
            .lock()
            .map_err(|_| lock_err())?
            .clone()
            .ok_or_else(|| {
                candle_core::Error::Msg("conv + batch norm: backward before forward".into())
            })?;
        // With a pool: its gradient first, onto the BatchNorm's output.
        let (y, dy) = match (&self.pool, bn_out) {
            (Some(pool), Some(y)) => {
                let dy = pool.bwd(&y, res, grad)?.ok_or_else(|| {
                    candle_core::Error::Msg("conv + batch norm: no max-pool gradient".into())
                })?;
                (y, dy)
            }
            (None, None) => (res.clone(), grad.clone()),
            _ => candle_core::bail!("conv + batch norm: saved tensors do not match the op"),
        };
        let want_c = x.track_op() || w.track_op();
        let (dc, dgb, _) = self.bn.backward(&c, gb, &y, &dy, (want_c, false))?;
        let (dx, dw) = match (dc, &self.conv) {
            (None, _) => (None, None),
            (Some(dc), Conv::Im2col(op)) => {
                let zero = Tensor::zeros(w.dim(0)?, candle_core::DType::F32, &Device::Cpu)?;
                let (dx, dw, _) = op.bwd(x, w, &zero, &c, &dc)?;
                (dx, dw)
            }
            (Some(dc), Conv::Winograd(op)) => op.bwd(x, w, &c, &dc)?,
        };
        Ok((dx, dw, dgb))
    }
}

/// `act(bn(conv(x, w)))` (`act` [`Act::None`] or [`Act::Relu`]), followed by the max-pool
/// `pool` when given, through `ConvBnOp`; `gb` = `[γ; β]`, `eval_norm` the running
/// statistics in evaluation. In training the batch statistics come back for the
/// running-statistics update, as from [`crate::cpu_norm::batch_norm_cpu`].
#[allow(clippy::too_many_arguments)]
pub fn conv_batch_norm_cpu(
    x: &Tensor,
    w: &Tensor,
    gb: &Tensor,
    kind: ConvKind,
    train: bool,
    eps: f64,
    act: Act,
    eval_norm: Option<Norm>,
    pool: Option<PoolSpec>,
) -> candle_core::Result<(Tensor, Option<Norm>)> {
    if act == Act::AddRelu {
        candle_core::bail!("conv + batch norm: no residual inside the fused op");
    }
    let norm: SharedNorm = Arc::new(Mutex::new(eval_norm));
    let conv = match kind {
        ConvKind::Im2col { stride, pad } => Conv::Im2col(ConvOp::new(stride, pad, w.track_op())),
        ConvKind::Winograd => Conv::Winograd(WinogradConv::new()),
    };
    let op = ConvBnOp {
        conv,
        bn: BnOp {
            train,
            eps,
            act,
            norm: norm.clone(),
        },
        pool: pool.map(|spec| MaxPool::new(spec, x.track_op() || w.track_op() || gb.track_op())),
        saved: Mutex::new(None),
    };
    let y = x
        .contiguous()?
        .apply_op3(&w.contiguous()?, &gb.contiguous()?, op)?;
    let stats = if train {
        norm.lock().map_err(|_| lock_err())?.clone()
    } else {
        None
    };
    Ok((y, stats))
}

#[cfg(test)]
mod tests {
    use candle_core::Var;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::cpu_conv::conv2d_cpu;
    use crate::cpu_norm::batch_norm_cpu;
    use crate::cpu_winograd::conv3x3_winograd;

    fn var(rng: &mut ChaCha8Rng, dims: &[usize], lo: f32, hi: f32) -> Var {
        let n = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
        Var::from_tensor(&Tensor::from_vec(v, dims, &Device::Cpu).unwrap()).unwrap()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The fused op against the convolution op, the BatchNorm op and (with `pool`) the
    /// max-pool applied one after the other: output, batch statistics and the gradients
    /// of `x`, `w` and `[γ; β]` bit for bit.
    fn case(
        seed: u64,
        kind: ConvKind,
        x_dims: [usize; 4],
        w_dims: [usize; 4],
        act: Act,
        train: bool,
    ) {
        case_pool(seed, kind, (x_dims, w_dims), act, train, None);
    }

    fn case_pool(
        seed: u64,
        kind: ConvKind,
        (x_dims, w_dims): ([usize; 4], [usize; 4]),
        act: Act,
        train: bool,
        pool: Option<PoolSpec>,
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let x = var(&mut rng, &x_dims, -1.0, 1.0);
        let w = var(&mut rng, &w_dims, -0.3, 0.3);
        let co = w_dims[0];
        let gb = var(&mut rng, &[2 * co], 0.5, 1.5);
        let eval_norm = (!train).then(|| Norm {
            mean: (0..co).map(|_| rng.random_range(-0.5..0.5)).collect(),
            invstd: (0..co).map(|_| rng.random_range(0.5..2.0)).collect(),
            batch: Vec::new(),
        });
        let (x, w, gb) = (x.as_tensor(), w.as_tensor(), gb.as_tensor());
        let c = match kind {
            ConvKind::Im2col { stride, pad } => conv2d_cpu(x, w, None, pad, stride),
            ConvKind::Winograd => conv3x3_winograd(x, w),
        }
        .unwrap();
        let (y1, s1) = batch_norm_cpu(&c, gb, None, train, 1e-5, act, eval_norm.clone()).unwrap();
        let y1 = match pool {
            Some(spec) => crate::cpu_pool::max_pool2d_cpu(&y1, spec).unwrap(),
            None => y1,
        };
        let (y2, s2) =
            conv_batch_norm_cpu(x, w, gb, kind, train, 1e-5, act, eval_norm, pool).unwrap();
        let what = format!("{kind:?} {x_dims:?} {act:?} train {train} pool {pool:?}");
        assert_eq!(bits(&y1), bits(&y2), "{what}: output");
        assert_eq!(
            s1.map(|s| s.batch),
            s2.map(|s| s.batch),
            "{what}: batch statistics"
        );
        let r = Tensor::from_vec(
            (0..y1.elem_count())
                .map(|i| ((i * 7) % 13) as f32 - 6.0)
                .collect::<Vec<f32>>(),
            y1.dims(),
            &Device::Cpu,
        )
        .unwrap();
        let g1 = (y1 * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (y2 * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, t) in [("x", x), ("w", w), ("gb", gb)] {
            let (a, b) = (g1.get(t), g2.get(t));
            assert!(a.is_some() && b.is_some(), "{what}: no gradient of {name}");
            assert_eq!(
                bits(a.unwrap()),
                bits(b.unwrap()),
                "{what}: gradient of {name}"
            );
        }
    }

    #[test]
    fn fused_op_equals_the_two_ops_bit_for_bit() {
        let stem = ConvKind::Im2col { stride: 2, pad: 3 };
        case(1, stem, [2, 3, 13, 13], [5, 3, 7, 7], Act::Relu, true);
        case(2, stem, [2, 3, 13, 13], [5, 3, 7, 7], Act::Relu, false);
        let shortcut = ConvKind::Im2col { stride: 2, pad: 0 };
        case(3, shortcut, [3, 4, 9, 9], [6, 4, 1, 1], Act::None, true);
        let plain = ConvKind::Im2col { stride: 1, pad: 1 };
        case(4, plain, [2, 20, 5, 7], [17, 20, 3, 3], Act::Relu, true);
        let (wx, ww) = ([16, 8, 8, 8], [8, 8, 3, 3]);
        case(5, ConvKind::Winograd, wx, ww, Act::Relu, true);
        case(6, ConvKind::Winograd, wx, ww, Act::None, false);
        // ResNet's stem: 7×7/2, BatchNorm + ReLU, 3×3/2 max-pool (odd and even maps).
        let pool = Some(PoolSpec {
            k: 3,
            stride: 2,
            pad: 1,
            relu: false,
        });
        for (seed, x_dims, train) in [(7, [2, 3, 13, 13], true), (8, [3, 3, 16, 10], false)] {
            let dims = (x_dims, [5, 3, 7, 7]);
            case_pool(seed, stem, dims, Act::Relu, train, pool);
        }
    }

    #[test]
    fn fused_op_refuses_a_residual() {
        let x = Tensor::zeros((2, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((1, 1, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let gb = Tensor::ones(2, candle_core::DType::F32, &Device::Cpu).unwrap();
        let kind = ConvKind::Im2col { stride: 1, pad: 1 };
        let err = conv_batch_norm_cpu(&x, &w, &gb, kind, true, 1e-5, Act::AddRelu, None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("residual"), "{err}");
    }
}
