//! CPU fast path for 2-D convolution: one GEMM over the whole batch, `W [C_out, C_in·k·k]`
//! times the column matrix `[C_in·k·k, N·H_out·W_out]`, and a hand-written backward.
//!
//! The column matrix is never materialised: the GEMM packs its blocks straight from a
//! zero-padded copy of the input (implicit im2col, [`Im2colB`]), where every tap of every
//! output pixel is an in-bounds read and a run of output pixels is a (strided) run of the
//! copy. The backward:
//!
//! - input gradient, stride 1: the convolution of the output gradient with the kernel
//!   rotated by 180° and its channel axes swapped (padding `k − 1 − p`), on the same
//!   implicit-im2col GEMM; other strides: `Wᵀ·dY` folded back by col2im;
//! - weight gradient, stride 1: [`crate::sgemm`]'s correlation kernel on the output
//!   gradient laid out at the padded input's row pitch (each tap is a constant offset,
//!   nothing is packed); small maps, where that layout would waste a third of the work,
//!   and other strides: `dY·colsᵀ` with the transposed columns packed from the padded
//!   input ([`Im2colTB`]);
//! - bias gradient: per-channel sums; the input gradient is skipped for the network input.
//!
//! candle 0.11's own CPU convolution runs one GEMM per image and computes its input
//! gradient with a direct `conv_transpose2d` (≈ 30 GFLOP/s here); its backward is about
//! 5.7× its forward. This path keeps candle's tensor and autograd model (a [`CustomOp3`]
//! with a `bwd`), so everything around it — optimizers, parity tests, Grad-CAM — is
//! unchanged. It is used for `f32` tensors on the CPU only; other devices and dtypes go
//! through candle's `conv2d`. Without AVX-512 or with [`crate::set_cpu_sgemm`]`(false)` it
//! materialises the columns and multiplies with candle's matmul (the `gemm` crate).

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::sgemm::{Corr, NR, PackB, View, cpu_sgemm_active, sgemm, sgemm_src, wgrad_corr};

/// Geometry of one convolution (square kernel, equal stride and padding in both axes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geom {
    b: usize,
    ci: usize,
    h: usize,
    w: usize,
    co: usize,
    k: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    fn new(x: &[usize], wt: &[usize], stride: usize, pad: usize) -> candle_core::Result<Self> {
        let (&[b, ci, h, w], &[co, wci, kh, kw]) = (x, wt) else {
            return Err(candle_core::Error::Msg(format!(
                "conv2d: expected input [N, C, H, W] and kernel [O, C, k, k], got {x:?} and {wt:?}"
            )));
        };
        if wci != ci || kh != kw || kh == 0 || stride == 0 {
            return Err(candle_core::Error::Msg(format!(
                "conv2d: kernel {wt:?} does not fit input {x:?} (stride {stride})"
            )));
        }
        if h + 2 * pad < kh || w + 2 * pad < kw {
            return Err(candle_core::Error::Msg(format!(
                "conv2d: input {x:?} with padding {pad} is smaller than the {kh}×{kw} kernel"
            )));
        }
        Ok(Self {
            b,
            ci,
            h,
            w,
            co,
            k: kh,
            stride,
            pad,
            ho: (h + 2 * pad - kh) / stride + 1,
            wo: (w + 2 * pad - kw) / stride + 1,
        })
    }

    /// Rows of the column matrix: `C_in·k·k`.
    fn rows(&self) -> usize {
        self.ci * self.k * self.k
    }

    /// Output pixels per image.
    fn l(&self) -> usize {
        self.ho * self.wo
    }

    /// Columns of the column matrix: `N·H_out·W_out`.
    fn n(&self) -> usize {
        self.b * self.l()
    }

    /// The output columns `ox` whose input column `ox·s + j − p` lies inside `[0, w)`,
    /// as a half-open range.
    fn valid_x(&self, j: usize) -> (usize, usize) {
        valid_range(self.wo, self.w, self.stride, self.pad, j)
    }

    fn valid_y(&self, i: usize) -> (usize, usize) {
        valid_range(self.ho, self.h, self.stride, self.pad, i)
    }
}

