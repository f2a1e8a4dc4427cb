//! CPU fast path for max-pooling (any window, stride and padding, floor mode) with an
//! optional fused ReLU, as one custom op whose backward sends each window's gradient
//! to its first maximum in row-major order, as PyTorch's CPU kernel does.
//!
//! candle 0.11's `max_pool2d` backward is wrong (see `docs/architecture.md`) and has
//! none for window ≠ stride; the reshape-and-`max` formulation that replaces it
//! costs several full passes in the backward. This op costs one pass each way.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_conv::f32_slice;

/// A max-pool window: size, stride, padding (implicit −∞), and whether a ReLU follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolSpec {
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub relu: bool,
}

impl PoolSpec {
    fn out_size(&self, size: usize) -> usize {
        (size + 2 * self.pad - self.k) / self.stride + 1
    }

    /// The input span `[lo, hi)` of output position `o` along one axis.
    fn span(&self, o: usize, size: usize) -> (usize, usize) {
        let start = o * self.stride;
        let lo = start.saturating_sub(self.pad);
        let hi = (start + self.k).saturating_sub(self.pad).min(size);
        (lo, hi)
    }

    /// Index within the plane of the window's first maximum, and that maximum.
    fn argmax(
        &self,
        plane: &[f32],
        w: usize,
        (y0, y1): (usize, usize),
        (x0, x1): (usize, usize),
    ) -> (usize, f32) {
        let mut best = (y0 * w + x0, f32::NEG_INFINITY);
        for y in y0..y1 {
            for (x, &v) in plane[y * w + x0..y * w + x1].iter().enumerate() {
                if v > best.1 || v.is_nan() {
                    best = (y * w + x0 + x, v);
                    if v.is_nan() {
                        return best;
                    }
                }
            }
        }
        best
    }
}

struct MaxPool(PoolSpec);

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "cxr-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let spec = self.0;
        let (b, c, h, w) = l.shape().dims4()?;
        let x = f32_slice(s, l, "input")?;
        let (ho, wo) = (spec.out_size(h), spec.out_size(w));
        let mut out = vec![0f32; b * c * ho * wo];
        out.par_chunks_mut(ho * wo)
            .zip(x.par_chunks(h * w))
            .for_each(|(dst, plane)| {
                for oy in 0..ho {
                    let ys = spec.span(oy, h);
                    for ox in 0..wo {
                        let (_, m) = spec.argmax(plane, w, ys, spec.span(ox, w));
                        dst[oy * wo + ox] = if spec.relu { m.max(0.0) } else { m };
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, c, ho, wo))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let spec = self.0;
        let (b, c, h, w) = arg.dims4()?;
        let (ho, wo) = (spec.out_size(h), spec.out_size(w));
        let arg = arg.contiguous()?;
        let grad = grad.contiguous()?;
        let (xs, xl) = arg.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (candle_core::Storage::Cpu(xs), candle_core::Storage::Cpu(gs)) = (&*xs, &*gs) else {
            return Err(candle_core::Error::Msg(
                "max-pool fast path: tensors left the CPU".into(),
            ));
        };
        let x = f32_slice(xs, xl, "pool input")?;
        let g = f32_slice(gs, gl, "pool gradient")?;
        let mut dx = vec![0f32; b * c * h * w];
        dx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w))
            .zip(g.par_chunks(ho * wo))
            .for_each(|((dst, plane), gp)| {
                for oy in 0..ho {
                    let ys = spec.span(oy, h);
                    for ox in 0..wo {
                        let (i, m) = spec.argmax(plane, w, ys, spec.span(ox, w));
                        if !spec.relu || m > 0.0 {
                            dst[i] += gp[oy * wo + ox];
                        }
                    }
                }
            });
        Ok(Some(Tensor::from_vec(dx, (b, c, h, w), arg.device())?))
    }
}

/// Whether the fast pool applies: an `f32` tensor on the CPU.
pub(crate) fn pool_fast_path_applies(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32
}

/// Max-pool (optionally followed by ReLU) on the CPU fast path. The caller checks the
/// shape (rank 4, window fits).
pub(crate) fn max_pool2d_cpu(x: &Tensor, spec: PoolSpec) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool(spec))
}
