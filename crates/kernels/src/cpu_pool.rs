//! CPU fast path for max-pooling (any window, stride and padding, floor mode) with an
//! optional fused ReLU, as one custom op whose backward sends each window's gradient
//! to its first maximum in row-major order, as PyTorch's CPU kernel does.
//!
//! candle 0.11's `max_pool2d` backward is wrong (see `docs/architecture.md`) and has
//! none for window ≠ stride; the reshape-and-`max` formulation that replaces it
//! costs several full passes in the backward. This op costs one pass each way.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_conv::f32_slice;

/// A max-pool window: size, stride, padding (implicit −∞), and whether a ReLU follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSpec {
    /// Window side.
    pub k: usize,
    /// Stride in both axes.
    pub stride: usize,
    /// Implicit −∞ padding on every side.
    pub pad: usize,
    /// Whether a ReLU is applied to the pooled values (fused).
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
        // Without branches (which value wins is data; LLVM kept even `if`-selects as
        // jumps here): the ResNet stem's 3×3 pool went from 5.1–5.7 % of a 64 px training
        // step to 4.5 %; what remains is the chain of dependent compares.
        let (mut bi, mut bv) = (y0 * w + x0, f32::NEG_INFINITY.to_bits());
        for y in y0..y1 {
            for (x, &v) in plane[y * w + x0..y * w + x1].iter().enumerate() {
                let b = f32::from_bits(bv);
                // `later_wins(b, v)` with non-short-circuit operators.
                let later = (v > b) | (v.is_nan() & !b.is_nan());
                let mask = usize::from(later).wrapping_neg();
                bi ^= (bi ^ (y * w + x0 + x)) & mask;
                bv ^= (bv ^ v.to_bits()) & (mask as u32);
            }
        }
        (bi, f32::from_bits(bv))
    }
}

pub(crate) struct MaxPool {
    spec: PoolSpec,
    /// Whether the forward keeps its window maxima for the backward.
    keep: bool,
    /// Per output, the plane index its gradient goes to (`u32::MAX`: none, the fused
    /// ReLU cut it), filled by the forward when `keep`.
    saved: Mutex<Option<Vec<u32>>>,
}

/// Marks an output whose gradient the fused ReLU stops.
const NO_GRAD: u32 = u32::MAX;

/// The larger of `a` and a later `b` under the backward's rule: `b` wins only when it is
/// strictly larger, or NaN while `a` is not (the first NaN wins).
#[inline(always)]
pub(crate) fn later_wins(a: f32, b: f32) -> bool {
    b > a || (b.is_nan() && !a.is_nan())
}

/// The window maximum of `a` then `b` (see [`later_wins`]).
#[inline]
fn first_max(a: f32, b: f32) -> f32 {
    if later_wins(a, b) { b } else { a }
}

simd_fn! {
/// Outputs `oxs` of one output row of the 3×3, stride-2, padding-1 pool whose windows lie
/// inside the map: `rows` are the windows' three input rows (`w` wide, the first at plane
/// index `base`); maxima into `d[ox]` and, with `ids`, the plane index of each window's
/// first maximum in row-major order (the first NaN if any) or [`NO_GRAD`] where the
/// fused ReLU stops the gradient.
///
/// Sixteen windows at a time (AVX-512 where the CPU has it, see `simd_fn!`), each input
/// row's three columns gathered into arrays first,
/// so that the comparisons are element-wise selects over fixed-length arrays (vectorised)
/// instead of a chain of scalar compares per window. Row by row then down the rows gives
/// the winner of one walk in row-major order: "a later value wins only if strictly larger,
/// or if it is the first NaN" is associative.
fn pool3_interior(
    rows: [&[f32]; 3],
    base: usize,
    w: usize,
    oxs: std::ops::Range<usize>,
    d: &mut [f32],
    ids: Option<&mut [u32]>,
    relu: bool,
) {
    let mut ids = ids;
    const N: usize = 16;
    #[inline(always)]
    fn later(a: f32, b: f32) -> bool {
        (b > a) | (b.is_nan() & !a.is_nan())
    }
    let mut ox0 = oxs.start;
    while ox0 < oxs.end {
        let n = N.min(oxs.end - ox0);
        let mut m = [f32::NEG_INFINITY; N];
        // The winner's offset in the window's first row, `r·w + j`.
        let mut code = [0u32; N];
        for (r, row) in rows.iter().enumerate() {
            let (mut left, mut mid, mut right) = ([0f32; N], [0f32; N], [0f32; N]);
            let cols = &row[2 * ox0 - 1..2 * (ox0 + n)];
            for (l, win) in cols
                .chunks_exact(2)
                .zip(cols[1..].chunks(2))
                .take(n)
                .enumerate()
            {
                left[l] = win.0[0];
                mid[l] = win.0[1];
                right[l] = win.1.get(1).copied().unwrap_or(f32::NEG_INFINITY);
            }
            let rw = (r * w) as u32;
            for l in 0..N {
                let b = later(left[l], mid[l]);
                let hm = if b { mid[l] } else { left[l] };
                let c = later(hm, right[l]);
                let hm2 = if c { right[l] } else { hm };
                let hj = if c { 2 } else { u32::from(b) };
                // The first row always takes its own maximum (m starts at −∞ with the
                // first row's own candidate, so that an all −∞ window still names a
                // real position).
                let take = (r == 0) | later(m[l], hm2);
                m[l] = if take { hm2 } else { m[l] };
                code[l] = if take { rw + hj } else { code[l] };
            }
        }
        for l in 0..n {
            let mx = m[l];
            d[ox0 + l] = if relu { mx.max(0.0) } else { mx };
            if let Some(ids) = ids.as_deref_mut() {
                let at = (base + 2 * (ox0 + l) - 1) as u32 + code[l];
                ids[ox0 + l] = if !relu || mx > 0.0 { at } else { NO_GRAD };
            }
        }
        ox0 += n;
    }
}
}