/// Output positions `o` in `[0, out)` with `o·s + t − p` in `[0, size)`.
fn valid_range(out: usize, size: usize, s: usize, p: usize, t: usize) -> (usize, usize) {
    // o·s + t ≥ p  ⇔  o ≥ ceil((p − t) / s)
    let lo = if t >= p { 0 } else { (p - t).div_ceil(s) };
    // o·s + t − p < size  ⇔  o·s < size + p − t
    let hi = if size + p <= t {
        0
    } else {
        (size + p - t).div_ceil(s).min(out)
    };
    (lo.min(hi), hi)
}

/// `x` `[B, C, H, W]` (contiguous) → columns `[C·k·k, B·Ho·Wo]`.
fn im2col(x: &[f32], g: &Geom) -> Vec<f32> {
    let (n, l, k) = (g.n(), g.l(), g.k);
    let mut cols = vec![0f32; g.rows() * n];
    cols.par_chunks_mut(n).enumerate().for_each(|(row, dst)| {
        let c = row / (k * k);
        let (i, j) = ((row / k) % k, row % k);
        let (y0, y1) = g.valid_y(i);
        let (x0, x1) = g.valid_x(j);
        for b in 0..g.b {
            let plane = &x[(b * g.ci + c) * g.h * g.w..][..g.h * g.w];
            let dst_b = &mut dst[b * l..(b + 1) * l];
            for oy in y0..y1 {
                let y = oy * g.stride + i - g.pad;
                let src = &plane[y * g.w..(y + 1) * g.w];
                let drow = &mut dst_b[oy * g.wo..(oy + 1) * g.wo];
                if g.stride == 1 {
                    let off = x0 + j - g.pad;
                    drow[x0..x1].copy_from_slice(&src[off..off + (x1 - x0)]);
                } else {
                    for (ox, d) in drow.iter_mut().enumerate().take(x1).skip(x0) {
                        *d = src[ox * g.stride + j - g.pad];
                    }
                }
            }
        }
    });
    cols
}

/// Columns `[C·k·k, B·Ho·Wo]` (or, `grouped`, `[B, C·k·k, Ho·Wo]`) → `[B, C, H, W]`,
/// summing overlapping contributions.
fn col2im(cols: &[f32], g: &Geom, grouped: bool) -> Vec<f32> {
    let (n, l, k) = (g.n(), g.l(), g.k);
    let mut out = vec![0f32; g.b * g.ci * g.h * g.w];
    out.par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(plane, dst)| {
            let (b, c) = (plane / g.ci, plane % g.ci);
            for i in 0..k {
                let (y0, y1) = g.valid_y(i);
                for j in 0..k {
                    let (x0, x1) = g.valid_x(j);
                    let row = (c * k + i) * k + j;
                    let start = if grouped {
                        (b * g.rows() + row) * l
                    } else {
                        row * n + b * l
                    };
                    let src = &cols[start..][..l];
                    for oy in y0..y1 {
                        let y = oy * g.stride + i - g.pad;
                        let srow = &src[oy * g.wo..(oy + 1) * g.wo];
                        let drow = &mut dst[y * g.w..(y + 1) * g.w];
                        if g.stride == 1 {
                            let off = x0 + j - g.pad;
                            for (d, s) in drow[off..off + (x1 - x0)].iter_mut().zip(&srow[x0..x1]) {
                                *d += *s;
                            }
                        } else {
                            for (ox, s) in srow.iter().enumerate().take(x1).skip(x0) {
                                drow[ox * g.stride + j - g.pad] += *s;
                            }
                        }
                    }
                }
            }
        });
    out
}

/// The contiguous `f32` data of a CPU tensor argument.
pub(crate) fn f32_slice<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => Err(candle_core::Error::Msg(format!(
            "conv2d fast path: {what} is not contiguous"
        ))),
    }
}

/// `conv2d(x, w) + bias` as one custom op; keeps the forward's columns for the backward.
pub(crate) struct ConvOp {
    stride: usize,
    pad: usize,
    /// The forward's im2col matrix, taken by the backward (filled only when a gradient
    /// will be needed).
    saved_cols: Mutex<Option<Tensor>>,
    keep_cols: bool,
}

