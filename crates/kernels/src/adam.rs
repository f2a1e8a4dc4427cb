//! The element-wise Adam / AdamW update over `f32` slices, in place.

/// The `f32` constants of one parameter's Adam or AdamW update, rounded from the
/// optimizer's `f64` settings as candle's op chain rounds its scalars, so that
/// [`AdamStep::apply`] gives the bits of the equivalent tensor-op update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// Adam's L2 penalty: `g += θ·wd` before the moments.
    pub l2: bool,
    /// AdamW's decoupled decay: `θ *= decay` before the step.
    pub decoupled: bool,
    /// Weight decay (the L2 penalty's factor).
    pub wd: f32,
    /// `1 − lr·wd` (the decoupled decay's factor).
    pub decay: f32,
    /// `1 − β₁`.
    pub one_m_b1: f32,
    /// `β₂`.
    pub b2: f32,
    /// `1 − β₂`.
    pub one_m_b2: f32,
    /// `1 / √(1 − β₂ᵗ)`.
    pub inv_b2: f32,
    /// ε.
    pub eps: f32,
    /// `lr / (1 − β₁ᵗ)`.
    pub step: f32,
}

impl AdamStep {
    /// Updates one run of elements in place: parameters `th`, gradients `gr`, first and
    /// second moments `m` and `v` (all of one length). With AVX-512 where the CPU has it
    /// (the square root and the division, 16 lanes at a time, are most of the work);
    /// the same operations in the same order either way, so the same bits.
    pub fn apply(&self, th: &mut [f32], gr: &[f32], m: &mut [f32], v: &mut [f32]) {
        adam_run(self, th, gr, m, v);
    }
}

simd_fn! {
    fn adam_run(k: &AdamStep, th: &mut [f32], gr: &[f32], m0: &mut [f32], v0: &mut [f32]) {
        let k = *k;
        for (((t, &g), m), v) in th.iter_mut().zip(gr).zip(m0).zip(v0) {
            let (mut gj, mut tj) = (g, *t);
            // `+ 0.0` where candle's affine op adds its zero offset: −0.0 becomes +0.0
            // exactly as in the op chain.
            if k.l2 {
                gj += tj * k.wd + 0.0;
            }
            if k.decoupled {
                tj = tj * k.decay + 0.0;
            }
            let mj = *m + ((gj - *m) * k.one_m_b1 + 0.0);
            let vj = (*v * k.b2 + 0.0) + ((gj * gj) * k.one_m_b2 + 0.0);
            let denom = (vj.sqrt() * k.inv_b2 + 0.0) * 1.0 + k.eps;
            *t = tj - ((mj / denom) * k.step + 0.0);
            *m = mj;
            *v = vj;
        }
    }
}
