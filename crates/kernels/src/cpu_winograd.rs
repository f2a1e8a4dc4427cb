//! CPU fast path for the seed CNN's block `max_pool2d(relu(conv3×3(x) + bias))` (stride 1,
//! padding 1, 2×2/stride-2 pool, floor mode) as one custom op: a Winograd F(2×2, 3×3)
//! convolution whose 2×2 output tiles are exactly the pool's windows.
//!
//! Winograd's minimal filtering (Lavin & Gray, 2016) computes a 2×2 output tile from a
//! 4×4 input tile with 16 multiplications per input/output channel pair instead of 36:
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. Summed over input channels, the element-wise products
//! become 16 independent GEMMs (`M[ξ] = U[ξ]·V[ξ]`, `K × C` times `C × tiles`), run on
//! [`crate::sgemm`]'s kernel. Because a tile is a pool window, the output transform adds
//! the bias, applies the ReLU and takes the window maximum at once: the full-size
//! convolution output is never written, and only one byte per pooled value (which of the
//! four won) is kept for the backward. Tiles a floor-mode pool drops (the last row and
//! column of an odd-sized map) are not computed.
//!
//! The backward is the exact adjoint of that computation, so it is the convolution's
//! gradient: the pooled gradient goes to each window's winner (`dM = A dY Aᵀ`), the
//! weight gradient is `Gᵀ [Σ dM[ξ]·V[ξ]ᵀ] G` and the input gradient scatters
//! `B [U[ξ]ᵀ·dM[ξ]] Bᵀ` back over the overlapping input tiles.
//!
//! Images are processed in lane groups of 16 (one rayon task per group, its
//! Winograd-domain arrays in per-thread scratch): every array is laid out with the image as
//! its fastest axis, so each transform is a handful of 16-wide vector additions (compiled
//! for AVX-512 and FMA where the CPU has them, see `simd_fn!` in `simd.rs`). Within a
//! group, three tiles at a time (one 48-column panel of the GEMM kernel) go through the
//! input transform, the 16 GEMMs and the output transform, so their arrays stay in L2;
//! the transformed kernel is packed once per call for all groups and the GEMMs read `V`
//! and `dM` in place.
//! Batches are padded with zero images to a multiple of 16, so
//! `cxr_models::Conv2d::forward_relu_max_pool2d` uses the op for batches of at least
//! [`MIN_BATCH`].
//!
//! The same transforms and GEMMs also run a plain 3×3 convolution (stride 1, padding 1,
//! no bias, even maps; [`conv3x3_winograd`], which `cxr_models::Conv2d` picks for ResNet18's
//! stride-1 layers on maps of at least 8×8): the output transform writes the 2×2 tiles
//! as they are, and the backward takes the plain output gradient to the Winograd domain
//! (`dM = A dY Aᵀ`) for the same weight- and input-gradient GEMMs.
//!
//! With fewer than 8 input channels (the network's first layer) the block runs as a direct
//! 3×3 convolution in the same layout and with the same pooling epilogue: there the
//! Winograd GEMMs would have a single row. Window ties and NaN follow the fused pool's rules
//! ([`crate::cpu_pool`]): the first maximum in row-major order wins, a NaN wins, and a
//! window whose maximum is not positive passes no gradient. Floating-point results differ
//! from the direct convolution by rounding only (the transforms' constants are 0, ±1
//! and ±½).

use std::cell::RefCell;
use std::ops::Range;
use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::cpu_conv::{f32_slice, with_f32};
use crate::cpu_pool::later_wins;
use crate::sgemm::{PackedA, View, cpu_sgemm_active, sgemm_packed_a, sgemm_serial, transpose16x16};

/// Images per lane group (one 512-bit vector of `f32`).
const L: usize = 16;

/// Smallest batch the fused op is used for by [`fused_block_applies`]: smaller batches
/// would leave most of a lane group empty.
pub(crate) const MIN_BATCH: usize = 8;

/// The code of a pooled value whose window passes no gradient (ReLU cut it).
const NONE: u8 = 4;

type V16 = [f32; L];

/// Geometry of one fused block.
#[derive(Debug, Clone, Copy)]
struct WGeom {
    /// Images.
    b: usize,
    /// Input channels.
    c: usize,
    /// Output channels.
    k: usize,
    h: usize,
    w: usize,
    /// Pooled rows and columns (= tile rows and columns).
    ty: usize,
    tx: usize,
    /// Lane groups (`⌈b / 16⌉`).
    groups: usize,
}

impl WGeom {
    fn new(x: &[usize], wt: &[usize]) -> candle_core::Result<Self> {
        let (&[b, c, h, w], &[k, wc, kh, kw]) = (x, wt) else {
            return Err(candle_core::Error::Msg(format!(
                "conv3x3 + ReLU + max-pool: expected input [N, C, H, W] and kernel [O, C, 3, 3], got {x:?} and {wt:?}"
            )));
        };
        if wc != c || kh != 3 || kw != 3 {
            return Err(candle_core::Error::Msg(format!(
                "conv3x3 + ReLU + max-pool: kernel {wt:?} does not fit input {x:?} (3×3 needed)"
            )));
        }
        if h < 2 || w < 2 {
            return Err(candle_core::Error::Msg(format!(
                "conv3x3 + ReLU + max-pool: input {x:?} is smaller than one 2×2 pool window"
            )));
        }
        Ok(Self {
            b,
            c,
            k,
            h,
            w,
            ty: h / 2,
            tx: w / 2,
            groups: b.div_ceil(L),
        })
    }

    fn tiles(&self) -> usize {
        self.ty * self.tx
    }

    /// Rows and columns of the padded input the tiles read.
    fn hp(&self) -> usize {
        2 * self.ty + 2
    }

    fn wp(&self) -> usize {
        2 * self.tx + 2
    }

    /// Values of one padded, lane-interleaved input plane `[hp][wp][16]`.
    fn plane(&self) -> usize {
        self.hp() * self.wp() * L
    }
}

#[inline(always)]
fn ld(s: &[f32], at: usize) -> V16 {
    *s[at..].first_chunk::<L>().expect("16 lanes")
}

#[inline(always)]
fn st(s: &mut [f32], at: usize, v: &V16) {
    s[at..at + L].copy_from_slice(v);
}

#[inline(always)]
fn add(a: &V16, b: &V16) -> V16 {
    std::array::from_fn(|i| a[i] + b[i])
}

#[inline(always)]
fn sub(a: &V16, b: &V16) -> V16 {
    std::array::from_fn(|i| a[i] - b[i])
}

#[inline(always)]
fn neg(a: &V16) -> V16 {
    std::array::from_fn(|i| -a[i])
}

/// The kernel `[K, C, 3, 3]` transformed, `U[ξ] = (G g Gᵀ)[ξ]`, as `[16][K][C]`.
fn kernel_transform(w: &[f32], g: &WGeom) -> Vec<f32> {
    let (k, c) = (g.k, g.c);
    let mut u = vec![0f32; 16 * k * c];
    for (kc, gk) in w.chunks_exact(9).enumerate() {
        // t = G g (4×3), row by row.
        let row = |i: usize| [gk[3 * i], gk[3 * i + 1], gk[3 * i + 2]];
        let (r0, r1, r2) = (row(0), row(1), row(2));
        let t: [[f32; 3]; 4] = [
            r0,
            std::array::from_fn(|j| 0.5 * (r0[j] + r1[j] + r2[j])),
            std::array::from_fn(|j| 0.5 * (r0[j] - r1[j] + r2[j])),
            r2,
        ];
        for (r, tr) in t.iter().enumerate() {
            let us = [
                tr[0],
                0.5 * (tr[0] + tr[1] + tr[2]),
                0.5 * (tr[0] - tr[1] + tr[2]),
                tr[2],
            ];
            for (s, v) in us.into_iter().enumerate() {
                u[(4 * r + s) * k * c + kc] = v;
            }
        }
    }
    u
}

