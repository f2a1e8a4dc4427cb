//! CPU fast path for 2-D batch normalisation: one custom op per BatchNorm that
//! normalises, applies the affine map and optionally adds a residual and applies a
//! ReLU, with a hand-written backward.
//!
//! candle builds a training-mode BatchNorm from about ten tensor ops (reductions,
//! broadcast subtractions and products, square roots) and its autograd backward from
//! many more, each a full pass over the activations with a fresh allocation; the ReLU
//! and residual add after it add four more passes forward and back. Here the forward is
//! three passes over each channel (mean, variance, output) while the channel is hot in
//! cache, the backward two (the two reductions of the closed form, then the input
//! gradient), parallel over channels with rayon.
//!
//! The op keeps candle's tensor and autograd model: it is a [`CustomOp2`] (input, and
//! `[γ; β]` packed into one `[2C]` tensor) or a [`CustomOp3`] (plus the residual) whose
//! `bwd` returns the gradients of its inputs. It runs for `f32` tensors on the CPU only;
//! `cxr_models::BatchNorm2d` dispatches to it.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_conv::f32_slice;

/// What follows the normalisation inside the op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Nothing: `y = bn(x)`.
    None,
    /// `y = max(bn(x), 0)`.
    Relu,
    /// `y = max(bn(x) + r, 0)` with a residual `r` of the input's shape.
    AddRelu,
}

impl Act {
    fn relu(self) -> bool {
        !matches!(self, Act::None)
    }
}

/// Per-channel normalisation constants: the mean that is subtracted and `1/√(σ² + ε)`.
#[derive(Debug, Clone)]
pub struct Norm {
    /// The mean subtracted (batch mean in training, running mean in evaluation).
    pub mean: Vec<f32>,
    /// `1/√(σ² + ε)`.
    pub invstd: Vec<f32>,
    /// The batch mean and biased batch variance (training only; empty in evaluation).
    pub batch: Vec<(f64, f64)>,
}

/// The normalisation constants of one op, shared between its forward (which fills them
/// in training), the caller (which reads them to update the running statistics) and
/// its backward.
pub(crate) type SharedNorm = Arc<Mutex<Option<Norm>>>;

/// The fused BatchNorm op.
pub(crate) struct BnOp {
    /// Training (batch statistics, computed by the forward) or evaluation (`norm`
    /// holds the running statistics already).
    pub train: bool,
    pub eps: f64,
    pub act: Act,
    pub norm: SharedNorm,
}

/// `[N, C, H, W]` of an input layout.
fn dims(l: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    let (n, c, h, w) = l.shape().dims4()?;
    Ok((n, c, h * w))
}

/// The planes of channel `ch` (one per image) of a contiguous `[N, C, HW]` buffer.
fn planes(x: &[f32], c: usize, hw: usize, ch: usize) -> impl Iterator<Item = &[f32]> {
    x.chunks_exact(c * hw)
        .map(move |img| &img[ch * hw..(ch + 1) * hw])
}

/// Splits a contiguous `[N, C, HW]` buffer into one list of mutable planes per channel.
fn planes_mut(x: &mut [f32], c: usize, hw: usize) -> Vec<Vec<&mut [f32]>> {
    let n = x.len() / (c * hw).max(1);
    let mut out: Vec<Vec<&mut [f32]>> = (0..c).map(|_| Vec::with_capacity(n)).collect();
    for img in x.chunks_exact_mut(c * hw) {
        for (ch, plane) in img.chunks_exact_mut(hw).enumerate() {
            out[ch].push(plane);
        }
    }
    out
}

/// Sum of `f(i)` over a plane in eight f32 lanes (vectorisable), returned as f64.
#[inline(always)]
fn lane_sum(len: usize, f: impl Fn(usize) -> f32) -> f64 {
    let mut acc = [0f32; 8];
    let full = len / 8 * 8;
    let mut i = 0;
    while i < full {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += f(i + l);
        }
        i += 8;
    }
    let mut tail = 0f32;
    for j in full..len {
        tail += f(j);
    }
    acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64
}

/// `g` masked by the ReLU (`y > 0` ⇔ the pre-activation was positive) when `relu`.
#[inline(always)]
fn masked(g: f32, y: f32, relu: bool) -> f32 {
    if !relu || y > 0.0 { g } else { 0.0 }
}

// The per-plane kernels, compiled for AVX-512 where the CPU has it (`simd_fn!`); the
// same operations in the same order either way.

simd_fn! {
/// Sum of a plane ([`lane_sum`]).
fn plane_sum(p: &[f32]) -> f64 {
    lane_sum(p.len(), |i| p[i])
}
}