impl ConvOp {
    /// The op for one convolution; `keep_cols` when its kernel will need a gradient.
    pub(crate) fn new(stride: usize, pad: usize, keep_cols: bool) -> Self {
        Self {
            stride,
            pad,
            saved_cols: Mutex::new(None),
            keep_cols,
        }
    }
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "cxr-conv2d-im2col"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geom::new(lx.dims(), lw.dims(), self.stride, self.pad)?;
        let x = f32_slice(sx, lx, "input")?;
        let w = f32_slice(sw, lw, "kernel")?;
        let bias = f32_slice(sb, lb, "bias")?;
        if bias.len() != g.co {
            return Err(candle_core::Error::Msg(format!(
                "conv2d: bias has {} values for {} output channels",
                bias.len(),
                g.co
            )));
        }
        let (n, l) = (g.n(), g.l());
        if cpu_sgemm_active() {
            // W [Co, C·k·k] · cols [C·k·k, N], the columns packed straight from x, written
            // as [B, Co, Ho·Wo] with the bias.
            let mut out = crate::buf::zeroed(g.b * g.co * l);
            let a = View::row_major(w, g.rows());
            let padded = Padded::new(x, g);
            let src = Im2colB(&padded);
            if sgemm_src(g.co, n, g.rows(), a, &src, &mut out, l, Some(bias)).is_some() {
                return Ok((CpuStorage::F32(out), Shape::from((g.b, g.co, g.ho, g.wo))));
            }
        }
        let cols = Tensor::from_vec(im2col(x, &g), (g.rows(), n), &Device::Cpu)?;
        let wm = Tensor::from_slice(w, (g.co, g.rows()), &Device::Cpu)?;
        let res = wm.matmul(&cols)?; // [Co, N]
        if self.keep_cols {
            *self
                .saved_cols
                .lock()
                .map_err(|_| candle_core::Error::Msg("conv2d: poisoned lock".into()))? = Some(cols);
        }
        let (storage, layout) = res.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            return Err(candle_core::Error::Msg("conv2d: GEMM left the CPU".into()));
        };
        let r = f32_slice(cpu, layout, "GEMM result")?;
        let mut out = vec![0f32; g.b * g.co * l];
        out.par_chunks_mut(g.co * l)
            .enumerate()
            .for_each(|(b, ob)| {
                for (c, (dst, &bc)) in ob.chunks_mut(l).zip(bias).enumerate() {
                    for (d, s) in dst.iter_mut().zip(&r[c * n + b * l..][..l]) {
                        *d = *s + bc;
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((g.b, g.co, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = Geom::new(x.dims(), w.dims(), self.stride, self.pad)?;
        if cpu_sgemm_active() {
            return self.bwd_sgemm(&g, x, w, bias, grad);
        }
        // grad [B, Co, Ho, Wo] → [Co, B·Ho·Wo]
        let gm = candle_grad_matrix(grad, &g)?;
        let grad_b = if bias.track_op() {
            Some(gm.sum(1)?)
        } else {
            None
        };
        let grad_w = if w.track_op() {
            let saved = self
                .saved_cols
                .lock()
                .map_err(|_| candle_core::Error::Msg("conv2d: poisoned lock".into()))?
                .take();
            let cols = match saved {
                Some(c) => c,
                None => x.detach().contiguous()?.apply_op1_no_bwd(&Im2Col(g))?,
            };
            Some(gm.matmul(&cols.t()?)?.reshape(w.dims())?)
        } else {
            None
        };
        let grad_x = if x.track_op() {
            let wm = w.detach().reshape((g.co, g.rows()))?;
            let dcols = wm.t()?.matmul(&gm)?; // [C·k·k, N]
            Some(dcols.apply_op1_no_bwd(&Col2Im(g))?)
        } else {
            None
        };
        Ok((grad_x, grad_w, grad_b))
    }
}

/// The three gradients of [`ConvOp`] as candle's `bwd` returns them.
type Grads = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

/// Runs `f` on the contiguous `f32` data of a CPU tensor.
pub(crate) fn with_f32<R>(
    t: &Tensor,
    what: &str,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return Err(candle_core::Error::Msg(format!(
            "CPU fast path: {what} is not on the CPU"
        )));
    };
    f(f32_slice(cpu, layout, what)?)
}

/// The upstream gradient `[B, Co, Ho, Wo]` as the contiguous `[Co, B·Ho·Wo]` matrix.
fn candle_grad_matrix(grad: &Tensor, g: &Geom) -> candle_core::Result<Tensor> {
    grad.transpose(0, 1)?.contiguous()?.reshape((g.co, g.n()))
}

impl ConvOp {
    /// The backward with this crate's GEMM, reading the upstream gradient `[B, Co, L]`
    /// in place as `[Co, B·L]`: weight gradient `dY·colsᵀ` with the columns packed
    /// straight from `x`; input gradient, for stride 1, as the convolution of `dY` with
    /// the rotated kernel (again packed straight from `dY`), otherwise `Wᵀ·dY` folded back
    /// by col2im. A GEMM that declines falls back to candle's matmul.
    fn bwd_sgemm(
        &self,
        g: &Geom,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Grads> {
        let (n, l, rows) = (g.n(), g.l(), g.rows());
        let grad = grad.contiguous()?;
        // The forward on this path keeps no columns; drop any the fallback left.
        let _ = self
            .saved_cols
            .lock()
            .map_err(|_| candle_core::Error::Msg("conv2d: poisoned lock".into()))?
            .take();
        with_f32(&grad, "gradient", |dy| {
            let dym = View::grouped(dy, g.co, l);
            let grad_b = if bias.track_op() {
                Some(Tensor::from_vec(
                    channel_sums(dy, g.co, l),
                    g.co,
                    &Device::Cpu,
                )?)
            } else {
                None
            };
            let grad_w = if w.track_op() {
                let x = x.detach().contiguous()?;
                let mut gw = vec![0f32; g.co * rows];
                let done = with_f32(&x, "input", |xd| {
                    if g.stride == 1 && weight_grad_corr(dy, xd, g, &mut gw).is_some() {
                        return Ok(Some(()));
                    }
                    let padded = Padded::new(xd, *g);
                    let src = Im2colTB(&padded);
                    Ok(sgemm_src(g.co, rows, n, dym, &src, &mut gw, rows, None))
                })?;
                match done {
                    Some(()) => Some(Tensor::from_vec(gw, w.dims(), &Device::Cpu)?),
                    None => {
                        let cols = x.apply_op1_no_bwd(&Im2Col(*g))?;
                        Some(
                            candle_grad_matrix(&grad, g)?
                                .matmul(&cols.t()?)?
                                .reshape(w.dims())?,
                        )
                    }
                }
            } else {
                None
            };
            let grad_x = if x.track_op() {
                let w = w.detach().contiguous()?;
                let dx = with_f32(&w, "kernel", |wd| Ok(input_grad(dy, wd, g)))?;
                let dx = match dx {
                    Some(dx) => dx,
                    None => {
                        let dc = w
                            .reshape((g.co, rows))?
                            .t()?
                            .matmul(&candle_grad_matrix(&grad, g)?)?;
                        with_f32(&dc, "columns", |c| Ok(col2im(c, g, false)))?
                    }
                };
                Some(Tensor::from_vec(dx, (g.b, g.ci, g.h, g.w), &Device::Cpu)?)
            } else {
                None
            };
            Ok((grad_x, grad_w, grad_b))
        })
    }
}

/// The weight gradient of a stride-1 convolution with the correlation kernel
/// ([`wgrad_corr`]): the output gradient is laid out on the padded input's row pitch, so
/// each kernel tap is one constant offset into the padded input and nothing is packed.
/// `None` when the kernel declines.
fn weight_grad_corr(dy: &[f32], x: &[f32], g: &Geom, gw: &mut [f32]) -> Option<()> {
    let wp = g.w + 2 * g.pad;
    let t = (g.ho * wp).next_multiple_of(16);
    // The kernel multiplies the padding columns and the rounding to 16 too; past a fifth
    // more work than the output has pixels (small maps: ResNet18's 8×8 stage at 64 px,
    // 7.4 against 5.4 ms for its weight gradient, and everything smaller) the packed
    // GEMM is faster.
    if 5 * t > 6 * g.l() {
        return None;
    }
    let offs: Vec<usize> = (0..g.k * g.k).map(|q| (q / g.k) * wp + q % g.k).collect();
    let max_off = offs.iter().copied().max().unwrap_or(0);
    let mut dyp = vec![0f32; g.b * g.co * t];
    dyp.par_chunks_mut(t)
        .zip(dy.par_chunks(g.l()))
        .for_each(|(dst, src)| {
            for (oy, row) in src.chunks_exact(g.wo).enumerate() {
                dst[oy * wp..oy * wp + g.wo].copy_from_slice(row);
            }
        });
    let xp = Padded::with_plane(x, *g, max_off + t + 2);
    let c = Corr {
        dy: &dyp,
        x: &xp.data,
        b: g.b,
        co: g.co,
        ci: g.ci,
        t,
        plane: xp.plane,
        offs: &offs,
    };
    wgrad_corr(&c, gw)
}

/// The input gradient `[B, C, H, W]` of a convolution from its output gradient `dy`
/// (`[B, Co, Ho, Wo]`) with this crate's GEMM; `None` when the GEMM declines.
fn input_grad(dy: &[f32], w: &[f32], g: &Geom) -> Option<Vec<f32>> {
    let (n, l, rows) = (g.n(), g.l(), g.rows());
    if g.stride == 1 && g.pad < g.k {
        let mut dx = crate::buf::zeroed(g.x_len());
        // dX = conv(dY, rot180(W)ᵀ) with padding k − 1 − p: no column matrix, no col2im.
        let gt = Geom {
            b: g.b,
            ci: g.co,
            h: g.ho,
            w: g.wo,
            co: g.ci,
            k: g.k,
            stride: 1,
            pad: g.k - 1 - g.pad,
            ho: g.h,
            wo: g.w,
        };
        let wf = flipped_kernel(w, g);
        let padded = Padded::new(dy, gt);
        let src = Im2colB(&padded);
        sgemm_src(
            g.ci,
            gt.n(),
            gt.rows(),
            View::row_major(&wf, gt.rows()),
            &src,
            &mut dx,
            g.h * g.w,
            None,
        )?;
        return Some(dx);
    }
    let mut dcols = vec![0f32; rows * n];
    sgemm(
        rows,
        n,
        g.co,
        View::strided(w, 1, rows),
        View::grouped(dy, g.co, l),
        &mut dcols,
        l,
        None,
    )?;
    Some(col2im(&dcols, g, true))
}

/// A zero-padded copy of a convolution's input: `[B, C, Hp·Wp]` with `Hp = H + 2p`,
/// `Wp = W + 2p`, so every kernel tap of every output pixel is an in-bounds read and a
/// run of output pixels along a row is a (strided) run of the copy.
struct Padded {
    data: Vec<f32>,
    g: Geom,
    /// Padded row length.
    wp: usize,
    /// Padded plane size.
    plane: usize,
}

impl Padded {
    fn new(x: &[f32], g: Geom) -> Self {
        Self::with_plane(x, g, 0)
    }

    /// Planes of at least `min_plane` values (zeros past the padded image).
    fn with_plane(x: &[f32], g: Geom, min_plane: usize) -> Self {
        let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
        let plane = (hp * wp).max(min_plane);
        let mut data = crate::buf::zeroed(g.b * g.ci * plane);
        data.par_chunks_mut(plane)
            .zip(x.par_chunks(g.h * g.w))
            .for_each(|(dst, src)| {
                for (y, row) in src.chunks_exact(g.w).enumerate() {
                    let at = (y + g.pad) * wp + g.pad;
                    dst[at..at + g.w].copy_from_slice(row);
                }
            });
        Self { data, g, wp, plane }
    }

    /// Whether the copy holds every plane of its geometry.
    fn is_whole(&self) -> bool {
        self.data.len() == self.g.b * self.g.ci * self.plane
    }

    /// Offset of column-matrix row `r` (channel, tap `(i, j)`) from a segment's base.
    fn row_offset(&self, r: usize) -> usize {
        let k = self.g.k;
        let (ch, t) = (r / (k * k), r % (k * k));
        ch * self.plane + (t / k) * self.wp + t % k
    }

    /// Offset of a segment's first pixel for channel 0, tap (0, 0).
    fn seg_base(&self, seg: &Seg) -> usize {
        let s = self.g.stride;
        seg.b * self.g.ci * self.plane + seg.oy * s * self.wp + seg.ox * s
    }
}

/// The column matrix `[C·k·k, B·Ho·Wo]` of an image batch, never materialised: the GEMM
/// packs its blocks straight from the padded input (implicit im2col).
struct Im2colB<'a>(&'a Padded);

/// One run of consecutive output pixels in one output row: image `b`, row `oy`, columns
/// `ox..ox + len`, stored from offset `at` of the packed row (or column).
#[derive(Clone, Copy, Default)]
struct Seg {
    b: usize,
    oy: usize,
    ox: usize,
    len: usize,
    at: usize,
}

impl Geom {
    /// Splits output pixels `p0..p0 + count` (batch-wide numbering) into row segments.
    fn segments(&self, p0: usize, count: usize, mut f: impl FnMut(Seg)) {
        let l = self.l();
        let mut p = p0;
        while p < p0 + count {
            let (b, r) = (p / l, p % l);
            let (oy, ox) = (r / self.wo, r % self.wo);
            let len = (self.wo - ox).min(p0 + count - p);
            f(Seg {
                b,
                oy,
                ox,
                len,
                at: p - p0,
            });
            p += len;
        }
    }

    /// Number of values in the input `[B, C, H, W]`.
    fn x_len(&self) -> usize {
        self.b * self.ci * self.h * self.w
    }
}

impl PackB for Im2colB<'_> {
    fn fits(&self, k: usize, n: usize) -> bool {
        let p = self.0;
        k == p.g.rows() && n == p.g.n() && p.is_whole()
    }

    fn pack(&self, k0: usize, kc: usize, c0: usize, cols: usize, dst: &mut [f32]) {
        let p = self.0;
        let mut segs = [(0usize, 0usize, 0usize); NR];
        let mut ns = 0;
        p.g.segments(c0, cols, |seg| {
            segs[ns] = (p.seg_base(&seg), seg.at, seg.len);
            ns += 1;
        });
        if p.g.stride != 1 {
            let rows: Vec<usize> = (k0..k0 + kc).map(|r| p.row_offset(r)).collect();
            pack_strided(&p.data, p.g.stride, &rows, &segs[..ns], cols, dst);
            return;
        }
        for (kk, drow) in dst.chunks_exact_mut(NR).enumerate().take(kc) {
            let off = p.row_offset(k0 + kk);
            // Segments in increasing `at`: a later one overwrites what `copy_short` wrote
            // past an earlier one's end, and the tail is zeroed below.
            for &(base, at, len) in &segs[..ns] {
                copy_short(drow, at, len, &p.data[base + off..]);
            }
            drow[cols..].fill(0.0);
        }
    }
}

simd_fn! {
/// Packed rows of the implicit column matrix of a strided convolution: row `kk` (source
/// offset `rows[kk]`) of `dst` gets each segment `(base, at, len)` of input values from
/// `base + rows[kk]`, every `s`-th one, at `at`; past `cols` zeros. Compiled with AVX-512
/// where the CPU has it (`simd_fn!`), where stride 2 takes the even lanes of 32 values in
/// one permutation (the stem's forward: 4.9 → 3.6 ms at 64 px, batch 32).
fn pack_strided(data: &[f32], s: usize, rows: &[usize], segs: &[(usize, usize, usize)], cols: usize, dst: &mut [f32]) {
    for (drow, &off) in dst.chunks_exact_mut(NR).zip(rows) {
        // Segments in increasing `at`: a later one overwrites what `copy_even` wrote past
        // an earlier one's end, and the tail is zeroed below.
        for &(base, at, len) in segs {
            let src = &data[base + off..];
            if s == 2 {
                copy_even(drow, at, len, src);
            } else {
                for (v, x) in drow[at..at + len].iter_mut().zip(src.iter().step_by(s)) {
                    *v = *x;
                }
            }
        }
        drow[cols..].fill(0.0);
    }
}
}

/// Copies `src[0], src[2], …` (`len` values) to `drow[at..]`, sixteen at a time from
/// 32-value windows where both sides have room: like [`copy_short`], it may write past
/// `at + len` (the caller overwrites or zeroes that).
#[inline(always)]
fn copy_even(drow: &mut [f32], at: usize, len: usize, src: &[f32]) {
    let mut q = 0;
    while q < len {
        if let (Some(d), Some(w)) = (
            drow[at + q..].first_chunk_mut::<16>(),
            src[2 * q..].first_chunk::<32>(),
        ) {
            *d = std::array::from_fn(|i| w[2 * i]);
            q += 16;
        } else {
            for (v, x) in drow[at + q..at + len]
                .iter_mut()
                .zip(src[2 * q..].iter().step_by(2))
            {
                *v = *x;
            }
            break;
        }
    }
}

/// Copies `len` values from `src` to `drow[at..]`. Segments of at most 16 values (the
/// rows of small maps) go as one fixed 16-value move where both sides have room, which
/// may write past `at + len` (the caller overwrites or zeroes that); LLVM turns a plain
/// copy loop into a call to `memmove`, as costly as the few values it copies.
#[inline(always)]
fn copy_short(drow: &mut [f32], at: usize, len: usize, src: &[f32]) {
    if len <= 16
        && let (Some(d), Some(s)) = (drow[at..].first_chunk_mut::<16>(), src.first_chunk::<16>())
    {
        *d = *s;
        return;
    }
    drow[at..at + len].copy_from_slice(&src[..len]);
}

/// The transposed column matrix `[B·Ho·Wo, C·k·k]`, packed straight from the padded input
/// (the weight gradient's right operand).
struct Im2colTB<'a>(&'a Padded);

impl PackB for Im2colTB<'_> {
    fn fits(&self, k: usize, n: usize) -> bool {
        let p = self.0;
        k == p.g.n() && n == p.g.rows() && p.is_whole()
    }

    fn pack(&self, k0: usize, kc: usize, c0: usize, cols: usize, dst: &mut [f32]) {
        let p = self.0;
        let s = p.g.stride;
        if cols < NR {
            dst.fill(0.0);
        }
        let mut offs = [0usize; NR];
        for (jj, o) in offs.iter_mut().enumerate().take(cols) {
            *o = p.row_offset(c0 + jj);
        }
        // Segment by segment (at most one output row of pixels), every column: the
        // strided writes of one segment stay within a few KiB of `dst`.
        p.g.segments(k0, kc, |seg| {
            let base = p.seg_base(&seg);
            let block = &mut dst[seg.at * NR..(seg.at + seg.len) * NR];
            for (q, drow) in block.chunks_exact_mut(NR).enumerate() {
                let at = base + q * s;
                for (d, &o) in drow.iter_mut().zip(&offs[..cols]) {
                    *d = p.data[at + o];
                }
            }
        });
    }
}