/// The weight gradient `[K, C, 3, 3]` from `dU` laid out `[16][C][K]`: `Gᵀ dU G`.
fn kernel_grad(dut: &[f32], g: &WGeom) -> Vec<f32> {
    let (k, c) = (g.k, g.c);
    let mut dw = vec![0f32; k * c * 9];
    for (kc, dst) in dw.chunks_exact_mut(9).enumerate() {
        let (kk, cc) = (kc / c, kc % c);
        let d = |xi: usize| dut[(xi * c + cc) * k + kk];
        // t = Gᵀ dU (3×4), then t G (3×3).
        let row = |r: usize| [d(4 * r), d(4 * r + 1), d(4 * r + 2), d(4 * r + 3)];
        let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
        let t: [[f32; 4]; 3] = [
            std::array::from_fn(|s| r0[s] + 0.5 * (r1[s] + r2[s])),
            std::array::from_fn(|s| 0.5 * (r1[s] - r2[s])),
            std::array::from_fn(|s| 0.5 * (r1[s] + r2[s]) + r3[s]),
        ];
        for (i, ti) in t.iter().enumerate() {
            dst[3 * i] = ti[0] + 0.5 * (ti[1] + ti[2]);
            dst[3 * i + 1] = 0.5 * (ti[1] - ti[2]);
            dst[3 * i + 2] = 0.5 * (ti[1] + ti[2]) + ti[3];
        }
    }
    dw
}

/// Scratch buffers per thread.
const SLOTS: usize = 6;

/// Per-thread scratch buffers, grown on demand and never re-zeroed: every use writes what
/// it later reads.
fn with_scratch<R>(sizes: [usize; SLOTS], f: impl FnOnce([&mut [f32]; SLOTS]) -> R) -> R {
    thread_local! {
        static SCRATCH: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    }
    fn slices<'a>(bufs: &'a mut Vec<Vec<f32>>, sizes: &[usize; SLOTS]) -> [&'a mut [f32]; SLOTS] {
        bufs.resize_with(SLOTS, Vec::new);
        let mut it = bufs.iter_mut().zip(sizes).map(|(b, &n)| {
            if b.len() < n {
                b.resize(n, 0.0);
            }
            &mut b[..n]
        });
        std::array::from_fn(|_| it.next().unwrap_or_default())
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => f(slices(&mut bufs, &sizes)),
        Err(_) => f(slices(&mut Vec::new(), &sizes)),
    })
}

/// One lane group's pooled gradient (`dp`: its images, `[b][K][ty·tx]`) lane-interleaved
/// as `[K][ty·tx][16]`, zeros for the padding images.
fn lanes_dp(dp: &[f32], g: &WGeom, dpl: &mut [f32]) {
    let kt = g.k * g.tiles();
    if dp.len() < L * kt {
        dpl.fill(0.0);
    }
    for (l, img) in dp.chunks_exact(kt).enumerate() {
        for (i, v) in img.iter().enumerate() {
            dpl[i * L + l] = *v;
        }
    }
}

/// `acc += a·x` lane by lane (a fused multiply-add where the CPU has one).
#[inline(always)]
fn fma_s(acc: &mut V16, a: f32, x: &V16) {
    for (o, v) in acc.iter_mut().zip(x) {
        *o = v.mul_add(a, *o);
    }
}

/// `acc += a·x` lane by lane, both vectors.
#[inline(always)]
fn fma_v(acc: &mut V16, a: &V16, x: &V16) {
    for ((o, u), v) in acc.iter_mut().zip(a).zip(x) {
        *o = u.mul_add(*v, *o);
    }
}

/// The images of lane group `gp` → zero-padded, lane-interleaved planes `[C][hp][wp][16]`
/// (padding 1 on the top and left; the tiles read every input row and column).
fn lanes_in(x: &[f32], g: &WGeom, gp: usize, xt: &mut [f32]) {
    static ZERO: [f32; L] = [0.0; L];
    let (wp, hw, plane) = (g.wp(), g.h * g.w, g.plane());
    let lanes = L.min(g.b - gp * L);
    let at = |q: usize| ((q / g.w + 1) * wp + q % g.w + 1) * L;
    let hp = g.hp();
    let mut t = [[0f32; L]; L];
    for (ch, dst) in xt.chunks_exact_mut(plane).enumerate() {
        // Zero the padding only (the first row and column, the rows and columns past the
        // image); every interior value is written below, all 16 lanes of it.
        let row = wp * L;
        dst[..row].fill(0.0);
        dst[(g.h + 1) * row..hp * row].fill(0.0);
        for y in 1..=g.h {
            dst[y * row..][..L].fill(0.0);
            dst[y * row + (g.w + 1) * L..(y + 1) * row].fill(0.0);
        }
        let src = |lane: usize| &x[((gp * L + lane) * g.c + ch) * hw..][..hw];
        // 16 positions of all 16 images at a time, transposed in registers.
        let mut p = 0;
        while p + L <= hw {
            let rows: [&[f32; L]; L] = std::array::from_fn(|lane| {
                if lane < lanes {
                    src(lane)[p..].first_chunk::<L>().unwrap_or(&ZERO)
                } else {
                    &ZERO
                }
            });
            if !transpose16x16(&rows, &mut t) {
                break;
            }
            for (j, v) in t.iter().enumerate() {
                if let Some(d) = dst[at(p + j)..].first_chunk_mut::<L>() {
                    *d = *v;
                }
            }
            p += L;
        }
        // The last positions (and all of them without AVX-512); absent images are zeros.
        for q in p..hw {
            for (lane, d) in dst[at(q)..][..L].iter_mut().enumerate() {
                *d = if lane < lanes { src(lane)[q] } else { 0.0 };
            }
        }
    }
}

simd_fn! {
/// `V[ξ] = Bᵀ d B` of the lane group's tiles `tiles`, laid out `[16][C][n]` (`n` = 16 per
/// tile).
fn input_transform(xt: &[f32], g: &WGeom, tiles: Range<usize>, v: &mut [f32]) {
    let (n, wp, plane) = (tiles.len() * L, g.wp(), g.plane());
    let pitch = wp * L;
    for (ch, src) in xt.chunks_exact(plane).enumerate() {
        for (j, tt) in tiles.clone().enumerate() {
            let (ty, tx) = (tt / g.tx, tt % g.tx);
            let at = (2 * ty * wp + 2 * tx) * L;
            in_tile(src, at, pitch, v, g.c * n, ch * n + j * L);
        }
    }
}
}

