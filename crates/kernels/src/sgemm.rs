//! An `f32` GEMM with an AVX-512 micro-kernel for the CPU convolution fast path.
//!
//! The `gemm` crate that candle's CPU matmul uses runs its AVX2 kernels on stable Rust
//! (its AVX-512 kernels need its nightly feature), so on an AVX-512 CPU it reaches about
//! half of the machine's FMA throughput. This module computes `C = A·B` (optionally
//! `+ bias` per row of `C`) with
//!
//! - an 8×48 register tile (24 `zmm` accumulators, three vector loads of `B` and eight
//!   broadcasts of `A` per step of `k`),
//! - `A` packed into 8-row micro-panels of at most [`KC`] columns (a micro-panel stays in
//!   the 48 KiB L1 across a block of `B`), `B` packed into 48-column micro-panels of at most
//!   [`NC`] columns (≈ 1 MiB, half the 2 MiB L2),
//! - rayon tasks over column ranges of `C` (or over `k` with a private sum when `C` is
//!   small and `k` long, the weight gradient's shape).
//!
//! Operands are strided views ([`View`]) whose columns may be grouped — column `c` lives
//! at `(c / cl)·cg + (c % cl)·cs` — so the convolution's `[B, C, H·W]` tensors are read in
//! place as `[C, B·H·W]` matrices, and `C` is written grouped too (`[N / L, M, L]`), so the
//! forward writes `[B, C_out, H_out·W_out]` directly.
//!
//! The kernel runs only where `avx512f` is detected at run time and [`set_cpu_sgemm`] has
//! not switched it off; [`sgemm`] returns `None` otherwise and callers fall back to
//! candle's matmul.
//!
//! This is the one module of the crate with `unsafe`: calling the `avx512f`
//! `#[target_feature]` functions (sound because the feature was detected) and the
//! unaligned vector loads and stores (each from or into a reference to exactly 16 `f32`).
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;

/// Rows of the register tile.
const MR: usize = 8;
/// Columns of the register tile (three 16-lane vectors).
pub(crate) const NR: usize = 48;
/// Largest block of `k` packed at once.
const KC: usize = 320;
/// Largest block of columns of `B` packed at once (a multiple of [`NR`]).
const NC: usize = 16 * NR;
/// Largest block of rows of `A` packed at once (a multiple of [`MR`]).
const MC: usize = 32 * MR;

/// Narrower outputs are left to candle's matmul: a 48-wide tile would waste most of its
/// work (the first convolution's weight gradient is `32 × 9`).
const MIN_N: usize = 16;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns this crate's AVX-512 GEMM on or off for the whole process. It is on by default
/// and used where the CPU has `avx512f`; off (or without AVX-512) the convolution fast
/// path multiplies with candle's matmul instead. Used by tests and benchmarks to compare
/// the two.
pub fn set_cpu_sgemm(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether the AVX-512 GEMM is used: switched on (see [`set_cpu_sgemm`]), not turned off
/// for the process by the environment variable `CXR_CPU_SGEMM=0` (for comparing whole
/// runs, e.g. `cargo xtask bench`), and the CPU has `avx512f`.
pub fn cpu_sgemm_active() -> bool {
    static ENV_OFF: OnceLock<bool> = OnceLock::new();
    ENABLED.load(Ordering::Relaxed)
        && !*ENV_OFF.get_or_init(|| std::env::var("CXR_CPU_SGEMM").is_ok_and(|v| v == "0"))
        && avx512_detected()
}

#[cfg(target_arch = "x86_64")]
fn avx512_detected() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_detected() -> bool {
    false
}

/// A strided, column-grouped read-only matrix view: element `(r, c)` is
/// `data[r·rs + (c / cl)·cg + (c % cl)·cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
    cl: usize,
    cg: usize,
}

impl<'a> View<'a> {
    /// Element `(r, c)` at `r·rs + c·cs`.
    pub(crate) fn strided(data: &'a [f32], rs: usize, cs: usize) -> Self {
        Self {
            data,
            rs,
            cs,
            cl: usize::MAX,
            cg: 0,
        }
    }

    /// Row-major `[rows, cols]`.
    pub(crate) fn row_major(data: &'a [f32], cols: usize) -> Self {
        Self::strided(data, cols, 1)
    }

    /// `[G, rows, L]` read as the `[rows, G·L]` matrix: element `(r, g·L + l)` at
    /// `(g·rows + r)·L + l`.
    pub(crate) fn grouped(data: &'a [f32], rows: usize, l: usize) -> Self {
        Self {
            data,
            rs: l,
            cs: 1,
            cl: l,
            cg: rows * l,
        }
    }

    #[inline]
    fn col_base(&self, c: usize) -> usize {
        if self.cl == usize::MAX {
            // Not grouped: no division (packing calls this per row of a block).
            c * self.cs
        } else {
            (c / self.cl) * self.cg + (c % self.cl) * self.cs
        }
    }

    /// Whether every element of a `rows × cols` matrix lies inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        if rows == 0 || cols == 0 {
            return true;
        }
        // The largest address is the last row at the largest column base; column bases
        // grow with `c` inside a group and from group to group when cg ≥ (cl−1)·cs, which
        // the constructors guarantee, but check every group's last column to be safe.
        let last_col = cols - 1;
        let mut max_base = self.col_base(last_col);
        if self.cl != usize::MAX && self.cl > 0 {
            let groups = last_col / self.cl;
            let in_group = (self.cl - 1).min(last_col);
            max_base = max_base.max(groups.saturating_sub(1) * self.cg + in_group * self.cs);
        }
        match (rows - 1)
            .checked_mul(self.rs)
            .and_then(|r| r.checked_add(max_base))
        {
            Some(max) => max < self.data.len(),
            None => false,
        }
    }
}

/// The `B` operand of a GEMM: anything that can pack a `kc × cols` block of itself into
/// the kernel's `[kc][NR]` layout. A [`View`] copies from memory; the convolution's
/// implicit im2col sources (in `cpu_conv`) gather straight from the image, so the
/// column matrix is never materialised.
pub(crate) trait PackB: Sync {
    /// Whether every element of a `k × n` matrix is available.
    fn fits(&self, k: usize, n: usize) -> bool;
    /// Packs rows `k0..k0 + kc`, columns `c0..c0 + cols` (`cols ≤ NR`) as `[kc][NR]`,
    /// zero-padding the columns past `cols`.
    fn pack(&self, k0: usize, kc: usize, c0: usize, cols: usize, dst: &mut [f32]);
    /// The panels of rows `k0..k0 + kc`, columns `c0..c0 + cols` (`c0` a multiple of
    /// [`NR`]) exactly as [`PackB::pack`] would write them one after another, where they
    /// already exist packed ([`PrePacked`]): the GEMM then reads them in place.
    fn packed_panels(&self, k0: usize, kc: usize, c0: usize, cols: usize) -> Option<&[f32]> {
        let _ = (k0, kc, c0, cols);
        None
    }
}

impl PackB for View<'_> {
    fn fits(&self, k: usize, n: usize) -> bool {
        View::fits(self, k, n)
    }

    fn pack(&self, k0: usize, kc: usize, c0: usize, cols: usize, dst: &mut [f32]) {
        pack_b(self, k0, kc, c0, cols, dst);
    }
}

/// Where the task's output goes: element `(r, c)` (column relative to the task's first
/// column) at `(c / l)·m·l + r·l + c % l`.
struct Out<'a> {
    data: &'a mut [f32],
    m: usize,
    l: usize,
}

/// How a tile is stored.
#[derive(Clone, Copy)]
enum Store<'a> {
    /// Overwrite, adding `bias[row]` when given.
    Set(Option<&'a [f32]>),
    /// Add to what is there.
    Add,
}

/// `C = A·B (+ bias)`, `A` `m × k`, `B` `k × n`, `C` written grouped as `[n / l, m, l]`
/// (`l = n` is plain row-major `[m, n]`); `bias`, when given, has `m` values added to the
/// rows. Runs on rayon's pool. Returns `None` (and leaves `c` untouched) when the AVX-512
/// kernel is not active ([`cpu_sgemm_active`]) or the views do not fit the shapes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: View<'_>,
    c: &mut [f32],
    l: usize,
    bias: Option<&[f32]>,
) -> Option<()> {
    if n < MIN_N {
        return None;
    }
    sgemm_src(m, n, k, a, &b, c, l, bias)
}

/// [`sgemm`] with any [`PackB`] source for `B` and without the narrow-output cut-off
/// (the caller knows whether a 48-wide tile pays off). `None` when the kernel is not
/// active or the shapes do not fit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm_src<B: PackB>(
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: &B,
    c: &mut [f32],
    l: usize,
    bias: Option<&[f32]>,
) -> Option<()> {
    if !cpu_sgemm_active() {
        return None;
    }
    gemm_with(m, n, k, a, b, c, l, bias, true)
}