/// The kernel `[Co, C, k, k]` rotated by 180° with its channel axes swapped, as the
/// row-major `[C, Co·k·k]` matrix: the input gradient of a stride-1 convolution is the
/// convolution of the output gradient with it.
///
/// Blocks of 16 output rows (input channels) per task: for each output channel their
/// source is one contiguous run of `W`, and the 16 destination rows advance together
/// (a row-by-row walk read `W` at a stride of `C·k·k` values, a cache line per tap).
fn flipped_kernel(w: &[f32], g: &Geom) -> Vec<f32> {
    const BLOCK: usize = 16;
    let kk2 = g.k * g.k;
    let row = g.co * kk2;
    let mut out = vec![0f32; w.len()];
    if row == 0 {
        return out;
    }
    out.par_chunks_mut(BLOCK * row)
        .enumerate()
        .for_each(|(blk, rows)| {
            let ci0 = blk * BLOCK;
            for co in 0..g.co {
                let src = &w[(co * g.ci + ci0) * kk2..];
                for (taps, orow) in src.chunks_exact(kk2).zip(rows.chunks_exact_mut(row)) {
                    // tap (i, j) ← (k − 1 − i, k − 1 − j): the taps reversed
                    let dst = &mut orow[co * kk2..][..kk2];
                    if let (Ok(d), Ok(s)) = (
                        <&mut [f32; 9]>::try_from(&mut *dst),
                        <&[f32; 9]>::try_from(taps),
                    ) {
                        // 3×3 (exactly nine taps): a fixed-size move
                        *d = std::array::from_fn(|t| s[8 - t]);
                        continue;
                    }
                    for (d, s) in dst.iter_mut().zip(taps.iter().rev()) {
                        *d = *s;
                    }
                }
            }
        });
    out
}