/// One input tile at `src[at..]` (rows `pitch` apart, columns 16 apart) → its 16
/// Winograd values at `dst[ξ·stride + off]`.
#[inline(always)]
fn in_tile(src: &[f32], at: usize, pitch: usize, dst: &mut [f32], stride: usize, off: usize) {
    // u = Bᵀ d, column by column, kept as u[4r + j].
    let mut u = [[0f32; L]; 16];
    for j in 0..4 {
        let d0 = ld(src, at + j * L);
        let d1 = ld(src, at + pitch + j * L);
        let d2 = ld(src, at + 2 * pitch + j * L);
        let d3 = ld(src, at + 3 * pitch + j * L);
        u[j] = sub(&d0, &d2);
        u[4 + j] = add(&d1, &d2);
        u[8 + j] = sub(&d2, &d1);
        u[12 + j] = sub(&d1, &d3);
    }
    // V = u B, row by row.
    for r in 0..4 {
        let (a, b, c, d) = (&u[4 * r], &u[4 * r + 1], &u[4 * r + 2], &u[4 * r + 3]);
        st(dst, 4 * r * stride + off, &sub(a, c));
        st(dst, (4 * r + 1) * stride + off, &add(b, c));
        st(dst, (4 * r + 2) * stride + off, &sub(c, b));
        st(dst, (4 * r + 3) * stride + off, &sub(b, d));
    }
}

/// The 16 GEMMs `out[ξ] = a(ξ)·b(ξ)` (`m × n` each, `out` laid out `[16][m][n]`; added to
/// `out` when `accumulate`) on the calling thread.
fn gemms<'a>(
    m: usize,
    n: usize,
    k: usize,
    a: impl Fn(usize) -> View<'a>,
    b: impl Fn(usize) -> View<'a>,
    out: &mut [f32],
    accumulate: bool,
) -> candle_core::Result<()> {
    for (xi, c) in out.chunks_exact_mut(m * n).enumerate() {
        if sgemm_serial(m, n, k, a(xi), &b(xi), c, accumulate).is_none() {
            return Err(candle_core::Error::Msg(format!(
                "conv3x3 + ReLU + max-pool: Winograd GEMM {m}×{n}×{k} does not fit its operands"
            )));
        }
    }
    Ok(())
}

/// Tiles transformed, multiplied and transformed back at a time: 3 tiles of 16 lanes are
/// one 48-column panel of the GEMM kernel, and their Winograd-domain arrays (at most
/// `16 × (K + 2C) × 48` values) stay in L2 from one step to the next.
const CHUNK_TILES: usize = 3;

/// The lane group's tiles `0..t` in runs of [`CHUNK_TILES`].
fn chunks(t: usize) -> impl Iterator<Item = Range<usize>> {
    (0..t)
        .step_by(CHUNK_TILES)
        .map(move |t0| t0..(t0 + CHUNK_TILES).min(t))
}

/// The 16 GEMMs `out[ξ] = a[ξ]·b(ξ)` with each `a[ξ]` packed once for the whole batch
/// and `b(ξ)` read in place.
fn gemms_packed<'a>(
    n: usize,
    a: &[PackedA],
    b: impl Fn(usize) -> View<'a>,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let per = out.len() / 16;
    for ((xi, c), a) in out.chunks_exact_mut(per).enumerate().zip(a) {
        if sgemm_packed_a(n, a, b(xi), c).is_none() {
            return Err(candle_core::Error::Msg(format!(
                "conv3x3 + ReLU + max-pool: Winograd GEMM ({per} outputs, {n} columns) does not fit its operands"
            )));
        }
    }
    Ok(())
}

/// The 16 matrices `U[ξ]` (`K × C`, or `C × K` when `transposed`) of a transformed
/// kernel packed for [`gemms_packed`]; `None` when a depth is over one GEMM block.
fn packed_kernel(u: &[f32], g: &WGeom, transposed: bool) -> Option<Vec<PackedA>> {
    let (k, c) = (g.k, g.c);
    (0..16)
        .map(|xi| {
            let ux = &u[xi * k * c..][..k * c];
            if transposed {
                PackedA::new(View::strided(ux, 1, c), c, k)
            } else {
                PackedA::new(View::row_major(ux, c), k, c)
            }
        })
        .collect()
}

/// A backward's per-lane-group tasks: with `want`, each group's images of `dx` (`per`
/// values an image) to write its input gradient into; else `None` for each group.
fn group_parts(dx: &mut [f32], want: bool, per: usize, groups: usize) -> Vec<Option<&mut [f32]>> {
    if want {
        dx.chunks_mut((L * per).max(1)).map(Some).collect()
    } else {
        (0..groups).map(|_| None).collect()
    }
}

/// The element-wise sum of the lane groups' parts, added in group order (deterministic);
/// `None` without parts.
fn sum_in_order(parts: impl IntoIterator<Item = Vec<f32>>) -> Option<Vec<f32>> {
    parts.into_iter().reduce(|mut acc, p| {
        acc.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        acc
    })
}

/// The transformed kernel `U` (`[16][K][C]`) and, where it was packed, its 16 packed
/// matrices (`Uᵀ` for the backward).
type Kernel<'a> = (&'a [f32], Option<&'a [PackedA]>);

/// The forward of one run of tiles: `V = Bᵀ d B` of the tiles into `v`, then the 16 GEMMs
/// `M[ξ] = U[ξ]·V[ξ]` into `mm`; returns `M` (`[16][K][n]`).
fn forward_run<'m>(
    xt: &[f32],
    g: &WGeom,
    tiles: Range<usize>,
    (u, ua): Kernel<'_>,
    v: &mut [f32],
    mm: &'m mut [f32],
) -> candle_core::Result<&'m [f32]> {
    let (k, c, n) = (g.k, g.c, tiles.len() * L);
    let v = &mut v[..16 * c * n];
    input_transform(xt, g, tiles, v);
    let v = &*v;
    let vb = |xi: usize| View::row_major(&v[xi * c * n..][..c * n], n);
    let mm = &mut mm[..16 * k * n];
    match ua {
        Some(ua) => gemms_packed(n, ua, vb, mm)?,
        None => gemms(
            k,
            n,
            c,
            |xi| View::row_major(&u[xi * k * c..][..k * c], c),
            vb,
            mm,
            false,
        )?,
    }
    Ok(mm)
}

/// The backward of one run of tiles from its `dM` (`[16][K][n]`), `xt` the lane group's
/// input planes: with `dut`, `dU[ξ]ᵀ += V[ξ]·dM[ξ]ᵀ` (`[16][C][K]`, the input transformed
/// again into `v`); with `dxt`, `dV[ξ] = U[ξ]ᵀ·dM[ξ]` (into `dv`) scattered back as
/// `B dV Bᵀ` into the padded input-gradient planes.
fn backward_run(
    (xt, dm): (&[f32], &[f32]),
    g: &WGeom,
    tiles: Range<usize>,
    (u, uta): Kernel<'_>,
    (v, dv): (&mut [f32], &mut [f32]),
    dut: Option<&mut [f32]>,
    dxt: Option<&mut [f32]>,
) -> candle_core::Result<()> {
    let (k, c, n) = (g.k, g.c, tiles.len() * L);
    if let Some(d) = dut {
        let v = &mut v[..16 * c * n];
        input_transform(xt, g, tiles.clone(), v);
        let v = &*v;
        // dU[ξ]ᵀ += V[ξ]·dM[ξ]ᵀ: C × K over these tiles.
        gemms(
            c,
            k,
            n,
            |xi| View::row_major(&v[xi * c * n..][..c * n], n),
            |xi| View::strided(&dm[xi * k * n..][..k * n], 1, n),
            d,
            true,
        )?;
    }
    if let Some(dxt) = dxt {
        // dV[ξ] = U[ξ]ᵀ·dM[ξ]: C × these tiles over K.
        let dv = &mut dv[..16 * c * n];
        let dmb = |xi: usize| View::row_major(&dm[xi * k * n..][..k * n], n);
        match uta {
            Some(uta) => gemms_packed(n, uta, dmb, dv)?,
            None => gemms(
                c,
                n,
                k,
                |xi| View::strided(&u[xi * k * c..][..k * c], 1, c),
                dmb,
                dv,
                false,
            )?,
        }
        input_grad(dv, g, tiles, dxt);
    }
    Ok(())
}