simd_fn! {
/// Sum of squared deviations from `mean` over a plane ([`lane_sum`]).
fn plane_sq_dev(p: &[f32], mean: f32) -> f64 {
    lane_sum(p.len(), |i| {
        let d = p[i] - mean;
        d * d
    })
}
}

simd_fn! {
/// `dst = act((src − μ)·s + β)` over a plane; `norm` is `(μ, s, β)`.
fn out_plane(dst: &mut [f32], src: &[f32], norm: (f32, f32, f32), relu: bool) {
    let (mu, s, b) = norm;
    for (d, &v) in dst.iter_mut().zip(src) {
        let t = (v - mu) * s + b;
        *d = if relu { t.max(0.0) } else { t };
    }
}
}

simd_fn! {
/// `dst = act((src − μ)·s + β + res)` over a plane; `norm` is `(μ, s, β)`.
fn out_plane_res(dst: &mut [f32], src: &[f32], res: &[f32], norm: (f32, f32, f32), relu: bool) {
    let (mu, s, b) = norm;
    for ((d, &v), &rv) in dst.iter_mut().zip(src).zip(res) {
        let t = (v - mu) * s + b + rv;
        *d = if relu { t.max(0.0) } else { t };
    }
}
}

simd_fn! {
/// `Σ g'` and `Σ g'·(x − μ)` over a plane in eight f32 lanes each (as [`lane_sum`]
/// sums), returned as f64; `g'` the masked gradient.
fn grad_sums(xp: &[f32], yp: &[f32], gp: &[f32], mu: f32, relu: bool) -> (f64, f64) {
    // Eight-value chunks of the three planes: no index checks in the loop, so it
    // vectorises.
    let mut acc0 = [0f32; 8];
    let mut acc1 = [0f32; 8];
    let (xc, yc, gc) = (xp.chunks_exact(8), yp.chunks_exact(8), gp.chunks_exact(8));
    let (xr, yr, gr) = (xc.remainder(), yc.remainder(), gc.remainder());
    for ((x, y), g) in xc.zip(yc).zip(gc) {
        for l in 0..8 {
            let gm = masked(g[l], y[l], relu);
            acc0[l] += gm;
            acc1[l] += gm * (x[l] - mu);
        }
    }
    let (mut t0, mut t1) = (0f32, 0f32);
    for ((&x, &y), &g) in xr.iter().zip(yr).zip(gr) {
        let gm = masked(g, y, relu);
        t0 += gm;
        t1 += gm * (x - mu);
    }
    let total = |acc: [f32; 8], t: f32| acc.iter().map(|&a| a as f64).sum::<f64>() + t as f64;
    (total(acc0, t0), total(acc1, t1))
}
}

simd_fn! {
/// `d = a·g' + k1·(x − μ) + k0` over a plane; `planes` is `(x, y, g)`, `coef`
/// `(a, k1, k0, μ)`.
fn dx_plane(d: &mut [f32], planes: (&[f32], &[f32], &[f32]), coef: (f32, f32, f32, f32), relu: bool) {
    let (xp, yp, gp) = planes;
    let (a, k1, k0, mu) = coef;
    for (((d, &xi), &yi), &gi) in d.iter_mut().zip(xp).zip(yp).zip(gp) {
        *d = a * masked(gi, yi, relu) + k1 * (xi - mu) + k0;
    }
}
}

simd_fn! {
/// `d = g'` (the residual's gradient) over a plane.
fn masked_plane(d: &mut [f32], yp: &[f32], gp: &[f32], relu: bool) {
    for ((d, &yi), &gi) in d.iter_mut().zip(yp).zip(gp) {
        *d = masked(gi, yi, relu);
    }
}
}

/// Per-channel batch mean and biased variance (two passes, f64 across planes).
fn batch_stats(x: &[f32], c: usize, hw: usize) -> Vec<(f64, f64)> {
    let m = (x.len() / c) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mean = planes(x, c, hw, ch).map(plane_sum).sum::<f64>() / m;
            let mf = mean as f32;
            let var = planes(x, c, hw, ch)
                .map(|p| plane_sq_dev(p, mf))
                .sum::<f64>()
                / m;
            (mean, var)
        })
        .collect()
}

/// Writes `y = act((x − μ)·s + β [+ r])` for every channel.
fn write_output(
    x: &[f32],
    r: Option<&[f32]>,
    (c, hw): (usize, usize),
    norm: &Norm,
    gamma: &[f32],
    beta: &[f32],
    relu: bool,
) -> Vec<f32> {
    let mut y = crate::buf::zeroed(x.len());
    planes_mut(&mut y, c, hw)
        .into_par_iter()
        .enumerate()
        .for_each(|(ch, outs)| {
            let (mu, s, b) = (norm.mean[ch], norm.invstd[ch] * gamma[ch], beta[ch]);
            for (img, dst) in outs.into_iter().enumerate() {
                let off = (img * c + ch) * hw;
                let src = &x[off..off + hw];
                match r {
                    Some(r) => out_plane_res(dst, src, &r[off..off + hw], (mu, s, b), relu),
                    None => out_plane(dst, src, (mu, s, b), relu),
                }
            }
        });
    y
}