/// `C = A·B` (`m × n`, row-major; `C += A·B` when `accumulate`) on the calling thread, for
/// callers that run many independent GEMMs as their own rayon tasks: the AVX-512 kernel
/// where [`cpu_sgemm_active`], else the portable one. `None` (and `c` untouched) when the
/// views do not fit the shapes.
pub(crate) fn sgemm_serial<B: PackB>(
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: &B,
    c: &mut [f32],
    accumulate: bool,
) -> Option<()> {
    if c.len() != m * n || !a.fits(m, k) || !b.fits(k, n) {
        return None;
    }
    if m == 0 || n == 0 || (k == 0 && accumulate) {
        return Some(());
    }
    if k == 0 {
        c.fill(0.0);
        return Some(());
    }
    let mut out = Out { data: c, m, l: n };
    let store = if accumulate {
        Store::Add
    } else {
        Store::Set(None)
    };
    run(&a, b, m, 0..k, 0..n, &mut out, store, cpu_sgemm_active());
    Some(())
}

/// [`sgemm`] with the kernel chosen: `simd` for AVX-512 (the caller has checked that the
/// CPU has it), else the portable kernel (used by tests on any machine).
#[allow(clippy::too_many_arguments)]
fn gemm_with<B: PackB>(
    m: usize,
    n: usize,
    k: usize,
    a: View<'_>,
    b: &B,
    c: &mut [f32],
    l: usize,
    bias: Option<&[f32]>,
    simd: bool,
) -> Option<()> {
    if (simd && !avx512_detected())
        || l == 0
        || !n.is_multiple_of(l)
        || c.len() != m * n
        || !a.fits(m, k)
        || !b.fits(k, n)
        || bias.is_some_and(|b| b.len() != m)
    {
        return None;
    }
    if m == 0 || n == 0 {
        return Some(());
    }
    if k == 0 {
        // No products: C is the bias (or zero).
        for (i, v) in c.iter_mut().enumerate() {
            *v = bias.map_or(0.0, |b| b[(i / l) % m]);
        }
        return Some(());
    }
    let threads = rayon::current_num_threads().max(1);
    let groups = n / l;
    let per_group_task = groups.div_ceil(4 * threads).max(1);
    let many_rows = m >= 2 * threads * MR;
    if many_rows && per_group_task * l < 4 * NR && n < 8 * NR * threads && l != n {
        // Few output columns per image (late ResNet stages: 2×2 or 4×4 maps) but many
        // rows: split the rows, so that each task packs only its part of A (the
        // weights, up to megabytes), into a row-major buffer, then lay it out grouped.
        let mut tmp = crate::buf::zeroed(m * n);
        gemm_rows(m, n, k, &a, b, &mut tmp, bias, threads, simd);
        for (g, dst) in c.chunks_exact_mut(m * l).enumerate() {
            for (r, drow) in dst.chunks_exact_mut(l).enumerate() {
                drow.copy_from_slice(&tmp[r * n + g * l..][..l]);
            }
        }
        return Some(());
    }
    if groups >= 2 * threads || (groups >= threads && groups.is_multiple_of(threads)) {
        // Tasks over whole groups of columns: each owns a contiguous slice of C.
        let per = groups.div_ceil(4 * threads).max(1);
        c.par_chunks_mut(per * m * l)
            .enumerate()
            .for_each(|(t, chunk)| {
                let c0 = t * per * l;
                let cols = chunk.len() / m;
                let mut out = Out { data: chunk, m, l };
                run(
                    &a,
                    b,
                    m,
                    0..k,
                    c0..c0 + cols,
                    &mut out,
                    Store::Set(bias),
                    simd,
                );
            });
        return Some(());
    }
    if groups == 1 && many_rows && n >= 8 * NR {
        // Plain row-major C with enough rows: tasks over row blocks, each owning its rows.
        gemm_rows(m, n, k, &a, b, c, bias, threads, simd);
        return Some(());
    }
    // Few groups (a small C, as in the weight gradient): tasks over column blocks of NR
    // and, when that leaves threads idle, over k; each into a private buffer.
    let panels = n.div_ceil(NR);
    // A deep product whose A is one block of rows and whose columns fit one block (the
    // stem's weight gradient: 64 × 147 over 32 768 pixels): split only the depth, so
    // that A is packed once in all, not once per column task.
    let depth_only = m <= MC && panels * NR <= NC && k >= 1024 * threads;
    let col_tasks = if depth_only { 1 } else { panels.min(threads) };
    let k_tasks = if col_tasks < threads && k >= 1024 {
        (threads / col_tasks).min(k / 256).max(1)
    } else {
        1
    };
    let panels_per = panels.div_ceil(col_tasks);
    let k_per = k.div_ceil(k_tasks);
    let tasks: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = (0..col_tasks)
        .flat_map(|ct| {
            let c0 = (ct * panels_per * NR).min(n);
            let c1 = ((ct + 1) * panels_per * NR).min(n);
            (0..k_tasks).map(move |kt| {
                let k0 = (kt * k_per).min(k);
                (c0..c1, k0..((kt + 1) * k_per).min(k))
            })
        })
        .filter(|(cr, kr)| !cr.is_empty() && !kr.is_empty())
        .collect();
    let parts: Vec<(std::ops::Range<usize>, Vec<f32>)> = tasks
        .into_par_iter()
        .map(|(cr, kr)| {
            let w = cr.len();
            let mut buf = vec![0f32; m * w];
            let store = if kr.start == 0 {
                Store::Set(bias)
            } else {
                Store::Set(None)
            };
            let mut out = Out {
                data: &mut buf,
                m,
                l: w,
            };
            run(&a, b, m, kr, cr.clone(), &mut out, store, simd);
            (cr, buf)
        })
        .collect();
    c.fill(0.0);
    for (cr, buf) in parts {
        let w = cr.len();
        for (r, src) in buf.chunks_exact(w).enumerate() {
            let mut j = 0;
            while j < w {
                let col = cr.start + j;
                let seg = (l - col % l).min(w - j);
                let dst = &mut c[(col / l) * m * l + r * l + col % l..][..seg];
                for (d, s) in dst.iter_mut().zip(&src[j..j + seg]) {
                    *d += *s;
                }
                j += seg;
            }
        }
    }
    Some(())
}

/// Row-major `C` (`m × n`) in tasks over blocks of rows, each packing only its rows of A.
#[allow(clippy::too_many_arguments)]
fn gemm_rows<B: PackB>(
    m: usize,
    n: usize,
    k: usize,
    a: &View<'_>,
    b: &B,
    c: &mut [f32],
    bias: Option<&[f32]>,
    threads: usize,
    simd: bool,
) {
    let panels = m.div_ceil(MR);
    // One task per thread: every task streams all of B, so fewer, taller tasks read it
    // fewer times (256 × 512 × 2304 on two threads: 2.48–2.52 → 2.31–2.39 ms against two
    // tasks per thread).
    let per = panels.div_ceil(threads).max(1) * MR;
    // Every task multiplies its rows by all of B: pack B once, for all of them.
    let b = &PrePacked::new(b, k, n);
    c.par_chunks_mut(per * n)
        .enumerate()
        .for_each(|(t, chunk)| {
            let r0 = t * per;
            let rows = chunk.len() / n;
            let sub = View {
                data: &a.data[r0 * a.rs..],
                ..*a
            };
            let mut out = Out {
                data: chunk,
                m: rows,
                l: n,
            };
            let bias = bias.map(|b| &b[r0..r0 + rows]);
            run(&sub, b, rows, 0..k, 0..n, &mut out, Store::Set(bias), simd);
        });
}

/// A `B` operand packed once into the kernel's panels (`[k block][panel][kc][NR]`, with
/// the k blocks `run_with` uses for the whole depth), for GEMMs whose tasks all read the
/// whole of B ([`gemm_rows`]): each task then reads the panels in place
/// ([`PackB::packed_panels`]) instead of gathering them again (for a convolution, an
/// implicit im2col of many short rows) or copying them. Its buffer is the calling
/// thread's, kept between products ([`PREPACKED`]).
struct PrePacked<'a, B: PackB> {
    b: &'a B,
    data: Vec<f32>,
    kc_max: usize,
    panels: usize,
    k: usize,
    n: usize,
}

impl<'a, B: PackB> PrePacked<'a, B> {
    fn new(b: &'a B, k: usize, n: usize) -> Self {
        let kblocks = k.div_ceil(KC).max(1);
        let kc_max = k.div_ceil(kblocks);
        let panels = n.div_ceil(NR);
        // Every value is packed below (`PackB::pack` writes all of `dst`): a kept buffer
        // needs no zeroing, only growth (a fresh megabytes-long zeroed one per product was
        // a serial `memset`, a tenth of a 256 × 512 × 2304 product's time on two threads).
        let len = k * panels * NR;
        let mut data = PREPACKED.with(|cell| cell.take());
        if data.len() < len {
            data.resize(len, 0.0);
        }
        data.truncate(len);
        let jobs: Vec<(usize, usize, &mut [f32])> = data
            .chunks_mut((kc_max * panels * NR).max(1))
            .enumerate()
            .flat_map(|(kb, block)| {
                let kc = (k - kb * kc_max).min(kc_max);
                block
                    .chunks_mut((kc * NR).max(1))
                    .enumerate()
                    .map(move |(p, dst)| (kb, p, dst))
            })
            .collect();
        jobs.into_par_iter().for_each(|(kb, p, dst)| {
            let (k0, c0) = (kb * kc_max, p * NR);
            let kc = (k - k0).min(kc_max);
            b.pack(k0, kc, c0, (n - c0).min(NR), dst);
        });
        Self {
            b,
            data,
            kc_max,
            panels,
            k,
            n,
        }
    }
}