simd_fn! {
/// Output transform `Aᵀ M A` of the lane group's tiles `tiles` (`mm`: `[16][K][n]`) with
/// bias, ReLU and the window maximum: pooled values into `out` (the group's images,
/// `[b][K][ty·tx]`) and winner codes into `codes` (`[K][nt]`, all the group's tiles).
fn output_transform(
    mm: &[f32],
    bias: &[f32],
    g: &WGeom,
    tiles: Range<usize>,
    out: &mut [f32],
    codes: &mut [u8],
) {
    let (t, k) = (g.tiles(), g.k);
    let (nt, n) = (t * L, tiles.len() * L);
    let images = out.len() / (k * t);
    let mut pooled = [[0f32; L]; L];
    for (kk, code) in codes.chunks_exact_mut(nt).enumerate() {
        let bk = bias[kk];
        let mut first = tiles.start;
        for (j, tt) in tiles.clone().enumerate() {
            let y = out_tile(mm, k * n, kk * n + j * L);
            pooled[tt - first] = pool_lanes(&y, bk, &mut code[tt * L..][..L]);
            if tt - first == L - 1 || tt + 1 == tiles.end {
                store_pooled(&pooled, tt - first + 1, first, kk, images, g, out);
                first = tt + 1;
            }
        }
    }
}
}

/// The window maxima of 16 lanes' 2×2 outputs `y` (`[y00, y01, y10, y11]`) plus `bias`,
/// after the ReLU, and into `code` which of the four won ([`NONE`]: no gradient).
#[inline(always)]
fn pool_lanes(y: &[V16; 4], bias: f32, code: &mut [u8]) -> V16 {
    let mut pooled = [0f32; L];
    for (l, (p, c)) in pooled.iter_mut().zip(code.iter_mut()).enumerate() {
        let (a, b) = (y[0][l] + bias, y[1][l] + bias);
        let (cc, d) = (y[2][l] + bias, y[3][l] + bias);
        let top = later_wins(a, b);
        let m0 = if top { b } else { a };
        let bot = later_wins(cc, d);
        let m1 = if bot { d } else { cc };
        let last = later_wins(m0, m1);
        let mx = if last { m1 } else { m0 };
        let win = if last {
            2 + u8::from(bot)
        } else {
            u8::from(top)
        };
        *p = mx.max(0.0);
        *c = if mx > 0.0 { win } else { NONE };
    }
    pooled
}

/// `Aᵀ M A` of one tile whose 16 Winograd values are at `mm[ξ·stride + off]`: the 2×2
/// outputs `[y00, y01, y10, y11]`.
#[inline(always)]
fn out_tile(mm: &[f32], stride: usize, off: usize) -> [V16; 4] {
    // z = Aᵀ M (2×4), column by column.
    let mut z = [[0f32; L]; 8];
    for s in 0..4 {
        let m0 = ld(mm, s * stride + off);
        let m1 = ld(mm, (4 + s) * stride + off);
        let m2 = ld(mm, (8 + s) * stride + off);
        let m3 = ld(mm, (12 + s) * stride + off);
        z[s] = add(&add(&m0, &m1), &m2);
        z[4 + s] = sub(&sub(&m1, &m2), &m3);
    }
    // Y = z A.
    let row = |r: usize| {
        let (a, b, c, d) = (&z[4 * r], &z[4 * r + 1], &z[4 * r + 2], &z[4 * r + 3]);
        (add(&add(a, b), c), sub(&sub(b, c), d))
    };
    let (y00, y01) = row(0);
    let (y10, y11) = row(1);
    [y00, y01, y10, y11]
}

simd_fn! {
/// The pooled gradient of the lane group's tiles `tiles` (`dpl`, lane-interleaved
/// `[K][ty·tx][16]`, all tiles) routed to each window's winner and taken to the Winograd
/// domain, `dM = A dY Aᵀ`, laid out `[16][K][n]`; their bias gradient is added to `db`.
fn output_grad(
    dpl: &[f32],
    codes: &[u8],
    g: &WGeom,
    tiles: Range<usize>,
    dm: &mut [f32],
    db: &mut [f64],
) {
    let (t, k) = (g.tiles(), g.k);
    let (nt, n) = (t * L, tiles.len() * L);
    for (kk, (code, dpk)) in codes.chunks_exact(nt).zip(dpl.chunks_exact(nt)).enumerate() {
        let mut total = [0f32; L];
        for (j, tt) in tiles.clone().enumerate() {
            let (y, live) = routed(&dpk[tt * L..][..L], &code[tt * L..][..L]);
            total = add(&total, &live);
            dm_tile(&y, dm, k * n, kk * n + j * L);
        }
        db[kk] += total.iter().map(|&v| f64::from(v)).sum::<f64>();
    }
}
}

/// One window's pooled gradient for 16 lanes (`dpl`) routed to each lane's winner
/// (`code`): `[dy00, dy01, dy10, dy11]`, and the routed values (for the bias gradient).
#[inline(always)]
fn routed(dpl: &[f32], code: &[u8]) -> ([V16; 4], V16) {
    let mut y = [[0f32; L]; 4];
    let mut live = [0f32; L];
    for (l, (&v, &c)) in dpl.iter().zip(code).enumerate().take(L) {
        for (q, yq) in y.iter_mut().enumerate() {
            yq[l] = if usize::from(c) == q { v } else { 0.0 };
        }
        live[l] = if c < NONE { v } else { 0.0 };
    }
    (y, live)
}

/// `dM = A dY Aᵀ` of one tile (`y` = `[dy00, dy01, dy10, dy11]`) into `dm[ξ·stride + off]`.
#[inline(always)]
fn dm_tile(y: &[V16; 4], dm: &mut [f32], stride: usize, off: usize) {
    // t = A dY (4×2): rows t0 = y0·, t1 = y0· + y1·, t2 = y0· − y1·, t3 = −y1·.
    let t = |j: usize| {
        let (a, b) = (&y[j], &y[2 + j]);
        [*a, add(a, b), sub(a, b), neg(b)]
    };
    let (t0, t1) = (t(0), t(1));
    for r in 0..4 {
        let (a, b) = (&t0[r], &t1[r]);
        st(dm, 4 * r * stride + off, a);
        st(dm, (4 * r + 1) * stride + off, &add(a, b));
        st(dm, (4 * r + 2) * stride + off, &sub(a, b));
        st(dm, (4 * r + 3) * stride + off, &neg(b));
    }
}

simd_fn! {
/// `dV` of the lane group's tiles `tiles` (`[16][C][n]`) → `B dV Bᵀ`, added over the
/// overlapping tiles into the padded input-gradient planes `dxt` (`[C][hp][wp][16]`).
fn input_grad(dv: &[f32], g: &WGeom, tiles: Range<usize>, dxt: &mut [f32]) {
    let (c, wp, plane) = (g.c, g.wp(), g.plane());
    let n = tiles.len() * L;
    let pitch = wp * L;
    for (ch, dst) in dxt.chunks_exact_mut(plane).enumerate() {
        for (j, tt) in tiles.clone().enumerate() {
            let (ty, tx) = (tt / g.tx, tt % g.tx);
            let at = (2 * ty * wp + 2 * tx) * L;
            din_tile(dv, c * n, ch * n + j * L, dst, at, pitch);
        }
    }
}
}