impl BnOp {
    /// `y` of the input `x` (laid out as `lx`), `[γ; β]` = `gb` and the residual `r`.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        lx: &Layout,
        gb: &[f32],
        r: Option<&[f32]>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, hw) = dims(lx)?;
        if n * c * hw == 0 {
            candle_core::bail!("batch norm: empty input {:?}", lx.dims());
        }
        if gb.len() != 2 * c {
            candle_core::bail!(
                "batch norm: {} affine values for {c} channels (want 2·{c})",
                gb.len()
            );
        }
        let (gamma, beta) = gb.split_at(c);
        let mut guard = self
            .norm
            .lock()
            .map_err(|_| candle_core::Error::Msg("batch norm: poisoned lock".into()))?;
        if self.train {
            if n * hw < 2 {
                candle_core::bail!("batch norm: training needs more than one value per channel");
            }
            let stats = batch_stats(x, c, hw);
            *guard = Some(Norm {
                mean: stats.iter().map(|s| s.0 as f32).collect(),
                invstd: stats
                    .iter()
                    .map(|s| (1.0 / (s.1 + self.eps).sqrt()) as f32)
                    .collect(),
                batch: stats,
            });
        }
        let Some(norm) = guard.as_ref() else {
            candle_core::bail!("batch norm: evaluation op built without running statistics");
        };
        if norm.mean.len() != c {
            candle_core::bail!(
                "batch norm: {} running statistics for {c} channels",
                norm.mean.len()
            );
        }
        let y = write_output(x, r, (c, hw), norm, gamma, beta, self.act.relu());
        Ok((CpuStorage::F32(y), lx.shape().clone()))
    }

    /// Gradients of `x` (when `want_x`), `[γ; β]` and (for [`Act::AddRelu`], when
    /// `want_r`) the residual.
    pub(crate) fn backward(
        &self,
        x: &Tensor,
        gb: &Tensor,
        res: &Tensor,
        grad: &Tensor,
        (want_x, want_r): (bool, bool),
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, h, w) = x.dims4()?;
        let hw = h * w;
        let norm = self
            .norm
            .lock()
            .map_err(|_| candle_core::Error::Msg("batch norm: poisoned lock".into()))?
            .clone()
            .ok_or_else(|| candle_core::Error::Msg("batch norm: backward before forward".into()))?;
        let xc = x.contiguous()?;
        let gbc = gb.contiguous()?;
        let yc = res.contiguous()?;
        let gc = grad.contiguous()?;
        let (xs, xl) = xc.storage_and_layout();
        let (gbs, gbl) = gbc.storage_and_layout();
        let (ys, yl) = yc.storage_and_layout();
        let (gs, gl) = gc.storage_and_layout();
        let (
            candle_core::Storage::Cpu(xs),
            candle_core::Storage::Cpu(gbs),
            candle_core::Storage::Cpu(ys),
            candle_core::Storage::Cpu(gs),
        ) = (&*xs, &*gbs, &*ys, &*gs)
        else {
            candle_core::bail!("batch norm fast path: tensors left the CPU");
        };
        let xv = f32_slice(xs, xl, "input")?;
        let gbv = f32_slice(gbs, gbl, "affine")?;
        let yv = f32_slice(ys, yl, "output")?;
        let gv = f32_slice(gs, gl, "gradient")?;
        let gamma = &gbv[..c];
        let relu = self.act.relu();
        // g' = g masked by the ReLU (y > 0 ⇔ the pre-activation was positive): `masked`.
        // Channel by channel: Σ g' and Σ g'·(x − μ) over its planes, then at once (its
        // planes still in cache) dx = a·g' + k1·(x − μ) + k0 and, for a residual, g'.
        let m = (n * hw) as f64;
        let mut dx = crate::buf::zeroed(if want_x { xv.len() } else { 0 });
        let mut dr = crate::buf::zeroed(if want_r { xv.len() } else { 0 });
        let dx_planes = planes_mut(&mut dx, c, hw);
        let dr_planes = planes_mut(&mut dr, c, hw);
        let train = self.train;
        let sums: Vec<(f64, f64)> = dx_planes
            .into_par_iter()
            .zip(dr_planes)
            .enumerate()
            .map(|(ch, (mut dxs, mut drs))| {
                let mu = norm.mean[ch];
                let plane = |img: usize| {
                    let off = (img * c + ch) * hw;
                    (&xv[off..off + hw], &yv[off..off + hw], &gv[off..off + hw])
                };
                let (mut s0, mut s1) = (0f64, 0f64);
                for img in 0..n {
                    let (xp, yp, gp) = plane(img);
                    let (a, b) = grad_sums(xp, yp, gp, mu, relu);
                    s0 += a;
                    s1 += b;
                }
                let inv = norm.invstd[ch] as f64;
                let a = gamma[ch] as f64 * inv;
                let (a, k1, k0) = if train {
                    (
                        a as f32,
                        (-a * inv * inv * s1 / m) as f32,
                        (-a * s0 / m) as f32,
                    )
                } else {
                    (a as f32, 0.0, 0.0)
                };
                for img in 0..n {
                    let (xp, yp, gp) = plane(img);
                    if let Some(d) = dxs.get_mut(img) {
                        dx_plane(d, (xp, yp, gp), (a, k1, k0, mu), relu);
                    }
                    if let Some(d) = drs.get_mut(img) {
                        masked_plane(d, yp, gp, relu);
                    }
                }
                (s0, s1)
            })
            .collect();
        let mut dgb = vec![0f32; 2 * c];
        for (ch, &(s0, s1)) in sums.iter().enumerate() {
            dgb[ch] = (s1 * norm.invstd[ch] as f64) as f32;
            dgb[c + ch] = s0 as f32;
        }
        let dx = want_x
            .then(|| Tensor::from_vec(dx, (n, c, h, w), x.device()))
            .transpose()?;
        let dr = want_r
            .then(|| Tensor::from_vec(dr, (n, c, h, w), x.device()))
            .transpose()?;
        let dgb = gb
            .track_op()
            .then(|| Tensor::from_vec(dgb, 2 * c, gb.device()))
            .transpose()?;
        Ok((dx, dgb, dr))
    }
}