thread_local! {
    /// The buffer of this thread's last [`PrePacked`], handed back when it drops.
    static PREPACKED: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

impl<B: PackB> Drop for PrePacked<'_, B> {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        PREPACKED.with(|cell| {
            let kept = cell.take();
            cell.set(if kept.capacity() >= data.capacity() {
                kept
            } else {
                data
            });
        });
    }
}

impl<B: PackB> PackB for PrePacked<'_, B> {
    fn fits(&self, k: usize, n: usize) -> bool {
        k == self.k && n == self.n && self.b.fits(k, n)
    }

    fn pack(&self, k0: usize, kc: usize, c0: usize, cols: usize, dst: &mut [f32]) {
        let whole_panel = k0.is_multiple_of(self.kc_max)
            && kc == (self.k - k0).min(self.kc_max)
            && c0.is_multiple_of(NR)
            && cols == (self.n - c0).min(NR)
            && dst.len() == kc * NR;
        if whole_panel {
            let at = k0 * self.panels * NR + (c0 / NR) * kc * NR;
            dst.copy_from_slice(&self.data[at..at + kc * NR]);
        } else {
            self.b.pack(k0, kc, c0, cols, dst);
        }
    }

    fn packed_panels(&self, k0: usize, kc: usize, c0: usize, cols: usize) -> Option<&[f32]> {
        let whole = k0.is_multiple_of(self.kc_max)
            && kc == (self.k - k0).min(self.kc_max)
            && c0.is_multiple_of(NR)
            && c0 + cols <= self.n
            && cols > 0;
        whole.then(|| {
            let at = k0 * self.panels * NR + (c0 / NR) * kc * NR;
            &self.data[at..at + cols.div_ceil(NR) * NR * kc]
        })
    }
}

/// `out[j][i] = rows[i][j]`: a 16×16 transpose in registers (the lane interleaving of
/// `cpu_winograd`). Returns `false`, leaving `out` untouched, where the CPU has no
/// AVX-512.
pub(crate) fn transpose16x16(rows: &[&[f32; 16]; 16], out: &mut [[f32; 16]; 16]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if avx512_detected() {
        // SAFETY: `transpose_block` only needs the `avx512f` target feature, detected on
        // this CPU just above; it reads and writes through references.
        unsafe { avx512::transpose_block(rows, out) };
        return true;
    }
    let _ = (rows, out);
    false
}

/// An `m × k` matrix (`k ≤ KC`) packed once into the kernel's [`MR`]-row micro-panels,
/// for products that reuse it many times ([`sgemm_packed_a`]: a Winograd kernel shared
/// by every lane group of a batch).
pub(crate) struct PackedA {
    data: Vec<f32>,
    m: usize,
    k: usize,
}

impl PackedA {
    /// Packs `a` (`m × k`); `None` when the view does not fit or `k` is over one block.
    pub(crate) fn new(a: View<'_>, m: usize, k: usize) -> Option<Self> {
        if !a.fits(m, k) || k > KC {
            return None;
        }
        let mut data = vec![0f32; m.div_ceil(MR) * MR * k];
        if k > 0 {
            for (p, dst) in data.chunks_exact_mut(MR * k).enumerate() {
                let r0 = p * MR;
                pack_a(&a, r0, (m - r0).min(MR), 0, k, dst);
            }
        }
        Some(Self { data, m, k })
    }
}

/// `C = A·B` on the calling thread, `C` row-major `m × n`, with `A` packed beforehand and
/// `B` a row-major `k × n` view (any row stride) read in place: no packing per call, where
/// [`sgemm_serial`] packs both operands every time. `None` when `c` or `b` does not fit
/// the shapes or `b` is not row-major.
pub(crate) fn sgemm_packed_a(n: usize, a: &PackedA, b: View<'_>, c: &mut [f32]) -> Option<()> {
    packed_a_with(n, a, b, c, cpu_sgemm_active())
}

fn packed_a_with(n: usize, a: &PackedA, b: View<'_>, c: &mut [f32], simd: bool) -> Option<()> {
    let (m, k) = (a.m, a.k);
    if c.len() != m * n || b.cs != 1 || b.cl != usize::MAX || !b.fits(k, n) {
        return None;
    }
    if m == 0 || n == 0 {
        return Some(());
    }
    if k == 0 {
        c.fill(0.0);
        return Some(());
    }
    let mut out = Out { data: c, m, l: n };
    let mut panel = Vec::new();
    let mut j0 = 0;
    while j0 < n {
        let cols = (n - j0).min(NR);
        #[cfg(target_arch = "x86_64")]
        if simd && cols == NR && avx512_detected() {
            // SAFETY: `block_in_place` only needs the `avx512f` target feature, detected
            // on this CPU just above; all its memory accesses go through slices.
            unsafe { avx512::block_in_place(&a.data, &b.data[j0..], b.rs, k, m, j0, &mut out) };
            j0 += NR;
            continue;
        }
        // A partial panel (or the portable kernel): packed, zero-padded.
        panel.resize(NR * k, 0.0);
        pack_b(&b, 0, k, j0, cols, &mut panel);
        block(
            &a.data,
            &panel,
            k,
            0,
            m,
            j0,
            cols,
            &mut out,
            Store::Set(None),
            simd,
        );
        j0 += NR;
    }
    Some(())
}