/// `B dV Bᵀ` of one tile (`dv[ξ·stride + off]`) added into the input tile at `dst[at..]`.
#[inline(always)]
fn din_tile(dv: &[f32], stride: usize, off: usize, dst: &mut [f32], at: usize, pitch: usize) {
    // e = B dV, column by column, kept as e[4i + s].
    let mut e = [[0f32; L]; 16];
    for s in 0..4 {
        let v0 = ld(dv, s * stride + off);
        let v1 = ld(dv, (4 + s) * stride + off);
        let v2 = ld(dv, (8 + s) * stride + off);
        let v3 = ld(dv, (12 + s) * stride + off);
        e[s] = v0;
        e[4 + s] = add(&sub(&v1, &v2), &v3);
        e[8 + s] = add(&sub(&v1, &v0), &v2);
        e[12 + s] = neg(&v3);
    }
    // dd = e Bᵀ, row by row, added into the tile.
    for i in 0..4 {
        let (a, b, c, d) = (&e[4 * i], &e[4 * i + 1], &e[4 * i + 2], &e[4 * i + 3]);
        let row = at + i * pitch;
        for (j, val) in [*a, add(&sub(b, c), d), add(&sub(b, a), c), neg(d)]
            .iter()
            .enumerate()
        {
            let cur = ld(dst, row + j * L);
            st(dst, row + j * L, &add(&cur, val));
        }
    }
}

/// The 4×4 input window of tile `(ty, tx)` in a padded plane: 16 lane vectors, row-major.
#[inline(always)]
fn window(src: &[f32], g: &WGeom, ty: usize, tx: usize) -> [V16; 16] {
    let (wp, base) = (g.wp(), (2 * ty * g.wp() + 2 * tx) * L);
    std::array::from_fn(|i| ld(src, base + ((i / 4) * wp + i % 4) * L))
}

/// Writes the pooled vectors of tiles `tt0..tt0 + n` of output channel `kk` (`n ≤ 16`,
/// `pooled[j]` the 16 lanes of tile `tt0 + j`) into `out` (`[b][K][t]`, `images` of them).
fn store_pooled(
    pooled: &[V16; L],
    n: usize,
    tt0: usize,
    kk: usize,
    images: usize,
    g: &WGeom,
    out: &mut [f32],
) {
    let (k, t) = (g.k, g.tiles());
    let rows: [&V16; L] = std::array::from_fn(|j| &pooled[j]);
    let mut tr = [[0f32; L]; L];
    if transpose16x16(&rows, &mut tr) {
        for (l, v) in tr.iter().enumerate().take(images) {
            let dst = &mut out[(l * k + kk) * t + tt0..][..n];
            if let (Some(d), Some(v)) = (dst.first_chunk_mut::<L>(), v.first_chunk::<L>()) {
                // A whole row of 16 as one fixed-size move (a slice copy is a memmove call).
                *d = *v;
            } else {
                dst.copy_from_slice(&v[..n]);
            }
        }
    } else {
        for (j, p) in pooled.iter().enumerate().take(n) {
            for (l, v) in p.iter().enumerate().take(images) {
                out[(l * k + kk) * t + tt0 + j] = *v;
            }
        }
    }
}

simd_fn! {
/// The direct variant for few input channels (the network's first layer, where the
/// Winograd GEMMs would have a single row): one lane group's pooled outputs into `out`
/// (`[b][K][ty·tx]`) and winner codes into `codes` (`[K][nt]`), from its padded planes.
/// Output channel by output channel, its nine weights per input channel in registers;
/// pooled values go out 16 tiles at a time, transposed to the images' layout.
fn direct_forward(
    xt: &[f32],
    w: &[f32],
    bias: &[f32],
    g: &WGeom,
    out: &mut [f32],
    codes: &mut [u8],
) {
    let (t, k, c, plane) = (g.tiles(), g.k, g.c, g.plane());
    let nt = t * L;
    let images = out.len() / (k * t);
    let mut pooled = [[0f32; L]; L];
    for kk in 0..k {
        let mut tt0 = 0;
        for tt in 0..t {
            let (ty, tx) = (tt / g.tx, tt % g.tx);
            let mut y = [[0f32; L]; 4];
            for ch in 0..c {
                let win = window(&xt[ch * plane..][..plane], g, ty, tx);
                let wk: [f32; 9] = std::array::from_fn(|tap| w[(kk * c + ch) * 9 + tap]);
                for (tap, &wv) in wk.iter().enumerate() {
                    let (a, b) = (tap / 3, tap % 3);
                    for (q, yq) in y.iter_mut().enumerate() {
                        fma_s(yq, wv, &win[(q / 2 + a) * 4 + q % 2 + b]);
                    }
                }
            }
            pooled[tt - tt0] = pool_lanes(&y, bias[kk], &mut codes[kk * nt + tt * L..][..L]);
            if tt - tt0 == L - 1 || tt == t - 1 {
                store_pooled(&pooled, tt - tt0 + 1, tt0, kk, images, g, out);
                tt0 = tt + 1;
            }
        }
    }
}
}

simd_fn! {
/// The backward of [`direct_forward`] for one lane group: the pooled gradient (`dpl`,
/// lane-interleaved `[K][ty·tx][16]`) routed to each window's winner, into the weight
/// gradient `dw` (`[K][C][3][3]`, added to) and, when given, the padded input-gradient
/// planes `dxt` (`[C][hp][wp][16]`, added to); returns the bias gradient. Windows that
/// pass no gradient in any lane are skipped; a kernel's nine tap sums stay in registers
/// across the tiles.
fn direct_backward(
    xt: &[f32],
    w: &[f32],
    dpl: &[f32],
    codes: &[u8],
    g: &WGeom,
    dw: &mut [f32],
    dxt: Option<&mut [f32]>,
) -> Vec<f64> {
    let (t, k, c, wp, plane) = (g.tiles(), g.k, g.c, g.wp(), g.plane());
    let nt = t * L;
    let mut dxt = dxt;
    let mut db = vec![0f64; k];
    for kk in 0..k {
        for ch in 0..c {
            let src = &xt[ch * plane..][..plane];
            let wk: [f32; 9] = std::array::from_fn(|tap| w[(kk * c + ch) * 9 + tap]);
            // Lane-wise sums: the weight gradient's per tap, the bias gradient's.
            let mut acc = [[0f32; L]; 9];
            let mut live_sum = [0f32; L];
            for tt in 0..t {
                let code = &codes[kk * nt + tt * L..][..L];
                if code.iter().all(|&cl| cl == NONE) {
                    continue;
                }
                let (ty, tx) = (tt / g.tx, tt % g.tx);
                let (y, live) = routed(&dpl[(kk * t + tt) * L..][..L], code);
                live_sum = add(&live_sum, &live);
                // The window read in place (built as an array, it would be copied).
                let base = (2 * ty * wp + 2 * tx) * L;
                for (tap, s) in acc.iter_mut().enumerate() {
                    let (a, b) = (tap / 3, tap % 3);
                    for (q, yq) in y.iter().enumerate() {
                        fma_v(s, yq, &ld(src, base + ((q / 2 + a) * wp + q % 2 + b) * L));
                    }
                }
                if let Some(dxt) = dxt.as_deref_mut() {
                    for (tap, &wv) in wk.iter().enumerate() {
                        let (a, b) = (tap / 3, tap % 3);
                        for (q, yq) in y.iter().enumerate() {
                            let at = ((2 * ty + q / 2 + a) * wp + 2 * tx + q % 2 + b) * L;
                            let d = &mut dxt[ch * plane + at..][..L];
                            let mut cur = ld(d, 0);
                            fma_s(&mut cur, wv, yq);
                            st(d, 0, &cur);
                        }
                    }
                }
            }
            for (tap, a) in acc.iter().enumerate() {
                dw[(kk * c + ch) * 9 + tap] += a.iter().sum::<f32>();
            }
            if ch == 0 {
                db[kk] = live_sum.iter().map(|&x| f64::from(x)).sum();
            }
        }
    }
    db
}
}