/// Sum of each channel of `dy` `[B, C, L]` (the bias gradient), accumulated in f64 across
/// lane-wise f32 partial sums of each row.
fn channel_sums(dy: &[f32], c: usize, l: usize) -> Vec<f32> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut total = 0f64;
            for row in dy.chunks_exact(l).skip(ch).step_by(c) {
                let mut lanes = [0f32; 16];
                let mut it = row.chunks_exact(16);
                for chunk in &mut it {
                    for (a, v) in lanes.iter_mut().zip(chunk) {
                        *a += *v;
                    }
                }
                let tail: f32 = it.remainder().iter().sum();
                total += lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + f64::from(tail);
            }
            total as f32
        })
        .collect()
}

/// `[B, C, H, W]` → columns, as a (gradient-free) op.
struct Im2Col(Geom);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "cxr-im2col"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = f32_slice(s, l, "input")?;
        Ok((
            CpuStorage::F32(im2col(x, &g)),
            Shape::from((g.rows(), g.n())),
        ))
    }
}

/// Columns → `[B, C, H, W]` (summing overlaps), as a (gradient-free) op.
struct Col2Im(Geom);

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "cxr-col2im"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.0;
        let cols = f32_slice(s, l, "columns")?;
        Ok((
            CpuStorage::F32(col2im(cols, &g, false)),
            Shape::from((g.b, g.ci, g.h, g.w)),
        ))
    }
}