#[allow(clippy::too_many_arguments)]
/// One task: columns `cols` of `C` over `ks` of `k`, into `out` (whose column 0 is
/// `cols.start`).
fn run<B: PackB>(
    a: &View<'_>,
    b: &B,
    m: usize,
    ks: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    out: &mut Out<'_>,
    store: Store<'_>,
    simd: bool,
) {
    thread_local! {
        static BUFS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    }
    BUFS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let (ap, bp) = &mut *bufs;
            run_with(a, b, m, ks.clone(), cols.clone(), out, store, ap, bp, simd);
        }
        Err(_) => {
            let (mut ap, mut bp) = (Vec::new(), Vec::new());
            run_with(
                a,
                b,
                m,
                ks.clone(),
                cols.clone(),
                out,
                store,
                &mut ap,
                &mut bp,
                simd,
            );
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn run_with<B: PackB>(
    a: &View<'_>,
    b: &B,
    m: usize,
    ks: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    out: &mut Out<'_>,
    store: Store<'_>,
    ap: &mut Vec<f32>,
    bp: &mut Vec<f32>,
    simd: bool,
) {
    let k = ks.len();
    let kblocks = k.div_ceil(KC);
    let kc_max = k.div_ceil(kblocks);
    let mc_max = m.min(MC).div_ceil(MR) * MR;
    let nc_max = cols.len().min(NC).div_ceil(NR) * NR;
    ap.resize(mc_max * kc_max, 0.0);
    bp.resize(nc_max * kc_max, 0.0);
    let mut jc = cols.start;
    while jc < cols.end {
        let nc = (cols.end - jc).min(NC);
        for kb in 0..kblocks {
            let k0 = ks.start + kb * kc_max;
            let kc = (ks.end - k0).min(kc_max);
            let bpanels = match b.packed_panels(k0, kc, jc, nc) {
                Some(panels) => panels,
                None => {
                    for (p, dst) in bp[..nc.div_ceil(NR) * NR * kc]
                        .chunks_exact_mut(NR * kc)
                        .enumerate()
                    {
                        let c0 = jc + p * NR;
                        b.pack(k0, kc, c0, (jc + nc - c0).min(NR), dst);
                    }
                    &bp[..nc.div_ceil(NR) * NR * kc]
                }
            };
            let tile_store = if kb == 0 { store } else { Store::Add };
            let mut ic = 0;
            while ic < m {
                let mc = (m - ic).min(MC);
                for (p, dst) in ap[..mc.div_ceil(MR) * MR * kc]
                    .chunks_exact_mut(MR * kc)
                    .enumerate()
                {
                    let r0 = ic + p * MR;
                    pack_a(a, r0, (ic + mc - r0).min(MR), k0, kc, dst);
                }
                block(
                    &ap[..mc.div_ceil(MR) * MR * kc],
                    bpanels,
                    kc,
                    ic,
                    mc,
                    jc - cols.start,
                    nc,
                    out,
                    tile_store,
                    simd,
                );
                ic += mc;
            }
        }
        jc += nc;
    }
}

/// Packs rows `r0..r0 + rows` (≤ MR), columns `c0..c0 + kc` of `a` as `[kc][MR]`,
/// zero-padding the missing rows.
fn pack_a(a: &View<'_>, r0: usize, rows: usize, c0: usize, kc: usize, dst: &mut [f32]) {
    if rows < MR {
        dst.fill(0.0);
    }
    if a.cs == 1 {
        // Rows contiguous along k (possibly in groups): walk segments.
        let mut c = c0;
        while c < c0 + kc {
            let seg = (a.cl - c % a.cl).min(c0 + kc - c);
            let base = a.col_base(c);
            let mut done = 0;
            #[cfg(target_arch = "x86_64")]
            if rows == MR && avx512_detected() {
                // 8 rows × 16 k at a time, transposed in registers.
                while done + 16 <= seg {
                    let src: [&[f32; 16]; MR] = std::array::from_fn(|r| {
                        a.data[base + (r0 + r) * a.rs + done..]
                            .first_chunk::<16>()
                            .expect("the view fits: checked before packing")
                    });
                    // SAFETY: `transpose8x16` only needs the `avx512f` target feature,
                    // detected on this CPU just above; it reads and writes through
                    // references and slices.
                    unsafe { avx512::transpose8x16(&src, &mut dst[(c - c0 + done) * MR..]) };
                    done += 16;
                }
            }
            for r in (0..rows).filter(|_| done < seg) {
                let src = &a.data[base + (r0 + r) * a.rs + done..][..seg - done];
                for (d, s) in dst[(c - c0 + done) * MR + r..]
                    .iter_mut()
                    .step_by(MR)
                    .zip(src)
                {
                    *d = *s;
                }
            }
            c += seg;
        }
    } else {
        for (kk, d) in dst.chunks_exact_mut(MR).enumerate().take(kc) {
            let base = a.col_base(c0 + kk) + r0 * a.rs;
            if a.rs == 1 && rows == MR {
                if let (Some(d), Some(src)) = (
                    d.first_chunk_mut::<MR>(),
                    a.data[base..].first_chunk::<MR>(),
                ) {
                    *d = *src;
                }
            } else if a.rs == 1 {
                d[..rows].copy_from_slice(&a.data[base..base + rows]);
            } else {
                for (r, v) in d.iter_mut().enumerate().take(rows) {
                    *v = a.data[base + r * a.rs];
                }
            }
        }
    }
}

/// Packs rows `k0..k0 + kc`, columns `c0..c0 + cols` (≤ NR) of `b` as `[kc][NR]`,
/// zero-padding the missing columns.
fn pack_b(b: &View<'_>, k0: usize, kc: usize, c0: usize, cols: usize, dst: &mut [f32]) {
    if cols < NR {
        dst.fill(0.0);
    }
    if b.cs == 1 {
        let mut c = c0;
        while c < c0 + cols {
            let seg = (b.cl - c % b.cl).min(c0 + cols - c);
            let base = b.col_base(c) + k0 * b.rs;
            let j = c - c0;
            if seg == NR {
                // Whole rows: three vector moves each where the CPU has AVX-512 (built for
                // the baseline CPU, a 192-byte copy is a call to memmove per row, as
                // costly as the copy).
                #[cfg(target_arch = "x86_64")]
                if avx512_detected() {
                    // SAFETY: `copy_rows` only needs the `avx512f` target feature,
                    // detected on this CPU just above; it reads and writes through slices.
                    unsafe { avx512::copy_rows(&b.data[base..], b.rs, dst, kc) };
                    c += seg;
                    continue;
                }
                for (kk, d) in dst.chunks_exact_mut(NR).enumerate().take(kc) {
                    let src = b.data[base + kk * b.rs..].first_chunk::<NR>();
                    if let (Some(d), Some(src)) = (d.first_chunk_mut::<NR>(), src) {
                        *d = *src;
                    }
                }
            } else {
                for (kk, d) in dst.chunks_exact_mut(NR).enumerate().take(kc) {
                    let src = &b.data[base + kk * b.rs..][..seg];
                    d[j..j + seg].copy_from_slice(src);
                }
            }
            c += seg;
        }
    } else if b.rs == 1 {
        for (kb, d) in dst.chunks_mut(16 * NR).enumerate().take(kc.div_ceil(16)) {
            let k1 = k0 + kb * 16;
            let len = (kc - kb * 16).min(16);
            let mut done = 0;
            #[cfg(target_arch = "x86_64")]
            if len == 16 && avx512_detected() {
                // 16 columns × 16 k at a time, transposed in registers.
                while done + 16 <= cols {
                    let rows: [&[f32; 16]; 16] = std::array::from_fn(|i| {
                        b.data[b.col_base(c0 + done + i) + k1..]
                            .first_chunk::<16>()
                            .expect("the view fits: checked before packing")
                    });
                    // SAFETY: `transpose16` only needs the `avx512f` target feature,
                    // detected on this CPU just above; it reads and writes through
                    // references and slices.
                    unsafe { avx512::transpose16(&rows, d, done) };
                    done += 16;
                }
            }
            for j in done..cols {
                let src = &b.data[b.col_base(c0 + j) + k1..][..len];
                for (t, v) in src.iter().enumerate() {
                    d[t * NR + j] = *v;
                }
            }
        }
    } else {
        for j in 0..cols {
            let base = b.col_base(c0 + j) + k0 * b.rs;
            if b.rs == 1 {
                // Transposed B (each column contiguous along k): done in blocks of 16 k
                // below, so the writes stay within a few cache lines.
                break;
            } else {
                for (kk, d) in dst[j..].iter_mut().step_by(NR).enumerate().take(kc) {
                    *d = b.data[base + kk * b.rs];
                }
            }
        }
    }
}

/// All tiles of one packed `mc × kc` block of A against one packed `kc × nc` block of B.
#[allow(clippy::too_many_arguments)]
fn block(
    ap: &[f32],
    bp: &[f32],
    kc: usize,
    ic: usize,
    mc: usize,
    jc: usize,
    nc: usize,
    out: &mut Out<'_>,
    store: Store<'_>,
    simd: bool,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd && avx512_detected() {
            // SAFETY: `avx512::block` only needs the `avx512f` target feature, which was
            // detected on this CPU just above; all its memory accesses go through slices.
            unsafe { avx512::block(ap, bp, kc, ic, mc, jc, nc, out, store) };
            return;
        }
    }
    let _ = simd;
    block_portable(ap, bp, kc, ic, mc, jc, nc, out, store);
}

/// The same computation as the AVX-512 block in plain Rust.
#[allow(clippy::too_many_arguments)]
fn block_portable(
    ap: &[f32],
    bp: &[f32],
    kc: usize,
    ic: usize,
    mc: usize,
    jc: usize,
    nc: usize,
    out: &mut Out<'_>,
    store: Store<'_>,
) {
    for (pi, a) in ap.chunks_exact(MR * kc).enumerate() {
        let r0 = pi * MR;
        let rows = (mc - r0).min(MR);
        for (pj, b) in bp.chunks_exact(NR * kc).enumerate() {
            let c0 = pj * NR;
            let cols = (nc - c0).min(NR);
            let mut acc = [[0f32; NR]; MR];
            for (av, bv) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
                for (accr, &x) in acc.iter_mut().zip(av) {
                    for (o, &y) in accr.iter_mut().zip(bv) {
                        *o += x * y;
                    }
                }
            }
            write_tile(&acc, out, ic + r0, rows, jc + c0, cols, store);
        }
    }
}

/// Stores the first `rows × cols` of a tile at `(r0, c0)` of `out`.
fn write_tile(
    acc: &[[f32; NR]; MR],
    out: &mut Out<'_>,
    r0: usize,
    rows: usize,
    c0: usize,
    cols: usize,
    store: Store<'_>,
) {
    let (m, l) = (out.m, out.l);
    for (r, accr) in acc.iter().enumerate().take(rows) {
        let row = r0 + r;
        let add = match store {
            Store::Set(Some(bias)) => bias[row],
            _ => 0.0,
        };
        let mut j = 0;
        while j < cols {
            let c = c0 + j;
            let seg = (l - c % l).min(cols - j);
            let dst = &mut out.data[(c / l) * m * l + row * l + c % l..][..seg];
            match store {
                Store::Add => {
                    for (d, s) in dst.iter_mut().zip(&accr[j..j + seg]) {
                        *d += *s;
                    }
                }
                Store::Set(_) => {
                    for (d, s) in dst.iter_mut().zip(&accr[j..j + seg]) {
                        *d = *s + add;
                    }
                }
            }
            j += seg;
        }
    }
}

/// The operands of [`wgrad_corr`]: a padded output gradient and a padded input, both laid
/// out so that a kernel tap is a constant offset.
#[derive(Clone, Copy)]
pub(crate) struct Corr<'a> {
    /// Output gradient `[B, Co, T]`: each output row padded to the input's padded width,
    /// zeros in the padding, `T` a multiple of 16 (zeros past the last row).
    pub dy: &'a [f32],
    /// Padded input `[B, Ci, plane]`; tap `q` of output position `t` reads `t + offs[q]`
    /// (`plane ≥ max(offs) + T + 2`).
    pub x: &'a [f32],
    pub b: usize,
    pub co: usize,
    pub ci: usize,
    pub t: usize,
    pub plane: usize,
    /// Offset of each kernel tap.
    pub offs: &'a [usize],
}

/// Largest number of taps one call covers (a 3×3 kernel).
const TAPS: usize = 9;
/// Output channels of one tile.
const ROWS: usize = 4;

/// The weight gradient of a stride-1 convolution as correlations of contiguous rows:
/// `out[co, ci, q] = Σ_b Σ_t dy[b, co, t] · x[b, ci, t + offs[q]]` (`out` is
/// `[Co, Ci, taps]`). The tile keeps two output channels × up to nine taps in registers
/// and needs no packing: both operands are read in place, 16 positions at a time. Images
/// are taken in blocks that stay in L2, with one horizontal sum per tile and block.
/// `None` (and `out` untouched) when the AVX-512 kernel is not active or the operands do
/// not have the stated sizes.
pub(crate) fn wgrad_corr(c: &Corr<'_>, out: &mut [f32]) -> Option<()> {
    if !cpu_sgemm_active() {
        return None;
    }
    corr_with(c, out, true)
}