impl CustomOp2 for BnOp {
    fn name(&self) -> &'static str {
        "cxr-batch-norm"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sgb: &CpuStorage,
        lgb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(sx, lx, "input")?;
        let gb = f32_slice(sgb, lgb, "affine")?;
        self.forward(x, lx, gb, None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        gb: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dgb, _) = self.backward(x, gb, res, grad, (x.track_op(), false))?;
        Ok((dx, dgb))
    }
}

impl CustomOp3 for BnOp {
    fn name(&self) -> &'static str {
        "cxr-batch-norm-add-relu"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sgb: &CpuStorage,
        lgb: &Layout,
        sr: &CpuStorage,
        lr: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(sx, lx, "input")?;
        let gb = f32_slice(sgb, lgb, "affine")?;
        let r = f32_slice(sr, lr, "residual")?;
        if lr.shape() != lx.shape() {
            candle_core::bail!(
                "batch norm: residual {:?} does not match input {:?}",
                lr.dims(),
                lx.dims()
            );
        }
        self.forward(x, lx, gb, Some(r))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gb: &Tensor,
        r: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.backward(x, gb, res, grad, (x.track_op(), r.track_op()))
    }
}

/// Whether the fused BatchNorm applies: `f32` tensors on the CPU.
pub fn bn_fast_path_applies(x: &Tensor, params: &[&Tensor]) -> bool {
    matches!(x.device(), Device::Cpu)
        && x.dtype() == DType::F32
        && params
            .iter()
            .all(|t| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32)
}

/// Applies the fused BatchNorm (`gb` = `[γ; β]`, `[2C]`) with `act`; `residual` must be
/// given exactly for [`Act::AddRelu`]. In training the batch statistics are left in
/// the returned [`Norm`] for the running-statistics update.
pub fn batch_norm_cpu(
    x: &Tensor,
    gb: &Tensor,
    residual: Option<&Tensor>,
    train: bool,
    eps: f64,
    act: Act,
    eval_norm: Option<Norm>,
) -> candle_core::Result<(Tensor, Option<Norm>)> {
    let norm: SharedNorm = Arc::new(Mutex::new(eval_norm));
    let op = BnOp {
        train,
        eps,
        act,
        norm: norm.clone(),
    };
    let x = x.contiguous()?;
    let gb = gb.contiguous()?;
    let y = match (act, residual) {
        (Act::AddRelu, Some(r)) => x.apply_op3(&gb, &r.contiguous()?, op)?,
        (Act::AddRelu, None) | (_, Some(_)) => {
            candle_core::bail!("batch norm: a residual goes with AddRelu only")
        }
        _ => x.apply_op2(&gb, op)?,
    };
    let stats = if train {
        norm.lock()
            .map_err(|_| candle_core::Error::Msg("batch norm: poisoned lock".into()))?
            .clone()
    } else {
        None
    };
    Ok((y, stats))
}