/// Crops padded, lane-interleaved input-gradient planes `dxt` (`[C][hp][wp][16]`) into
/// `dx` (the group's images, `[b][C][H][W]`).
fn lanes_out(dxt: &[f32], g: &WGeom, dx: &mut [f32]) {
    let (c, wp, plane, hw) = (g.c, g.wp(), g.plane(), g.h * g.w);
    let lanes = dx.len() / (c * hw);
    let at = |q: usize| ((q / g.w + 1) * wp + q % g.w + 1) * L;
    let mut t = [[0f32; L]; L];
    for ch in 0..c {
        let src = &dxt[ch * plane..][..plane];
        // 16 positions of all 16 lanes at a time, transposed in registers.
        let mut p = 0;
        while p + L <= hw {
            let rows: [&[f32; L]; L] = std::array::from_fn(|j| {
                src[at(p + j)..]
                    .first_chunk::<L>()
                    .expect("positions lie inside the padded plane")
            });
            if !transpose16x16(&rows, &mut t) {
                break;
            }
            for (lane, v) in t.iter().enumerate().take(lanes) {
                if let Some(d) = dx[(lane * c + ch) * hw + p..].first_chunk_mut::<L>() {
                    *d = *v;
                }
            }
            p += L;
        }
        for lane in 0..lanes {
            for q in p..hw {
                dx[(lane * c + ch) * hw + q] = src[at(q) + lane];
            }
        }
    }
}

/// Input channels below which the block runs directly instead of through Winograd's
/// GEMMs.
const DIRECT_BELOW: usize = 8;

/// The fused block as a custom op; keeps the forward's winner codes for the backward.
struct WinogradBlock {
    /// What the forward leaves for the backward: the winner codes (`[groups][K][nt]`)
    /// and the transformed kernel `U` (`[16][K][C]`; empty on the direct path).
    saved: Mutex<Option<(Vec<u8>, Vec<f32>)>>,
}

fn lock_err() -> candle_core::Error {
    candle_core::Error::Msg("conv3x3 + ReLU + max-pool: poisoned lock".into())
}

impl CustomOp3 for WinogradBlock {
    fn name(&self) -> &'static str {
        "cxr-winograd-conv3x3-relu-maxpool"
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
        let g = WGeom::new(lx.dims(), lw.dims())?;
        let x = f32_slice(sx, lx, "input")?;
        let w = f32_slice(sw, lw, "kernel")?;
        let bias = f32_slice(sb, lb, "bias")?;
        if bias.len() != g.k {
            return Err(candle_core::Error::Msg(format!(
                "conv3x3 + ReLU + max-pool: bias has {} values for {} output channels",
                bias.len(),
                g.k
            )));
        }
        let (k, c, t) = (g.k, g.c, g.tiles());
        let nt = t * L;
        let direct = c < DIRECT_BELOW;
        let u = if direct {
            Vec::new()
        } else {
            kernel_transform(w, &g)
        };
        let ua = if direct {
            None
        } else {
            packed_kernel(&u, &g, false)
        };
        let mut out = crate::buf::zeroed(g.b * k * t);
        let mut codes = vec![NONE; g.groups * k * nt];
        // One task per lane group of 16 images, its Winograd-domain arrays in scratch.
        out.par_chunks_mut(L * k * t)
            .zip(codes.par_chunks_mut(k * nt))
            .enumerate()
            .try_for_each(|(gp, (o, cd))| {
                let n = CHUNK_TILES * L;
                let sizes = if direct {
                    [c * g.plane(), 0, 0, 0, 0, 0]
                } else {
                    [c * g.plane(), 16 * c * n, 16 * k * n, 0, 0, 0]
                };
                with_scratch(sizes, |[xt, v, mm, _, _, _]| {
                    lanes_in(x, &g, gp, xt);
                    if direct {
                        direct_forward(xt, w, bias, &g, o, cd);
                        return Ok(());
                    }
                    // A few tiles at a time: their V and M stay in cache between the
                    // transforms and the GEMMs.
                    for tiles in chunks(t) {
                        let mm = forward_run(xt, &g, tiles.clone(), (&u, ua.as_deref()), v, mm)?;
                        output_transform(mm, bias, &g, tiles, o, cd);
                    }
                    Ok::<(), candle_core::Error>(())
                })
            })?;
        *self.saved.lock().map_err(|_| lock_err())? = Some((codes, u));
        Ok((CpuStorage::F32(out), Shape::from((g.b, g.k, g.ty, g.tx))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = WGeom::new(x.dims(), w.dims())?;
        let (codes, u) = self
            .saved
            .lock()
            .map_err(|_| lock_err())?
            .take()
            .ok_or_else(|| {
                candle_core::Error::Msg(
                    "conv3x3 + ReLU + max-pool: backward without (or after) its forward".into(),
                )
            })?;
        let (k, c, t, hw) = (g.k, g.c, g.tiles(), g.h * g.w);
        let nt = t * L;
        let (want_x, want_w) = (x.track_op(), w.track_op());
        let grad = grad.contiguous()?;
        let xc = x.detach().contiguous()?;
        let wc = w.detach().contiguous()?;
        let mut dx = crate::buf::zeroed(if want_x { g.b * c * hw } else { 0 });
        let uta = if want_x && c >= DIRECT_BELOW {
            packed_kernel(&u, &g, true)
        } else {
            None
        };
        let (db, dut) = with_f32(&grad, "gradient", |dp| {
            with_f32(&xc, "input", |xd| {
                with_f32(&wc, "kernel", |wd| {
                    let direct = c < DIRECT_BELOW;
                    let parts = group_parts(&mut dx, want_x, c * hw, g.groups)
                        .into_par_iter()
                        .enumerate()
                        .map(|(gp, dxg)| {
                            let images = L.min(g.b - gp * L);
                            let dpg = &dp[gp * L * k * t..][..images * k * t];
                            let codes = &codes[gp * k * nt..][..k * nt];
                            if direct {
                                // The weight gradient comes out as dW itself.
                                let sizes = [c * g.plane(), c * g.plane(), 0, 0, k * nt, 0];
                                return with_scratch(sizes, |[xt, dxt, _, _, dpl, _]| {
                                    lanes_in(xd, &g, gp, xt);
                                    lanes_dp(dpg, &g, dpl);
                                    let mut dw = vec![0f32; k * c * 9];
                                    let want = dxg.is_some();
                                    if want {
                                        dxt.fill(0.0);
                                    }
                                    let db = direct_backward(
                                        xt,
                                        wd,
                                        dpl,
                                        codes,
                                        &g,
                                        &mut dw,
                                        want.then_some(&mut *dxt),
                                    );
                                    if let Some(dxg) = dxg {
                                        lanes_out(dxt, &g, dxg);
                                    }
                                    Ok((db, Some(dw)))
                                });
                            }
                            let n = CHUNK_TILES * L;
                            let plane = c * g.plane();
                            let sizes = [plane, 16 * c * n, 16 * k * n, 16 * c * n, k * nt, plane];
                            with_scratch(sizes, |[xt, v, dm, dv, dpl, dxt]| {
                                lanes_dp(dpg, &g, dpl);
                                if want_w {
                                    lanes_in(xd, &g, gp, xt);
                                }
                                if dxg.is_some() {
                                    dxt.fill(0.0);
                                }
                                let mut db = vec![0f64; k];
                                let mut dut = want_w.then(|| vec![0f32; 16 * c * k]);
                                // A few tiles at a time, as in the forward.
                                for tiles in chunks(t) {
                                    let n = tiles.len() * L;
                                    let dm = &mut dm[..16 * k * n];
                                    output_grad(dpl, codes, &g, tiles.clone(), dm, &mut db);
                                    backward_run(
                                        (xt, &*dm),
                                        &g,
                                        tiles,
                                        (&u, uta.as_deref()),
                                        (v, dv),
                                        dut.as_deref_mut(),
                                        dxg.is_some().then_some(&mut *dxt),
                                    )?;
                                }
                                if let Some(dxg) = dxg {
                                    lanes_out(dxt, &g, dxg);
                                }
                                Ok((db, dut))
                            })
                        })
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    // Sum the groups' parts in group order (deterministic).
                    let mut db = vec![0f64; k];
                    let mut dut_parts = Vec::with_capacity(parts.len());
                    for (pdb, pdut) in parts {
                        for (a, b) in db.iter_mut().zip(pdb) {
                            *a += b;
                        }
                        dut_parts.extend(pdut);
                    }
                    let dut = sum_in_order(dut_parts);
                    // The direct path's parts are dW already; Winograd's are dU.
                    let dw = match dut.filter(|_| want_w) {
                        Some(d) if direct => Some(d),
                        Some(d) => Some(kernel_grad(&d, &g)),
                        None => None,
                    };
                    Ok((db, dw))
                })
            })
        })?;
        drop(codes);
        let grad_b = bias
            .track_op()
            .then(|| {
                let db: Vec<f32> = db.into_iter().map(|v| v as f32).collect();
                Tensor::from_vec(db, k, &Device::Cpu)
            })
            .transpose()?;
        let grad_w = match dut {
            Some(dw) => Some(Tensor::from_vec(dw, w.dims(), &Device::Cpu)?),
            None => None,
        };
        let grad_x = want_x
            .then(|| Tensor::from_vec(dx, x.dims(), &Device::Cpu))
            .transpose()?;
        Ok((grad_x, grad_w, grad_b))
    }
}

/// Whether [`conv3x3_relu_max_pool2d`] is the fast choice for this block: CPU `f32`
/// tensors, a 3×3 kernel, at least `MIN_BATCH` images, at least 8 input channels (with
/// fewer the transforms outweigh the saved multiplications) and this crate's AVX-512 GEMM
/// active.
pub fn fused_block_applies(x: &Tensor, w: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu)
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && cpu_sgemm_active()
        && winograd_enabled()
        && matches!((x.dims(), w.dims()), (&[b, c, h, ww], &[_, wc, 3, 3])
            if b >= MIN_BATCH && c >= 1 && wc == c && h >= 2 && ww >= 2)
}

static WINOGRAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns the Winograd ops — the fused block ([`conv3x3_relu_max_pool2d`], used by
/// `cxr_models::SeedCnn`) and the plain convolution ([`conv3x3_winograd`], used by
/// `cxr_models::ResNet18`'s 3×3 stride-1 layers) — on or off for the whole process; off,
/// the block runs as the implicit-im2col convolution followed by the fused ReLU +
/// max-pool, and the convolution as the implicit-im2col one. On by default. For
/// benchmarks and tests that compare the two.
pub fn set_cpu_winograd(enabled: bool) {
    WINOGRAD.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

fn winograd_enabled() -> bool {
    WINOGRAD.load(std::sync::atomic::Ordering::Relaxed)
}

/// `max_pool2d(relu(conv2d(x, w, padding 1, stride 1) + bias))` with a 3×3 kernel and a
/// 2×2/stride-2 floor-mode pool, as one CPU op (Winograd F(2×2, 3×3); see the module
/// docs). `x` `[N, C, H, W]` (H, W ≥ 2), `w` `[K, C, 3, 3]`, `bias` `[K]`, all `f32` on
/// the CPU; the result is `[N, K, H/2, W/2]`. Gradients flow to all three through
/// candle's autograd (the input gradient is skipped when `x` tracks none). Works for any
/// batch size and on any CPU (without AVX-512 its GEMMs use the portable kernel);
/// `cxr_models::Conv2d::forward_relu_max_pool2d` uses it only where it is the faster choice.
pub fn conv3x3_relu_max_pool2d(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
) -> candle_core::Result<Tensor> {
    let (x, w, bias) = (x.contiguous()?, w.contiguous()?, bias.contiguous()?);
    x.apply_op3(
        &w,
        &bias,
        WinogradBlock {
            saved: Mutex::new(None),
        },
    )
}

// ---------------------------------------------------------------------------------------
// The plain convolution: ResNet18's 3×3, stride-1, padding-1 layers (no bias, no pool).

/// Each of `tiles` with its place in the run (`j`) and where its 2×2 outputs start in a
/// padded, lane-interleaved plane (the interior position of its top-left output).
#[inline(always)]
fn tile_sites(g: &WGeom, tiles: Range<usize>) -> impl Iterator<Item = (usize, usize)> {
    let (wp, tx) = (g.wp(), g.tx);
    tiles
        .enumerate()
        .map(move |(j, tt)| (j, ((2 * (tt / tx) + 1) * wp + 2 * (tt % tx) + 1) * L))
}

simd_fn! {
/// Output transform `Aᵀ M A` of the lane group's tiles `tiles` (`mm`: `[16][K][n]`) into
/// the lane-interleaved output planes `yt` (`[K][hp][wp][16]`, the input's padded plane
/// geometry): each tile's 2×2 outputs at their interior places, the border left alone.
fn output_plain(mm: &[f32], g: &WGeom, tiles: Range<usize>, yt: &mut [f32]) {
    let (k, plane, pitch) = (g.k, g.plane(), g.wp() * L);
    let n = tiles.len() * L;
    for (kk, dst) in yt.chunks_exact_mut(plane).enumerate().take(k) {
        for (j, at) in tile_sites(g, tiles.clone()) {
            let y = out_tile(mm, k * n, kk * n + j * L);
            st(dst, at, &y[0]);
            st(dst, at + L, &y[1]);
            st(dst, at + pitch, &y[2]);
            st(dst, at + pitch + L, &y[3]);
        }
    }
}
}

simd_fn! {
/// The output gradient of the lane group's tiles `tiles` (`dyt`: lane-interleaved
/// `[K][hp][wp][16]` planes, as [`output_plain`] writes the output) taken to the
/// Winograd domain, `dM = A dY Aᵀ`, laid out `[16][K][n]`.
fn output_grad_plain(dyt: &[f32], g: &WGeom, tiles: Range<usize>, dm: &mut [f32]) {
    let (k, plane, pitch) = (g.k, g.plane(), g.wp() * L);
    let n = tiles.len() * L;
    for (kk, src) in dyt.chunks_exact(plane).enumerate().take(k) {
        for (j, at) in tile_sites(g, tiles.clone()) {
            let y = [
                ld(src, at),
                ld(src, at + L),
                ld(src, at + pitch),
                ld(src, at + pitch + L),
            ];
            dm_tile(&y, dm, k * n, kk * n + j * L);
        }
    }
}
}

impl WGeom {
    /// The geometry of a plain 3×3 convolution (stride 1, padding 1) whose output tiles
    /// cover its even-sized maps exactly.
    fn conv(x: &[usize], wt: &[usize]) -> candle_core::Result<Self> {
        let g = Self::new(x, wt)?;
        if g.h % 2 != 0 || g.w % 2 != 0 {
            return Err(candle_core::Error::Msg(format!(
                "Winograd conv3x3: input {x:?} has an odd height or width (2×2 output tiles need even sizes)"
            )));
        }
        Ok(g)
    }

    /// The same maps with input and output channels swapped: the geometry under which
    /// [`lanes_in`] and [`lanes_out`] move `K`-channel tensors (the output and its
    /// gradient).
    fn swapped(&self) -> Self {
        Self {
            c: self.k,
            k: self.c,
            ..*self
        }
    }
}

/// The plain 3×3 convolution as a custom op: Winograd F(2×2, 3×3) over all of its even
/// maps, the transformed kernel kept for the backward.
pub(crate) struct WinogradConv {
    /// The transformed kernel `U` (`[16][K][C]`) from the forward.
    saved: Mutex<Option<Vec<f32>>>,
}

impl WinogradConv {
    /// The op for one convolution.
    pub(crate) fn new() -> Self {
        Self {
            saved: Mutex::new(None),
        }
    }
}

impl candle_core::CustomOp2 for WinogradConv {
    fn name(&self) -> &'static str {
        "cxr-winograd-conv3x3"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = WGeom::conv(lx.dims(), lw.dims())?;
        let x = f32_slice(sx, lx, "input")?;
        let w = f32_slice(sw, lw, "kernel")?;
        let (k, c, t, hw) = (g.k, g.c, g.tiles(), g.h * g.w);
        let gk = g.swapped();
        let u = kernel_transform(w, &g);
        let ua = packed_kernel(&u, &g, false);
        let mut out = crate::buf::zeroed(g.b * k * hw);
        out.par_chunks_mut(L * k * hw)
            .enumerate()
            .try_for_each(|(gp, o)| {
                let n = CHUNK_TILES * L;
                let sizes = [c * g.plane(), 16 * c * n, 16 * k * n, k * g.plane(), 0, 0];
                with_scratch(sizes, |[xt, v, mm, yt, _, _]| {
                    lanes_in(x, &g, gp, xt);
                    for tiles in chunks(t) {
                        let mm = forward_run(xt, &g, tiles.clone(), (&u, ua.as_deref()), v, mm)?;
                        output_plain(mm, &g, tiles, yt);
                    }
                    lanes_out(yt, &gk, o);
                    Ok::<(), candle_core::Error>(())
                })
            })?;
        *self.saved.lock().map_err(|_| lock_err())? = Some(u);
        Ok((CpuStorage::F32(out), Shape::from((g.b, k, g.h, g.w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = WGeom::conv(x.dims(), w.dims())?;
        let u = self
            .saved
            .lock()
            .map_err(|_| lock_err())?
            .take()
            .ok_or_else(|| {
                candle_core::Error::Msg(
                    "Winograd conv3x3: backward without (or after) its forward".into(),
                )
            })?;
        let (k, c, t, hw) = (g.k, g.c, g.tiles(), g.h * g.w);
        let gk = g.swapped();
        let (want_x, want_w) = (x.track_op(), w.track_op());
        let grad = grad.contiguous()?;
        let xc = x.detach().contiguous()?;
        let mut dx = crate::buf::zeroed(if want_x { g.b * c * hw } else { 0 });
        let uta = if want_x {
            packed_kernel(&u, &g, true)
        } else {
            None
        };
        let dut = with_f32(&grad, "gradient", |dy| {
            with_f32(&xc, "input", |xd| {
                let parts = group_parts(&mut dx, want_x, c * hw, g.groups)
                    .into_par_iter()
                    .enumerate()
                    .map(|(gp, dxg)| {
                        let n = CHUNK_TILES * L;
                        let plane = g.plane();
                        let sizes = [
                            k * plane,
                            c * plane,
                            16 * c * n,
                            16 * k * n,
                            16 * c * n,
                            c * plane,
                        ];
                        with_scratch(sizes, |[dyt, xt, v, dm, dv, dxt]| {
                            lanes_in(dy, &gk, gp, dyt);
                            if want_w {
                                lanes_in(xd, &g, gp, xt);
                            }
                            if dxg.is_some() {
                                dxt.fill(0.0);
                            }
                            let mut dut = want_w.then(|| vec![0f32; 16 * c * k]);
                            for tiles in chunks(t) {
                                let n = tiles.len() * L;
                                let dm = &mut dm[..16 * k * n];
                                output_grad_plain(dyt, &g, tiles.clone(), dm);
                                backward_run(
                                    (xt, &*dm),
                                    &g,
                                    tiles,
                                    (&u, uta.as_deref()),
                                    (v, dv),
                                    dut.as_deref_mut(),
                                    dxg.is_some().then_some(&mut *dxt),
                                )?;
                            }
                            if let Some(dxg) = dxg {
                                lanes_out(dxt, &g, dxg);
                            }
                            Ok(dut)
                        })
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                // Sum the groups' parts in group order (deterministic).
                Ok(sum_in_order(parts.into_iter().flatten()).map(|d| kernel_grad(&d, &g)))
            })
        })?;
        let grad_w = match dut {
            Some(dw) => Some(Tensor::from_vec(dw, w.dims(), &Device::Cpu)?),
            None => None,
        };
        let grad_x = want_x
            .then(|| Tensor::from_vec(dx, x.dims(), &Device::Cpu))
            .transpose()?;
        Ok((grad_x, grad_w))
    }
}

/// Smallest map (in 2×2 output tiles per image) [`winograd_conv_applies`] takes: below
/// it the Winograd GEMMs have too few columns for the transformed kernel they stream.
const MIN_CONV_TILES: usize = 16;

/// Whether [`conv3x3_winograd`] is the fast choice for this convolution (stride 1 and
/// padding 1 are the caller's to check): CPU `f32` tensors, a 3×3 kernel, this crate's
/// AVX-512 GEMM active, at least 8 input channels, even maps of at least
/// `MIN_CONV_TILES` tiles, and a batch that fills its lane groups of 16 images to at
/// least three quarters (at least 16 images).
pub fn winograd_conv_applies(x: &Tensor, w: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu)
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && cpu_sgemm_active()
        && winograd_enabled()
        && matches!((x.dims(), w.dims()), (&[b, c, h, ww], &[_, wc, 3, 3])
            if b >= L
                && 4 * b >= 3 * b.next_multiple_of(L)
                && c >= DIRECT_BELOW
                && wc == c
                && h % 2 == 0
                && ww % 2 == 0
                && (h / 2) * (ww / 2) >= MIN_CONV_TILES)
}

/// `conv2d(x, w, padding 1, stride 1)` with a 3×3 kernel and no bias, as one CPU op
/// (Winograd F(2×2, 3×3), see the module docs): `x` `[N, C, H, W]` with even `H` and `W`,
/// `w` `[K, C, 3, 3]`, both `f32` on the CPU; the result is `[N, K, H, W]`. Gradients
/// flow to both through candle's autograd (the input gradient is skipped when `x` tracks
/// none). Values differ from the direct convolution by rounding only. Works for any batch
/// size and channel count; `cxr_models::Conv2d` uses it only where it is the faster choice.
pub fn conv3x3_winograd(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    x.apply_op2(&w, WinogradConv::new())
}