fn corr_with(c: &Corr<'_>, out: &mut [f32], simd: bool) -> Option<()> {
    let taps = c.offs.len();
    let max_off = c.offs.iter().copied().max().unwrap_or(0);
    if (simd && !avx512_detected())
        || !c.t.is_multiple_of(16)
        || c.dy.len() != c.b * c.co * c.t
        || c.x.len() != c.b * c.ci * c.plane
        || max_off + c.t + 2 > c.plane
        || out.len() != c.co * c.ci * taps
    {
        return None;
    }
    out.fill(0.0);
    if taps == 0 || c.co == 0 || c.ci == 0 {
        return Some(());
    }
    // Enough positions per block that the horizontal sums are cheap, few enough images
    // that the block's rows stay in L2.
    let bblk = 1024usize.div_ceil(c.t.max(1)).clamp(1, c.b.max(1));
    let mut b0 = 0;
    while b0 < c.b {
        let b1 = (b0 + bblk).min(c.b);
        out.par_chunks_mut(ROWS * c.ci * taps)
            .enumerate()
            .for_each(|(quad, chunk)| {
                let co0 = ROWS * quad;
                let rows = chunk.len() / (c.ci * taps);
                for ch in 0..c.ci {
                    let mut q0 = 0;
                    while q0 < taps {
                        let nt = (taps - q0).min(TAPS);
                        let mut offs = [0usize; TAPS];
                        offs[..nt].copy_from_slice(&c.offs[q0..q0 + nt]);
                        let sums = corr_tile(c, b0..b1, co0, rows, ch, &offs, nt, simd);
                        for (r, row) in sums.iter().enumerate().take(rows) {
                            let dst = &mut chunk[(r * c.ci + ch) * taps + q0..][..nt];
                            for (d, v) in dst.iter_mut().zip(row) {
                                *d += *v;
                            }
                        }
                        q0 += nt;
                    }
                }
            });
        b0 = b1;
    }
    Some(())
}