/// One output row of a 2×2, stride-2 pool: input rows `r0`, `r1` (each `2·wo` long),
/// maxima into `d`, and into `ids` the plane index of each window's first maximum
/// (`base` is the plane index of `r0[0]`, `w` the plane width), or [`NO_GRAD`] where the
/// fused ReLU stops the gradient.
fn pool_pair_row(
    r0: &[f32],
    r1: &[f32],
    d: &mut [f32],
    ids: &mut [u32],
    base: u32,
    w: u32,
    relu: bool,
) {
    // Written without early exits or indexing so that it vectorises.
    let rows = r0.chunks_exact(2).zip(r1.chunks_exact(2));
    for (ox, ((o, id), (p0, p1))) in d.iter_mut().zip(ids.iter_mut()).zip(rows).enumerate() {
        let top = later_wins(p0[0], p0[1]);
        let m0 = if top { p0[1] } else { p0[0] };
        let i0 = u32::from(top);
        let bot = later_wins(p1[0], p1[1]);
        let m1 = if bot { p1[1] } else { p1[0] };
        let i1 = w + u32::from(bot);
        let last = later_wins(m0, m1);
        let m = if last { m1 } else { m0 };
        let i = if last { i1 } else { i0 };
        *o = if relu { m.max(0.0) } else { m };
        *id = if !relu || m > 0.0 {
            base + 2 * ox as u32 + i
        } else {
            NO_GRAD
        };
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "cxr-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let spec = self.spec;
        let (b, c, h, w) = l.shape().dims4()?;
        let x = f32_slice(s, l, "input")?;
        let (ho, wo) = (spec.out_size(h), spec.out_size(w));
        let mut out = crate::buf::zeroed(b * c * ho * wo);
        // Plane indices fit in u32 for any plane this op can be given (checked, so a
        // huge plane falls back to recomputing the maxima in the backward).
        let keep = self.keep && h * w < NO_GRAD as usize;
        let mut idx = if keep {
            vec![NO_GRAD; b * c * ho * wo]
        } else {
            Vec::new()
        };
        let pair = spec.k == 2 && spec.stride == 2 && spec.pad == 0;
        let fill = |(dst, plane): (&mut [f32], &[f32]), mut ids: Option<&mut [u32]>| {
            for oy in 0..ho {
                if pair {
                    // The 2×2, stride-2 window (the seed CNN's): branch-free.
                    let r0 = &plane[2 * oy * w..][..2 * wo];
                    let r1 = &plane[(2 * oy + 1) * w..][..2 * wo];
                    let d = &mut dst[oy * wo..][..wo];
                    match ids.as_deref_mut() {
                        Some(ids) => pool_pair_row(
                            r0,
                            r1,
                            d,
                            &mut ids[oy * wo..][..wo],
                            (2 * oy * w) as u32,
                            w as u32,
                            spec.relu,
                        ),
                        None => {
                            for (ox, o) in d.iter_mut().enumerate() {
                                let (a, b) = (r0[2 * ox], r0[2 * ox + 1]);
                                let (c, e) = (r1[2 * ox], r1[2 * ox + 1]);
                                let m = first_max(first_max(a, b), first_max(c, e));
                                *o = if spec.relu { m.max(0.0) } else { m };
                            }
                        }
                    }
                    continue;
                }
                let ys = spec.span(oy, h);
                // The 3×3, stride-2, padding-1 window (ResNet's stem): windows with all
                // nine values inside the map, without loops of data-dependent length.
                let (lo, hi) =
                    if spec.k == 3 && spec.stride == 2 && spec.pad == 1 && ys.1 - ys.0 == 3 {
                        (1.min(wo), (w / 2).clamp(1.min(wo), wo))
                    } else {
                        (wo, wo)
                    };
                if lo < hi {
                    let rows = [0, 1, 2].map(|r| &plane[(ys.0 + r) * w..][..w]);
                    pool3_interior(
                        rows,
                        ys.0 * w,
                        w,
                        lo..hi,
                        &mut dst[oy * wo..][..wo],
                        ids.as_deref_mut().map(|ids| &mut ids[oy * wo..][..wo]),
                        spec.relu,
                    );
                }
                for ox in (0..lo).chain(hi..wo) {
                    let (i, m) = spec.argmax(plane, w, ys, spec.span(ox, w));
                    dst[oy * wo + ox] = if spec.relu { m.max(0.0) } else { m };
                    if let Some(ids) = ids.as_deref_mut()
                        && (!spec.relu || m > 0.0)
                    {
                        ids[oy * wo + ox] = i as u32;
                    }
                }
            }
        };
        if keep {
            out.par_chunks_mut(ho * wo)
                .zip(x.par_chunks(h * w))
                .zip(idx.par_chunks_mut(ho * wo))
                .for_each(|(pair, ids)| fill(pair, Some(ids)));
            *self
                .saved
                .lock()
                .map_err(|_| candle_core::Error::Msg("max-pool: poisoned lock".into()))? =
                Some(std::mem::take(&mut idx));
        } else {
            out.par_chunks_mut(ho * wo)
                .zip(x.par_chunks(h * w))
                .for_each(|pair| fill(pair, None));
        }
        Ok((CpuStorage::F32(out), Shape::from((b, c, ho, wo))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let spec = self.spec;
        let (b, c, h, w) = arg.dims4()?;
        let (ho, wo) = (spec.out_size(h), spec.out_size(w));
        let grad = grad.contiguous()?;
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("max-pool: poisoned lock".into()))?
            .take();
        if let Some(ids) = saved.filter(|ids| ids.len() == b * c * ho * wo) {
            let (gs, gl) = grad.storage_and_layout();
            let candle_core::Storage::Cpu(gs) = &*gs else {
                return Err(candle_core::Error::Msg(
                    "max-pool fast path: gradient left the CPU".into(),
                ));
            };
            let g = f32_slice(gs, gl, "pool gradient")?;
            let mut dx = crate::buf::zeroed(b * c * h * w);
            dx.par_chunks_mut(h * w)
                .zip(ids.par_chunks(ho * wo))
                .zip(g.par_chunks(ho * wo))
                .for_each(|((dst, ids), gp)| {
                    for (&i, &gv) in ids.iter().zip(gp) {
                        if i != NO_GRAD {
                            dst[i as usize] += gv;
                        }
                    }
                });
            return Ok(Some(Tensor::from_vec(dx, (b, c, h, w), arg.device())?));
        }
        let arg = arg.contiguous()?;
        let (xs, xl) = arg.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let (candle_core::Storage::Cpu(xs), candle_core::Storage::Cpu(gs)) = (&*xs, &*gs) else {
            return Err(candle_core::Error::Msg(
                "max-pool fast path: tensors left the CPU".into(),
            ));
        };
        let x = f32_slice(xs, xl, "pool input")?;
        let g = f32_slice(gs, gl, "pool gradient")?;
        let mut dx = crate::buf::zeroed(b * c * h * w);
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
pub fn pool_fast_path_applies(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32
}

/// Max-pool (optionally followed by ReLU) on the CPU fast path. The caller checks the
/// shape (rank 4, window fits).
pub fn max_pool2d_cpu(x: &Tensor, spec: PoolSpec) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(MaxPool::new(spec, x.track_op()))
}

impl MaxPool {
    /// The op for one pool; `keep` when its input will need a gradient (the forward then
    /// keeps each window's argmax).
    pub(crate) fn new(spec: PoolSpec, keep: bool) -> Self {
        Self {
            spec,
            keep,
            saved: Mutex::new(None),
        }
    }
}