/// Whether the fast path applies: `f32` tensors on the CPU.
pub fn conv_fast_path_applies(x: &Tensor, w: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32 && w.dtype() == DType::F32
}

/// `conv2d(x, w, padding, stride) + bias` on the CPU fast path (square kernels,
/// dilation 1, one group). `bias` of `None` adds nothing. Gradients flow to `x`, `w`
/// and `bias` through candle's autograd; the input gradient is skipped when `x`
/// tracks no gradient (the network's input).
pub fn conv2d_cpu(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
) -> candle_core::Result<Tensor> {
    let zero;
    let bias = match bias {
        Some(b) => b,
        None => {
            zero = Tensor::zeros(w.dim(0)?, DType::F32, &Device::Cpu)?;
            &zero
        }
    };
    let op = ConvOp::new(stride, padding, w.track_op());
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &bias.contiguous()?, op)
}

/// Reference-path helper used by tests: candle's own `conv2d` plus bias.
#[doc(hidden)]
pub fn conv2d_candle(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
) -> candle_core::Result<Tensor> {
    let y = x.conv2d(w, padding, stride, 1, 1)?;
    match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
        None => Ok(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_range_matches_brute_force() {
        for size in 1..9 {
            for k in 1..5 {
                for s in 1..4 {
                    for p in 0..3 {
                        if size + 2 * p < k {
                            continue;
                        }
                        let out = (size + 2 * p - k) / s + 1;
                        for t in 0..k {
                            let (lo, hi) = valid_range(out, size, s, p, t);
                            for o in 0..out {
                                let pos = (o * s + t) as isize - p as isize;
                                let inside = pos >= 0 && pos < size as isize;
                                assert_eq!(
                                    inside,
                                    o >= lo && o < hi,
                                    "size {size} k {k} s {s} p {p} t {t} o {o}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