/// Sums of one tile over images `bs`: output channels `co0..co0 + rows` (`rows ≤ ROWS`)
/// × taps `offs[..nt]` of input channel `ch`.
#[allow(clippy::too_many_arguments)]
fn corr_tile(
    c: &Corr<'_>,
    bs: std::ops::Range<usize>,
    co0: usize,
    rows: usize,
    ch: usize,
    offs: &[usize; TAPS],
    nt: usize,
    simd: bool,
) -> [[f32; TAPS]; ROWS] {
    #[cfg(target_arch = "x86_64")]
    {
        if simd && avx512_detected() {
            // SAFETY: `corr_tile` only needs the `avx512f` target feature, detected on
            // this CPU just above; all its memory accesses go through slices.
            return unsafe { avx512::corr_tile(c, bs, co0, rows, ch, offs, nt) };
        }
    }
    let _ = simd;
    let mut sums = [[0f32; TAPS]; ROWS];
    for b in bs {
        let xb = &c.x[(b * c.ci + ch) * c.plane..][..c.plane];
        for (r, row) in sums.iter_mut().enumerate().take(rows) {
            let d = &c.dy[(b * c.co + co0 + r) * c.t..][..c.t];
            for (s, &o) in row.iter_mut().zip(&offs[..nt]) {
                *s += d
                    .iter()
                    .zip(&xb[o..o + c.t])
                    .map(|(a, x)| a * x)
                    .sum::<f32>();
            }
        }
    }
    sums
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Corr, MR, NR, Out, ROWS, Store, TAPS, write_tile};
    use std::arch::x86_64::{
        __m512, _mm512_add_ps, _mm512_castpd_ps, _mm512_castps_pd, _mm512_fmadd_ps,
        _mm512_loadu_ps, _mm512_reduce_add_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_shuffle_f32x4, _mm512_storeu_ps, _mm512_unpackhi_pd, _mm512_unpackhi_ps,
        _mm512_unpacklo_pd, _mm512_unpacklo_ps,
    };

    /// Copies `kc` rows of [`NR`] values, `src` rows `rs` apart, into `dst` (`[kc][NR]`).
    #[target_feature(enable = "avx512f")]
    pub(super) fn copy_rows(src: &[f32], rs: usize, dst: &mut [f32], kc: usize) {
        for (kk, d) in dst.chunks_exact_mut(NR).enumerate().take(kc) {
            let row = &src[kk * rs..][..NR];
            for v in 0..NR / 16 {
                store(lanes_mut(d, 16 * v), load(lanes(row, 16 * v)));
            }
        }
    }

    /// See [`super::transpose16x16`].
    #[target_feature(enable = "avx512f")]
    pub(super) fn transpose_block(rows: &[&[f32; 16]; 16], out: &mut [[f32; 16]; 16]) {
        let r: [__m512; 16] = std::array::from_fn(|i| load(rows[i]));
        for (o, v) in out.iter_mut().zip(transposed(&r)) {
            store(o, v);
        }
    }

    /// Writes the 16×16 transpose of `rows` into `dst`: row `t` of the result (element
    /// `t` of every input row) at `dst[t·NR + j ..][..16]`.
    #[target_feature(enable = "avx512f")]
    pub(super) fn transpose16(rows: &[&[f32; 16]; 16], dst: &mut [f32], j: usize) {
        let r: [__m512; 16] = std::array::from_fn(|i| load(rows[i]));
        for (t, v) in transposed(&r).into_iter().enumerate() {
            store(lanes_mut(dst, t * NR + j), v);
        }
    }

    /// Writes the 16×8 transpose of eight 16-value `rows` into `dst`: row `t` (element
    /// `t` of every input row) at `dst[t·MR..][..8]` (A's packed micro-panel layout).
    /// Two output rows are one 16-value store: 32 shuffles in three stages (32-bit and
    /// 64-bit interleaves inside 128-bit blocks, then two block exchanges), against 64 for
    /// a 16×16 transpose padded with zero rows.
    #[target_feature(enable = "avx512f")]
    pub(super) fn transpose8x16(rows: &[&[f32; 16]; MR], dst: &mut [f32]) {
        let r: [__m512; MR] = std::array::from_fn(|i| load(rows[i]));
        // u[4h + e]: block b holds element 4b + e of rows 4h..4h+3.
        let u = interleaved(&r);
        // Output rows 4b + e and 4b + e + 1 (e = 0 or 2) are blocks b of u[e], u[4 + e],
        // u[e + 1], u[4 + e + 1]: rows 0..4 and 4..8 of two consecutive elements.
        let (dst, _) = dst
            .split_first_chunk_mut::<{ 16 * MR }>()
            .expect("a packed panel has 16 rows of 8 here");
        for e in [0, 2] {
            let (lo0, lo1) = (
                _mm512_shuffle_f32x4::<0x44>(u[e], u[4 + e]),
                _mm512_shuffle_f32x4::<0xEE>(u[e], u[4 + e]),
            );
            let (hi0, hi1) = (
                _mm512_shuffle_f32x4::<0x44>(u[e + 1], u[5 + e]),
                _mm512_shuffle_f32x4::<0xEE>(u[e + 1], u[5 + e]),
            );
            let out = [
                (0, _mm512_shuffle_f32x4::<0x88>(lo0, hi0)),
                (4, _mm512_shuffle_f32x4::<0xDD>(lo0, hi0)),
                (8, _mm512_shuffle_f32x4::<0x88>(lo1, hi1)),
                (12, _mm512_shuffle_f32x4::<0xDD>(lo1, hi1)),
            ];
            for (b4, v) in out {
                store(lanes_mut(dst, (b4 + e) * MR), v);
            }
        }
    }

    /// The first two stages of a transpose of `N` rows (`N` a multiple of 4): result
    /// `4g + e` holds, in its 128-bit block `b`, element `4b + e` of rows `4g..4g + 4`
    /// (32-bit interleaves of row pairs, then 64-bit interleaves of those pairs).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn interleaved<const N: usize>(r: &[__m512; N]) -> [__m512; N] {
        // s[2i] / s[2i+1]: rows 2i, 2i+1 interleaved (elements 0,1 / 2,3 of each block).
        let s: [__m512; N] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        std::array::from_fn(|i| {
            let (g, e) = (i / 4, i % 4);
            let (a, c) = (s[4 * g + e / 2], s[4 * g + 2 + e / 2]);
            let (a, c) = (_mm512_castps_pd(a), _mm512_castps_pd(c));
            _mm512_castpd_ps(if e % 2 == 0 {
                _mm512_unpacklo_pd(a, c)
            } else {
                _mm512_unpackhi_pd(a, c)
            })
        })
    }

    /// The 16×16 transpose of `r` (result `t` = element `t` of every row). Four stages of
    /// in-register shuffles: 32-bit and 64-bit interleaves inside 128-bit blocks, then
    /// two exchanges of whole blocks.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transposed(r: &[__m512; 16]) -> [__m512; 16] {
        // q[4g + jj]: block b holds element 4b + jj of rows 4g..4g+3.
        let q = interleaved(r);
        let mut res = [_mm512_setzero_ps(); 16];
        for jj in 0..4 {
            let (q0, q1, q2, q3) = (q[jj], q[4 + jj], q[8 + jj], q[12 + jj]);
            let x0 = _mm512_shuffle_f32x4::<0x44>(q0, q1);
            let x1 = _mm512_shuffle_f32x4::<0xEE>(q0, q1);
            let x2 = _mm512_shuffle_f32x4::<0x44>(q2, q3);
            let x3 = _mm512_shuffle_f32x4::<0xEE>(q2, q3);
            let out = [
                _mm512_shuffle_f32x4::<0x88>(x0, x2),
                _mm512_shuffle_f32x4::<0xDD>(x0, x2),
                _mm512_shuffle_f32x4::<0x88>(x1, x3),
                _mm512_shuffle_f32x4::<0xDD>(x1, x3),
            ];
            // out[b] is output row 4b + jj.
            for (b, v) in out.into_iter().enumerate() {
                res[4 * b + jj] = v;
            }
        }
        res
    }

    /// See [`super::corr_tile`].
    #[target_feature(enable = "avx512f")]
    pub(super) fn corr_tile(
        c: &Corr<'_>,
        bs: std::ops::Range<usize>,
        co0: usize,
        rows: usize,
        ch: usize,
        offs: &[usize; TAPS],
        nt: usize,
    ) -> [[f32; TAPS]; ROWS] {
        // Rows past `rows` repeat the last one (their sums are dropped).
        let r = |i: usize| co0 + i.min(rows - 1);
        let rows_at = [r(0), r(1), r(2), r(3)];
        let mut sums = [[0f32; TAPS]; ROWS];
        // A 3×3 kernel's taps are three rows of three neighbours: one pass per kernel row,
        // its three taps loaded from one slice with constant displacements.
        let pitch = offs[3].wrapping_sub(offs[0]);
        if nt == 9 && (0..9).all(|q| offs[q] == offs[0] + (q / 3) * pitch + q % 3) {
            for i in 0..3 {
                let s3 = corr_rows3(c, bs.clone(), &rows_at, ch, offs[0] + i * pitch);
                for (dst, src) in sums.iter_mut().zip(&s3) {
                    dst[3 * i..3 * i + 3].copy_from_slice(src);
                }
            }
            return sums;
        }
        for q in 0..nt {
            let s1 = corr_rows3(c, bs.clone(), &rows_at, ch, offs[q]);
            for (dst, src) in sums.iter_mut().zip(&s1) {
                dst[q] = src[0];
            }
        }
        sums
    }

    /// Four output rows × three neighbouring taps at `off`, `off + 1`, `off + 2`, summed
    /// over images `bs`: 12 accumulators, seven loads per 12 FMAs.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn corr_rows3(
        c: &Corr<'_>,
        bs: std::ops::Range<usize>,
        rows_at: &[usize; ROWS],
        ch: usize,
        off: usize,
    ) -> [[f32; 3]; ROWS] {
        let z = _mm512_setzero_ps();
        let (mut a0, mut a1, mut a2, mut b0, mut b1, mut b2) = (z, z, z, z, z, z);
        let (mut c0, mut c1, mut c2, mut d0, mut d1, mut d2) = (z, z, z, z, z, z);
        for b in bs {
            let row = |r: usize| &c.dy[(b * c.co + rows_at[r]) * c.t..][..c.t];
            let (y0, y1, y2, y3) = (row(0), row(1), row(2), row(3));
            // Reads `off .. off + t + 2`, inside the plane: `max_off + t + 2 ≤ plane`
            // was checked (the two extra values only feed the unused lanes of x1, x2
            // when this is a single tap).
            let xb = &c.x[(b * c.ci + ch) * c.plane..][..c.plane];
            let mut v = 0;
            while v < c.t {
                let (xs, _) = xb[off + v..].split_first_chunk::<18>().expect("18 values");
                let x0 = load(lanes(xs, 0));
                let x1 = load(lanes(xs, 1));
                let x2 = load(lanes(xs, 2));
                let w = load(lanes(y0, v));
                a0 = _mm512_fmadd_ps(w, x0, a0);
                a1 = _mm512_fmadd_ps(w, x1, a1);
                a2 = _mm512_fmadd_ps(w, x2, a2);
                let w = load(lanes(y1, v));
                b0 = _mm512_fmadd_ps(w, x0, b0);
                b1 = _mm512_fmadd_ps(w, x1, b1);
                b2 = _mm512_fmadd_ps(w, x2, b2);
                let w = load(lanes(y2, v));
                c0 = _mm512_fmadd_ps(w, x0, c0);
                c1 = _mm512_fmadd_ps(w, x1, c1);
                c2 = _mm512_fmadd_ps(w, x2, c2);
                let w = load(lanes(y3, v));
                d0 = _mm512_fmadd_ps(w, x0, d0);
                d1 = _mm512_fmadd_ps(w, x1, d1);
                d2 = _mm512_fmadd_ps(w, x2, d2);
                v += 16;
            }
        }
        let h = |v: __m512| _mm512_reduce_add_ps(v);
        [
            [h(a0), h(a1), h(a2)],
            [h(b0), h(b1), h(b2)],
            [h(c0), h(c1), h(c2)],
            [h(d0), h(d1), h(d2)],
        ]
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn load(s: &[f32; 16]) -> __m512 {
        // SAFETY: `s` is a reference to 16 initialised `f32`, exactly what the unaligned
        // 512-bit load reads; the feature is enabled on this function.
        unsafe { _mm512_loadu_ps(s.as_ptr()) }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn store(d: &mut [f32; 16], v: __m512) {
        // SAFETY: `d` is an exclusive reference to 16 `f32`, exactly what the unaligned
        // 512-bit store writes; the feature is enabled on this function.
        unsafe { _mm512_storeu_ps(d.as_mut_ptr(), v) }
    }

    /// 16 lanes of `s` from `i`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn lanes(s: &[f32], i: usize) -> &[f32; 16] {
        let (chunk, _) = s[i..].split_first_chunk::<16>().expect("16 lanes");
        chunk
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn lanes_mut(s: &mut [f32], i: usize) -> &mut [f32; 16] {
        let (chunk, _) = s[i..].split_first_chunk_mut::<16>().expect("16 lanes");
        chunk
    }

    /// Stores the first `rows × cols` of a register tile at `(row0, col0)` of `out`. A
    /// macro, not a function: LLVM would not inline a call from both blocks, and passing
    /// the 24 accumulators by reference spills them through the stack.
    macro_rules! put {
        ($acc:expr, $out:expr, $row0:expr, $rows:expr, $col0:expr, $cols:expr, $store_mode:expr) => {{
            let (acc, out, row0, rows, col0, cols, store_mode): (
                [[__m512; 3]; MR],
                &mut Out<'_>,
                usize,
                usize,
                usize,
                usize,
                Store<'_>,
            ) = ($acc, $out, $row0, $rows, $col0, $cols, $store_mode);
            let (m, l) = (out.m, out.l);
            if rows == MR && cols == NR && col0 % l + NR <= l {
                let base = (col0 / l) * m * l + col0 % l;
                for (r, accr) in acc.iter().enumerate() {
                    let row = row0 + r;
                    let dst = &mut out.data[base + row * l..][..NR];
                    match store_mode {
                        Store::Set(bias) => {
                            let add = _mm512_set1_ps(bias.map_or(0.0, |b| b[row]));
                            for (v, x) in accr.iter().enumerate() {
                                store(lanes_mut(dst, 16 * v), _mm512_add_ps(*x, add));
                            }
                        }
                        Store::Add => {
                            for (v, x) in accr.iter().enumerate() {
                                let d = lanes_mut(dst, 16 * v);
                                let s = _mm512_add_ps(load(d), *x);
                                store(d, s);
                            }
                        }
                    }
                }
            } else {
                let mut t = [[0f32; NR]; MR];
                for (tr, accr) in t.iter_mut().zip(&acc) {
                    for (v, x) in accr.iter().enumerate() {
                        store(lanes_mut(tr, 16 * v), *x);
                    }
                }
                write_tile(&t, out, row0, rows, col0, cols, store_mode);
            }
        }};
    }

    /// See [`super::block`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) fn block(
        ap: &[f32],
        bp: &[f32],
        kc: usize,
        ic: usize,
        mc: usize,
        jc: usize,
        nc: usize,
        out: &mut Out<'_>,
        store_mode: Store<'_>,
    ) {
        for (pi, a) in ap.chunks_exact(MR * kc).enumerate() {
            let r0 = pi * MR;
            let rows = (mc - r0).min(MR);
            for (pj, b) in bp.chunks_exact(NR * kc).enumerate() {
                let c0 = pj * NR;
                let cols = (nc - c0).min(NR);
                // A partial last panel multiplies only the vectors it has columns in.
                let acc = match cols.div_ceil(16) {
                    1 => tile_v::<1>(a, b, NR),
                    2 => tile_v::<2>(a, b, NR),
                    _ => tile(a, b),
                };
                put!(acc, out, ic + r0, rows, jc + c0, cols, store_mode);
            }
        }
    }

    /// All row panels of packed `ap` (`mc` rows, `kc` deep) against one whole [`NR`]-wide
    /// panel of B read in place (row `kk` at `b[kk·rs..][..NR]`), stored at column `col0`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) fn block_in_place(
        ap: &[f32],
        b: &[f32],
        rs: usize,
        kc: usize,
        mc: usize,
        col0: usize,
        out: &mut Out<'_>,
    ) {
        for (pi, a) in ap.chunks_exact(MR * kc).enumerate() {
            let r0 = pi * MR;
            let rows = (mc - r0).min(MR);
            put!(
                tile_v::<3>(a, b, rs),
                out,
                r0,
                rows,
                col0,
                NR,
                Store::Set(None)
            );
        }
    }

    /// The 8×48 register tile: `Σ_k a[k][r]·b[k][c]` over packed micro-panels.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn tile(a: &[f32], b: &[f32]) -> [[__m512; 3]; MR] {
        tile_v::<3>(a, b, NR)
    }

    /// The first `V` vectors (`16·V` columns) of the register tile, B's rows `rs` apart
    /// (packed panels: `rs = NR`; B read in place: its row stride); the other accumulators
    /// stay zero.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn tile_v<const V: usize>(a: &[f32], b: &[f32], rs: usize) -> [[__m512; 3]; MR] {
        let mut acc = [[_mm512_setzero_ps(); 3]; MR];
        let kc = a.len() / MR;
        if kc == 0 {
            return acc;
        }
        // One bounds check for the whole panel: every step below reads `a[kk·MR..][..MR]`
        // and `b[kk·rs..][..16·V]` for `kk < kc`.
        assert!(
            V <= 3 && b.len() >= (kc - 1) * rs + 16 * V,
            "B panel too short"
        );
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        let mut step = |kk: usize| {
            // SAFETY: `kk < kc`, so both reads lie inside the slices (checked above); the
            // feature is enabled on this function.
            let bx: [__m512; V] =
                std::array::from_fn(|v| unsafe { _mm512_loadu_ps(bp.add(kk * rs + 16 * v)) });
            for (r, accr) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let x = _mm512_set1_ps(unsafe { *ap.add(kk * MR + r) });
                for (a, b) in accr.iter_mut().zip(&bx) {
                    *a = _mm512_fmadd_ps(x, *b, *a);
                }
            }
        };
        // Two steps of k per iteration: the loop's own instructions would otherwise take
        // a fifth of the front end's slots next to the 24 FMAs.
        let mut kk = 0;
        while kk + 2 <= kc {
            step(kk);
            step(kk + 1);
            kk += 2;
        }
        if kk < kc {
            step(kk);
        }
        acc
    }
}

/// How a matrix operand of [`sgemm_f32`] lies in its slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatLayout {
    /// Row-major `[rows, cols]`.
    RowMajor,
    /// The transpose of a row-major `[cols, rows]` matrix.
    Transposed,
    /// A `[G, rows, L]` tensor read as the `[rows, G·L]` matrix (how the convolution reads
    /// `[B, C, H·W]` activations and gradients as `[C, B·H·W]`); `cols` must be a multiple
    /// of `L`.
    Grouped(usize),
}

/// `C = A·B` with this crate's AVX-512 kernel: `a` is `m × k`, `b` is `k × n`, each laid
/// out as its [`MatLayout`] says; `C` comes back as `[n / out_group, m, out_group]`
/// (`out_group = n`: row-major `m × n`). `None` when the kernel is not active
/// ([`cpu_sgemm_active`]), a slice does not hold its shape, or `out_group` does not divide
/// `n`. The convolution fast path makes the same calls; benchmarks and tests use this one.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_f32(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    a_layout: MatLayout,
    b: &[f32],
    b_layout: MatLayout,
    out_group: usize,
) -> Option<Vec<f32>> {
    let view = |d, rows: usize, cols: usize, layout| match layout {
        MatLayout::RowMajor => Some(View::row_major(d, cols)),
        MatLayout::Transposed => Some(View::strided(d, 1, rows)),
        MatLayout::Grouped(l) if l > 0 && cols.is_multiple_of(l) => Some(View::grouped(d, rows, l)),
        MatLayout::Grouped(_) => None,
    };
    let av = view(a, m, k, a_layout)?;
    let bv = view(b, k, n, b_layout)?;
    let mut c = vec![0f32; m * n];
    sgemm(m, n, k, av, bv, &mut c, out_group, None)?;
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn rand_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
    }

    /// `C` from a plain f64 triple loop over element accessors, returned grouped as the
    /// GEMM writes it (`[n / l, m, l]`).
    #[allow(clippy::too_many_arguments)]
    fn reference(
        m: usize,
        n: usize,
        k: usize,
        a: &View<'_>,
        b: &View<'_>,
        l: usize,
        bias: Option<&[f32]>,
    ) -> Vec<f64> {
        let at = |v: &View<'_>, r: usize, c: usize| f64::from(v.data[r * v.rs + v.col_base(c)]);
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = bias.map_or(0.0, |b| f64::from(b[i]));
                for p in 0..k {
                    s += at(a, i, p) * at(b, p, j);
                }
                c[(j / l) * m * l + i * l + j % l] = s;
            }
        }
        c
    }

    /// Max |got − want| over max(1, max |want|) must stay under 1e-5·sqrt(k): f32 sums of
    /// k products in a different order than f64 differ by a few ulps per term.
    fn assert_close(what: &str, k: usize, got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1.0f64, |s, v| s.max(v.abs()));
        let err = got
            .iter()
            .zip(want)
            .fold(0.0f64, |e, (g, w)| e.max((f64::from(*g) - w).abs()))
            / scale;
        let tol = 1e-5 * (k.max(1) as f64).sqrt();
        assert!(err <= tol, "{what}: scaled max error {err:e} > {tol:e}");
    }

    /// The kernels to test on this machine: the portable one always, AVX-512 where found.
    fn kernels() -> Vec<bool> {
        if avx512_detected() {
            vec![false, true]
        } else {
            eprintln!("no avx512f on this CPU: testing the portable kernel only");
            vec![false]
        }
    }

    /// One shape in every layout the convolution uses, against the f64 reference.
    fn check_shape(rng: &mut ChaCha8Rng, m: usize, n: usize, k: usize, simd: bool) {
        let what = |v: &str| format!("m {m} n {n} k {k} simd {simd}: {v}");
        let a = rand_vec(rng, m * k);
        let b = rand_vec(rng, k * n);
        let bias = rand_vec(rng, m);
        // Plain row-major A·B (+ bias), row-major C.
        for (av, bv, name) in [
            (View::row_major(&a, k), View::row_major(&b, n), "A·B"),
            (View::strided(&a, 1, m), View::row_major(&b, n), "Aᵀ·B"),
            (View::row_major(&a, k), View::strided(&b, 1, k), "A·Bᵀ"),
            (View::strided(&a, 1, m), View::strided(&b, 1, k), "Aᵀ·Bᵀ"),
        ] {
            for bias in [None, Some(&bias[..])] {
                let mut c = vec![f32::NAN; m * n];
                gemm_with(m, n, k, av, &bv, &mut c, n.max(1), bias, simd)
                    .unwrap_or_else(|| panic!("{} declined", what(name)));
                let want = reference(m, n, k, &av, &bv, n.max(1), bias);
                assert_close(&what(name), k, &c, &want);
            }
        }
        // Grouped operands and output, as the convolution reads [B, C, L] tensors.
        for l in [1, 3, 7, 49] {
            if !k.is_multiple_of(l) {
                continue;
            }
            // A grouped along k (the weight gradient's dY), B strided (colsᵀ).
            let av = View::grouped(&a, m, l);
            let bv = View::strided(&b, 1, k);
            let mut c = vec![f32::NAN; m * n];
            gemm_with(m, n, k, av, &bv, &mut c, n.max(1), None, simd).expect("declined");
            assert_close(
                &what(&format!("grouped A l {l}")),
                k,
                &c,
                &reference(m, n, k, &av, &bv, n.max(1), None),
            );
        }
        for l in [1, 3, 7, 49] {
            if !n.is_multiple_of(l) {
                continue;
            }
            // B grouped along n (the input gradient's dY), output grouped [n / l, m, l].
            let av = View::strided(&a, 1, m);
            let bv = View::grouped(&b, k, l);
            for bias in [None, Some(&bias[..])] {
                let mut c = vec![f32::NAN; m * n];
                gemm_with(m, n, k, av, &bv, &mut c, l, bias, simd).expect("declined");
                assert_close(
                    &what(&format!("grouped B and C l {l}")),
                    k,
                    &c,
                    &reference(m, n, k, &av, &bv, l, bias),
                );
            }
        }
    }

    #[test]
    fn matches_f64_reference_on_odd_shapes() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let dims = [1, 3, 17, 31, 33, 100];
        for simd in kernels() {
            for &m in &dims {
                for &n in &dims {
                    for &k in &dims {
                        check_shape(&mut rng, m, n, k, simd);
                    }
                }
            }
        }
    }

    #[test]
    fn matches_f64_reference_on_block_edges_and_random_shapes() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        // Just below/above the tile and block sizes, and a long k (the weight gradient's
        // k split across threads).
        let mut shapes = vec![
            (MR, NR, KC),
            (MR + 1, NR + 1, KC + 1),
            (MC + 3, NC + 5, 2 * KC + 7),
            (9, 32, 3000),
            (32, 9, 2401),
            (64, 96, 196 * 7),
            // Many rows, few columns per image group (ResNet's late stages): the
            // row-split path with a grouped copy-out for the grouped cases below.
            (300, 128, 100),
        ];
        for _ in 0..12 {
            shapes.push((
                rng.random_range(1..150),
                rng.random_range(1..300),
                rng.random_range(1..700),
            ));
        }
        for simd in kernels() {
            for &(m, n, k) in &shapes {
                check_shape(&mut rng, m, n, k, simd);
            }
        }
    }

    #[test]
    fn empty_and_zero_k_shapes() {
        for simd in kernels() {
            let bias = [1.0f32, 2.0];
            let mut c = vec![f32::NAN; 2 * 3];
            gemm_with(
                2,
                3,
                0,
                View::row_major(&[], 0),
                &View::row_major(&[], 3),
                &mut c,
                3,
                Some(&bias),
                simd,
            )
            .expect("declined");
            assert_eq!(c, [1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
            let mut e: Vec<f32> = Vec::new();
            assert!(
                gemm_with(
                    0,
                    4,
                    5,
                    View::row_major(&[], 5),
                    &View::row_major(&[0.0; 20], 4),
                    &mut e,
                    4,
                    None,
                    simd
                )
                .is_some()
            );
        }
    }

    #[test]
    fn declines_views_that_do_not_fit() {
        let a = [1.0f32; 6];
        let mut c = vec![0f32; 4];
        // A claims 2×4 but holds 6 values.
        assert!(
            gemm_with(
                2,
                2,
                4,
                View::row_major(&a, 4),
                &View::row_major(&[1.0; 8], 2),
                &mut c,
                2,
                None,
                false
            )
            .is_none()
        );
        // Output group length that does not divide n.
        assert!(
            gemm_with(
                2,
                2,
                3,
                View::row_major(&a, 3),
                &View::row_major(&a, 2),
                &mut c,
                3,
                None,
                false
            )
            .is_none()
        );
    }

    /// `out[co, ci, q] = Σ_b Σ_t dy[b, co, t] · x[b, ci, t + offs[q]]` in f64.
    fn corr_reference(c: &Corr<'_>) -> Vec<f64> {
        let taps = c.offs.len();
        let mut out = vec![0f64; c.co * c.ci * taps];
        for b in 0..c.b {
            for co in 0..c.co {
                for ci in 0..c.ci {
                    for (q, &o) in c.offs.iter().enumerate() {
                        let mut s = 0f64;
                        for t in 0..c.t {
                            s += f64::from(c.dy[(b * c.co + co) * c.t + t])
                                * f64::from(c.x[(b * c.ci + ci) * c.plane + t + o]);
                        }
                        out[(co * c.ci + ci) * taps + q] += s;
                    }
                }
            }
        }
        out
    }

    /// The correlation kernel against f64 sums: 3×3 tap patterns (its own tile) and
    /// others (one tap at a time), channel counts that leave partial tiles of four rows,
    /// one image and several image blocks.
    #[test]
    fn correlation_matches_f64_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        // (b, co, ci, t, pitch, taps as (row, col) offsets)
        let three: Vec<(usize, usize)> = (0..9).map(|q| (q / 3, q % 3)).collect();
        let five: Vec<(usize, usize)> = (0..25).map(|q| (q / 5, q % 5)).collect();
        type Case = (usize, usize, usize, usize, usize, Vec<(usize, usize)>);
        let cases: Vec<Case> = vec![
            (1, 4, 1, 16, 18, three.clone()),
            (3, 7, 5, 48, 9, three.clone()),
            (20, 9, 3, 64, 9, three.clone()),
            (2, 5, 2, 32, 7, five),
            (4, 6, 3, 16, 5, vec![(0, 0)]),
            (2, 3, 2, 32, 6, vec![(1, 1), (0, 2)]),
        ];
        for simd in kernels() {
            for (b, co, ci, t, pitch, taps) in &cases {
                let offs: Vec<usize> = taps.iter().map(|&(i, j)| i * pitch + j).collect();
                let plane = offs.iter().max().copied().unwrap_or(0) + t + 2 + 3;
                let dy = rand_vec(&mut rng, b * co * t);
                let x = rand_vec(&mut rng, b * ci * plane);
                let c = Corr {
                    dy: &dy,
                    x: &x,
                    b: *b,
                    co: *co,
                    ci: *ci,
                    t: *t,
                    plane,
                    offs: &offs,
                };
                let mut out = vec![f32::NAN; co * ci * offs.len()];
                corr_with(&c, &mut out, simd).expect("declined");
                let want = corr_reference(&c);
                let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
                for (i, (g, w)) in out.iter().zip(&want).enumerate() {
                    let err = (f64::from(*g) - w).abs() / scale;
                    // f32 sums of at most b·t = 1280 products of values in [−1, 1].
                    assert!(
                        err < 1e-5,
                        "simd {simd} case b{b} co{co} ci{ci} t{t}: element {i}: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// Operands of the wrong size, a `T` that is not a multiple of 16, or taps that read
    /// past the plane are declined, leaving the output untouched.
    #[test]
    fn correlation_declines_bad_operands() {
        let (dy, x) = (vec![0f32; 2 * 16], vec![0f32; 2 * 30]);
        let offs = [0usize, 1, 12];
        let good = Corr {
            dy: &dy,
            x: &x,
            b: 1,
            co: 2,
            ci: 2,
            t: 16,
            plane: 30,
            offs: &offs,
        };
        let mut out = vec![7f32; 2 * 2 * 3];
        assert!(corr_with(&good, &mut out, false).is_some());
        for bad in [
            Corr { t: 15, ..good },
            Corr { plane: 29, ..good },
            Corr { co: 3, ..good },
            Corr {
                offs: &[0, 13],
                ..good
            },
        ] {
            let mut out = vec![7f32; bad.co * bad.ci * bad.offs.len()];
            assert!(corr_with(&bad, &mut out, false).is_none());
            assert!(out.iter().all(|&v| v == 7.0), "output touched");
        }
    }

    #[test]
    fn packed_a_matches_f64_reference_with_b_in_place() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for simd in kernels() {
            for (m, k) in [(1, 1), (7, 5), (8, 32), (9, 64), (64, 32), (130, KC)] {
                for n in [1, 16, 47, 48, 49, 96, 144, 784] {
                    let a = rand_vec(&mut rng, m * k);
                    // B with 5 extra columns per row: read in place at its own stride.
                    let rs = n + 5;
                    let b = rand_vec(&mut rng, k * rs);
                    for (av, name) in [
                        (View::row_major(&a, k), "A"),
                        (View::strided(&a, 1, m), "Aᵀ"),
                    ] {
                        let what = format!("m {m} n {n} k {k} simd {simd}: {name}");
                        let pa = PackedA::new(av, m, k).expect("fits");
                        let bv = View::strided(&b, rs, 1);
                        let mut c = vec![f32::NAN; m * n];
                        packed_a_with(n, &pa, bv, &mut c, simd)
                            .unwrap_or_else(|| panic!("{what} declined"));
                        assert_close(&what, k, &c, &reference(m, n, k, &av, &bv, n, None));
                    }
                }
            }
        }
    }

    #[test]
    fn packed_a_declines_what_it_cannot_do() {
        let a = vec![1f32; 8 * (KC + 1)];
        assert!(
            PackedA::new(View::row_major(&a, KC + 1), 8, KC + 1).is_none(),
            "k over a block"
        );
        assert!(
            PackedA::new(View::row_major(&a[..10], 4), 8, 4).is_none(),
            "A too short"
        );
        let pa = PackedA::new(View::row_major(&a, 4), 8, 4).expect("fits");
        let b = vec![1f32; 4 * 48];
        let mut c = vec![0f32; 8 * 48];
        assert!(
            sgemm_packed_a(48, &pa, View::strided(&b, 1, 4), &mut c).is_none(),
            "Bᵀ"
        );
        let mut c49 = vec![0f32; 8 * 49];
        assert!(
            sgemm_packed_a(49, &pa, View::row_major(&b, 49), &mut c49).is_none(),
            "short B"
        );
        assert!(
            sgemm_packed_a(48, &pa, View::row_major(&b, 48), &mut c[1..]).is_none(),
            "short C"
        );
        let k0 = PackedA::new(View::row_major(&a, 1), 8, 0).expect("empty k");
        let mut c = vec![f32::NAN; 8 * 3];
        sgemm_packed_a(3, &k0, View::row_major(&b, 3), &mut c).expect("k = 0");
        assert!(c.iter().all(|&v| v == 0.0), "no products: zeros");
    }

    #[test]
    fn transpose16x16_transposes() {
        let src: Vec<[f32; 16]> = (0..16)
            .map(|i| std::array::from_fn(|j| (16 * i + j) as f32))
            .collect();
        let rows: [&[f32; 16]; 16] = std::array::from_fn(|i| &src[i]);
        let mut out = [[f32::NAN; 16]; 16];
        if !transpose16x16(&rows, &mut out) {
            assert!(!avx512_detected(), "declined with AVX-512");
            return;
        }
        for (j, row) in out.iter().enumerate() {
            for (i, v) in row.iter().enumerate() {
                assert_eq!(*v, (16 * i + j) as f32, "out[{j}][{i}]");
            }
        }
    }

    #[test]
    fn switch_turns_the_kernel_off() {
        // Only this test touches the switch inside this crate's unit tests.
        let (rm, ones) = (MatLayout::RowMajor, [1.0f32; 32]);
        set_cpu_sgemm(false);
        let off = sgemm_f32(2, 16, 1, &ones, rm, &ones, rm, 16);
        set_cpu_sgemm(true);
        assert!(off.is_none(), "the switch must force the fallback");
        if cpu_sgemm_active() {
            assert_eq!(
                sgemm_f32(2, 16, 1, &ones, rm, &ones, rm, 16),
                Some(vec![1.0; 32])
            );
            // Outputs narrower than MIN_N are left to candle.
            assert!(sgemm_f32(2, 2, 1, &ones, rm, &ones, rm, 2).is_none());
        }
    }
}
