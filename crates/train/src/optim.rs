use std::cell::Cell;
use std::collections::HashMap;

use candle_core::{
    CpuStorage, DType, InplaceOp1, InplaceOp2, Layout, Tensor, Var, backprop::GradStore,
};
use cxr_kernels::AdamStep;
use cxr_runfolder::{AdamConfig, OptimizerKind};

use crate::{Result, TrainError};

/// Adam / AdamW with the same arithmetic as PyTorch's single-tensor implementation,
/// and state (moments, step count) that can be saved and restored for exact resume.
///
/// candle-nn's `AdamW` cannot save its state; this one can ([`Adam::state`],
/// [`Adam::load_state`]).
///
/// For fine-tuning, each parameter can get its own learning-rate multiplier
/// ([`Adam::set_lr_scales`], discriminative rates) and be frozen ([`Adam::set_frozen`]);
/// as in PyTorch, a parameter keeps its own step count for the bias correction, so
/// one unfrozen late starts its moments afresh.
#[derive(Debug)]
pub struct Adam {
    cfg: AdamConfig,
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    scale: Vec<f64>,
    frozen: Vec<bool>,
    steps: Vec<u64>,
    step: u64,
}

impl Adam {
    /// An optimizer over `params` (name, variable); names key the saved state.
    pub fn new(params: Vec<(String, Var)>, cfg: AdamConfig) -> Result<Self> {
        if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
            return Err(TrainError::Config {
                field: "lr".into(),
                reason: format!("must be a positive number, got {}", cfg.lr),
            });
        }
        if !(0.0..1.0).contains(&cfg.beta1) || !(0.0..1.0).contains(&cfg.beta2) {
            return Err(TrainError::Config {
                field: "betas".into(),
                reason: "must lie in [0, 1)".into(),
            });
        }
        if !(cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0) {
            return Err(TrainError::Config {
                field: "weight-decay".into(),
                reason: format!("must be ≥ 0, got {}", cfg.weight_decay),
            });
        }
        let mut m = Vec::with_capacity(params.len());
        let mut v = Vec::with_capacity(params.len());
        for (_, p) in &params {
            m.push(p.zeros_like()?);
            v.push(p.zeros_like()?);
        }
        let n = params.len();
        Ok(Self {
            cfg,
            params,
            m,
            v,
            scale: vec![1.0; n],
            frozen: vec![false; n],
            steps: vec![0; n],
            step: 0,
        })
    }

    /// Sets every parameter's learning-rate multiplier from its name.
    pub fn set_lr_scales(&mut self, scale_of: impl Fn(&str) -> f64) {
        for (i, (name, _)) in self.params.iter().enumerate() {
            self.scale[i] = scale_of(name);
        }
    }

    /// Freezes (true) or unfreezes every parameter by name: a frozen parameter is
    /// not updated and its moments and step count stay as they are.
    pub fn set_frozen(&mut self, frozen: impl Fn(&str) -> bool) {
        for (i, (name, _)) in self.params.iter().enumerate() {
            self.frozen[i] = frozen(name);
        }
    }

    /// Changes β₁ (for one-cycle momentum schedules).
    pub fn set_beta1(&mut self, beta1: f64) {
        self.cfg.beta1 = beta1;
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamConfig {
        &self.cfg
    }

    /// Changes the learning rate (for schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update from `grads`. Parameters without a gradient are left unchanged
    /// (their moments too), as PyTorch does for `grad is None`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let c = self.cfg;
        for (i, (_, p)) in self.params.iter().enumerate() {
            if self.frozen[i] {
                continue;
            }
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            self.steps[i] += 1;
            let t = self.steps[i] as i32;
            let lr = c.lr * self.scale[i];
            let bias1 = 1.0 - c.beta1.powi(t);
            let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
            let step_size = lr / bias1;
            let u = Update {
                kind: c.kind,
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                weight_decay: c.weight_decay,
                lr,
                bias2_sqrt,
                step_size,
            };
            let theta = p.as_tensor();
            if !update_in_place_cpu(&u, theta, g, &self.m[i], &self.v[i])? {
                let (theta, m, v) = update_ops(&u, theta, g, &self.m[i], &self.v[i])?;
                p.set(&theta)?;
                self.m[i] = m;
                self.v[i] = v;
            }
        }
        Ok(())
    }

    /// The optimizer state as named tensors (`m.<param>`, `v.<param>`, and each
    /// parameter's own step count `t.<param>` as a one-element u32 tensor) plus the
    /// optimizer's step count.
    ///
    /// The moments are copies: the optimizer updates its own in place, so a state
    /// taken now keeps its values through later steps.
    pub fn state(&self) -> Result<(HashMap<String, Tensor>, u64)> {
        let mut out = HashMap::new();
        for (i, (name, p)) in self.params.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].copy()?);
            out.insert(format!("v.{name}"), self.v[i].copy()?);
            let t = u32::try_from(self.steps[i]).unwrap_or(u32::MAX);
            out.insert(format!("t.{name}"), Tensor::new(&[t], p.device())?);
        }
        Ok((out, self.step))
    }

    /// Restores state saved by [`Adam::state`]. Every parameter's moments must be
    /// present with the parameter's shape.
    pub fn load_state(
        &mut self,
        tensors: &HashMap<String, Tensor>,
        step: u64,
        source: &std::path::Path,
    ) -> Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (slot, key) in [(0, format!("m.{name}")), (1, format!("v.{name}"))] {
                let t = tensors.get(&key).ok_or_else(|| TrainError::Checkpoint {
                    path: source.to_path_buf(),
                    reason: format!("optimizer state `{key}` is missing"),
                })?;
                if t.dims() != p.dims() {
                    return Err(TrainError::Checkpoint {
                        path: source.to_path_buf(),
                        reason: format!(
                            "optimizer state `{key}` has shape {:?}, parameter has {:?}",
                            t.dims(),
                            p.dims()
                        ),
                    });
                }
                // A copy of its own: the moments are updated in place.
                let t = t.to_device(p.device())?.to_dtype(p.dtype())?.copy()?;
                if slot == 0 {
                    self.m[i] = t;
                } else {
                    self.v[i] = t;
                }
            }
            // Checkpoints written before per-parameter counts existed: every
            // parameter was stepped with the optimizer.
            self.steps[i] = match tensors.get(&format!("t.{name}")) {
                Some(t) => {
                    let v = t
                        .flatten_all()
                        .and_then(|t| t.to_dtype(candle_core::DType::U32))
                        .and_then(|t| t.to_vec1::<u32>())
                        .map_err(|e| TrainError::Checkpoint {
                            path: source.to_path_buf(),
                            reason: format!("optimizer state `t.{name}`: {e}"),
                        })?;
                    match v.as_slice() {
                        [t] => u64::from(*t),
                        _ => {
                            return Err(TrainError::Checkpoint {
                                path: source.to_path_buf(),
                                reason: format!(
                                    "optimizer state `t.{name}` must hold one value, has {}",
                                    v.len()
                                ),
                            });
                        }
                    }
                }
                None => step,
            };
        }
        if let Some(extra) = tensors.keys().find(|k| {
            !k.strip_prefix("m.")
                .or_else(|| k.strip_prefix("v."))
                .or_else(|| k.strip_prefix("t."))
                .is_some_and(|n| self.params.iter().any(|(p, _)| p == n))
        }) {
            return Err(TrainError::Checkpoint {
                path: source.to_path_buf(),
                reason: format!("optimizer state `{extra}` belongs to no parameter of this model"),
            });
        }
        self.step = step;
        Ok(())
    }
}

/// The scalars of one parameter's update.
#[derive(Debug, Clone, Copy)]
struct Update {
    kind: OptimizerKind,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    lr: f64,
    bias2_sqrt: f64,
    step_size: f64,
}

/// One update as a chain of candle ops (any device and dtype): new `(θ, m, v)`.
fn update_ops(
    u: &Update,
    theta: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let mut g = g.clone();
    let mut theta = theta.clone();
    if u.weight_decay > 0.0 {
        match u.kind {
            OptimizerKind::Adam => g = (g + (&theta * u.weight_decay)?)?,
            OptimizerKind::AdamW => theta = (&theta * (1.0 - u.lr * u.weight_decay))?,
        }
    }
    // m ← m + (1 − β₁)(g − m)   (torch: exp_avg.lerp_(grad, 1 − β₁))
    let m = (m + ((&g - m)? * (1.0 - u.beta1))?)?;
    // v ← β₂ v + (1 − β₂) g²
    let v = ((v * u.beta2)? + (g.sqr()? * (1.0 - u.beta2))?)?;
    let denom = ((v.sqrt()? / u.bias2_sqrt)? + u.eps)?;
    let theta = (theta - ((&m / denom)? * u.step_size)?)?;
    Ok((theta, m, v))
}

/// [`update_ops`] in one pass over contiguous `f32` CPU tensors, in place: θ, m and v
/// are overwritten (about ten candle ops, each a full pass with its own output, become
/// one pass that allocates nothing), with the same `f32` arithmetic in the same order:
/// candle computes `t * s` and `t / s` for a scalar `s` as the affine map `t·s′ + 0`
/// with `s′ = s` or `1 / s` rounded to `f32`. `false` (nothing written) for other
/// devices, dtypes or layouts.
///
/// `m` and `v` must be the optimizer's own tensors, sharing storage with nothing else;
/// θ is written through candle's in-place op, which refuses a gradient that shares
/// θ's storage.
fn update_in_place_cpu(
    u: &Update,
    theta: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
) -> Result<bool> {
    use rayon::prelude::*;
    if [theta, g, m, v]
        .iter()
        .any(|t| !t.device().is_cpu() || t.dtype() != DType::F32 || t.dims() != theta.dims())
        || !g.is_contiguous()
    {
        return Ok(false);
    }
    let k = adam_step(u);
    let kernel = |th: &mut [f32], gr: &[f32], m0: &mut [f32], v0: &mut [f32]| {
        const CHUNK: usize = 1 << 14;
        th.par_chunks_mut(CHUNK)
            .zip(gr.par_chunks(CHUNK))
            .zip(m0.par_chunks_mut(CHUNK))
            .zip(v0.par_chunks_mut(CHUNK))
            .for_each(|(((th, gr), m0), v0)| k.apply(th, gr, m0, v0));
    };
    let done = with_f32_mut(m, |ms| {
        with_f32_mut(v, |vs| {
            let op = InPlace2(Cell::new(Some(|th: &mut [f32], gr: &[f32]| {
                kernel(th, gr, &mut *ms, &mut *vs)
            })));
            theta.inplace_op2(g, &op)?;
            // The closure is taken only when both θ and g were contiguous f32 storage.
            Ok(op.0.take().is_none())
        })
    })?;
    Ok(done == Some(Some(true)))
}

/// The `f32` constants of `u`'s update, rounded as the op chain's scalars are.
fn adam_step(u: &Update) -> AdamStep {
    let f = |x: f64| x as f32;
    let (l2, decoupled) = match u.kind {
        OptimizerKind::Adam => (u.weight_decay > 0.0, false),
        OptimizerKind::AdamW => (false, u.weight_decay > 0.0),
    };
    AdamStep {
        l2,
        decoupled,
        wd: f(u.weight_decay),
        decay: f(1.0 - u.lr * u.weight_decay),
        one_m_b1: f(1.0 - u.beta1),
        b2: f(u.beta2),
        one_m_b2: f(1.0 - u.beta2),
        inv_b2: f(1.0 / u.bias2_sqrt),
        eps: f(u.eps),
        step: f(u.step_size),
    }
}

/// Runs `f` on the contents of a contiguous `f32` CPU tensor as one mutable slice, in
/// place (candle's in-place op holds the storage's write lock meanwhile). `None`
/// without calling `f` for any other tensor.
fn with_f32_mut<R>(t: &Tensor, f: impl FnOnce(&mut [f32]) -> Result<R>) -> Result<Option<R>> {
    if !t.device().is_cpu() || t.dtype() != DType::F32 || !t.is_contiguous() {
        return Ok(None);
    }
    let op = InPlace1 {
        f: Cell::new(Some(f)),
        out: Cell::new(None),
    };
    t.inplace_op1(&op)?;
    op.out.into_inner().transpose()
}

/// [`with_f32_mut`]'s candle op: calls its closure once on the destination's slice.
struct InPlace1<F, R> {
    f: Cell<Option<F>>,
    out: Cell<Option<Result<R>>>,
}

impl<F: FnOnce(&mut [f32]) -> Result<R>, R> InplaceOp1 for InPlace1<F, R> {
    fn name(&self) -> &'static str {
        "cxr-in-place"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        if let (CpuStorage::F32(data), Some((a, b))) = (s, l.contiguous_offsets())
            && let Some(f) = self.f.take()
        {
            self.out.set(Some(f(&mut data[a..b])));
        }
        Ok(())
    }
}

/// The AdamW kernel's candle op on θ (destination) and its gradient (source): calls its
/// closure once when both are contiguous `f32`, and leaves it in place otherwise.
struct InPlace2<F>(Cell<Option<F>>);

impl<F: FnOnce(&mut [f32], &[f32])> InplaceOp2 for InPlace2<F> {
    fn name(&self) -> &'static str {
        "cxr-adam-step"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        if let (CpuStorage::F32(th), Some((a, b)), CpuStorage::F32(gr), Some((c, d))) =
            (s1, l1.contiguous_offsets(), s2, l2.contiguous_offsets())
            && b - a == d - c
            && let Some(f) = self.0.take()
        {
            f(&mut th[a..b], &gr[c..d]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    /// The one-pass CPU update is bit-identical to the candle-op chain it replaces, for
    /// each weight-decay variant, over several steps of random moments and gradients
    /// (tensors longer than one parallel chunk, odd lengths, zeros and negative zeros).
    #[test]
    fn fused_update_equals_the_op_chain_bit_for_bit() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let dev = Device::Cpu;
        for (kind, wd) in [
            (OptimizerKind::Adam, 0.0),
            (OptimizerKind::Adam, 0.01),
            (OptimizerKind::AdamW, 0.05),
        ] {
            for n in [1usize, 7, (1 << 14) + 3] {
                let mut rand = |scale: f32| -> Vec<f32> {
                    (0..n)
                        .map(|i| match i % 11 {
                            0 => 0.0,
                            1 => -0.0,
                            _ => (rng.random::<f32>() * 2.0 - 1.0) * scale,
                        })
                        .collect()
                };
                let mut theta = Tensor::from_vec(rand(1.0), n, &dev).unwrap();
                let mut m = Tensor::zeros(n, DType::F32, &dev).unwrap();
                let mut v = Tensor::zeros(n, DType::F32, &dev).unwrap();
                for t in 1..=4 {
                    let g = Tensor::from_vec(rand(3.0), n, &dev).unwrap();
                    let (beta1, beta2, lr) = (0.9, 0.999, 3e-3);
                    let u = Update {
                        kind,
                        beta1,
                        beta2,
                        eps: 1e-8,
                        weight_decay: wd,
                        lr,
                        bias2_sqrt: (1.0f64 - beta2.powi(t)).sqrt(),
                        step_size: lr / (1.0 - beta1.powi(t)),
                    };
                    let want = update_ops(&u, &theta, &g, &m, &v).unwrap();
                    let got = [&theta, &m, &v].map(|t| t.copy().unwrap());
                    assert!(update_in_place_cpu(&u, &got[0], &g, &got[1], &got[2]).unwrap());
                    for (name, a, b) in [
                        ("theta", &got[0], &want.0),
                        ("m", &got[1], &want.1),
                        ("v", &got[2], &want.2),
                    ] {
                        let (a, b) = (a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
                        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                            assert_eq!(
                                x.to_bits(),
                                y.to_bits(),
                                "{kind:?} wd {wd} n {n} step {t} {name}[{i}]: {x} vs {y}"
                            );
                        }
                    }
                    (theta, m, v) = want;
                }
            }
        }
    }

    /// Tensors the in-place path cannot take (another dtype, a non-contiguous layout)
    /// go through the op chain, and the in-place path leaves them as they were.
    #[test]
    fn fused_update_declines_other_dtypes_and_layouts() {
        let dev = Device::Cpu;
        let u = Update {
            kind: OptimizerKind::Adam,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            lr: 1e-3,
            bias2_sqrt: 1.0,
            step_size: 1e-3,
        };
        let t64 = Tensor::ones(4, DType::F64, &dev).unwrap();
        assert!(!update_in_place_cpu(&u, &t64, &t64, &t64, &t64).unwrap());
        let a = Tensor::ones((2, 3), DType::F32, &dev).unwrap();
        let at = a.t().unwrap();
        let b = Tensor::ones((3, 2), DType::F32, &dev).unwrap();
        let (m, v) = (b.copy().unwrap(), b.copy().unwrap());
        assert!(!update_in_place_cpu(&u, &b, &at, &m, &v).unwrap());
        // θ transposed: m and v are contiguous, θ is not
        let theta = Tensor::ones((3, 2), DType::F32, &dev)
            .unwrap()
            .t()
            .unwrap()
            .t()
            .unwrap();
        let g = Tensor::full(2f32, (3, 2), &dev).unwrap();
        let tt = Tensor::ones((2, 3), DType::F32, &dev).unwrap().t().unwrap();
        assert!(!update_in_place_cpu(&u, &tt, &g, &m, &v).unwrap());
        for t in [&tt, &m, &v] {
            assert!(
                t.flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
                    .iter()
                    .all(|&x| x == 1.0)
            );
        }
        // a gradient that is θ itself: candle refuses the aliasing, no deadlock
        assert!(update_in_place_cpu(&u, &theta, &theta, &m, &v).is_err());
    }

    /// A state taken before a step keeps its values: the moments it holds are copies.
    #[test]
    fn state_is_a_snapshot() {
        let p = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![("p".into(), p.clone())], AdamConfig::default()).unwrap();
        let step = |opt: &mut Adam| {
            let loss = p.as_tensor().sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        };
        step(&mut opt);
        let (state, _) = opt.state().unwrap();
        let m1: Vec<f32> = state["m.p"].to_vec1().unwrap();
        step(&mut opt);
        assert_eq!(state["m.p"].to_vec1::<f32>().unwrap(), m1);
        let (later, _) = opt.state().unwrap();
        assert_ne!(later["m.p"].to_vec1::<f32>().unwrap(), m1);
    }

    /// Two steps on f(θ) = Σθ² against the update rule worked out by hand.
    #[test]
    fn two_steps_match_hand_computation() {
        let p = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![("p".into(), p.clone())], AdamConfig::default()).unwrap();
        let mut theta = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=2 {
            let loss = p.as_tensor().sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
            for i in 0..2 {
                let g = 2.0 * theta[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mh = m[i] / (1.0 - 0.9f64.powi(t));
                let vh = v[i] / (1.0 - 0.999f64.powi(t));
                theta[i] -= 1e-3 * mh / (vh.sqrt() + 1e-8);
            }
        }
        let got: Vec<f32> = p.as_tensor().to_vec1().unwrap();
        for i in 0..2 {
            assert!(
                (got[i] as f64 - theta[i]).abs() < 1e-6,
                "{got:?} vs {theta:?}"
            );
        }
    }

    #[test]
    fn adamw_decays_and_state_round_trips() {
        let p = Var::new(&[3.0f32], &Device::Cpu).unwrap();
        let cfg = AdamConfig {
            kind: OptimizerKind::AdamW,
            weight_decay: 0.5,
            lr: 0.1,
            ..AdamConfig::default()
        };
        let mut opt = Adam::new(vec![("p".into(), p.clone())], cfg).unwrap();
        // zero gradient: only the decay acts (m = v = 0 → update 0)
        let zero = p.as_tensor().zeros_like().unwrap();
        let loss = p.as_tensor().mul(&zero).unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let got: Vec<f32> = p.as_tensor().to_vec1().unwrap();
        assert!((got[0] - 3.0 * (1.0 - 0.05)).abs() < 1e-6, "{got:?}");
        let (state, step) = opt.state().unwrap();
        let mut other = Adam::new(vec![("p".into(), p.clone())], cfg).unwrap();
        other
            .load_state(&state, step, std::path::Path::new("x"))
            .unwrap();
        assert_eq!(other.steps(), 1);
        assert!(
            other
                .load_state(&HashMap::new(), 1, std::path::Path::new("ckpt"))
                .is_err()
        );
    }

    /// A frozen parameter is left alone and starts its own bias correction when
    /// unfrozen; a scale of 0.5 halves the first step (Adam's first step is lr·sign(g)).
    #[test]
    fn frozen_and_scaled_parameters() {
        let a = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let b = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut opt = Adam::new(
            vec![("a".into(), a.clone()), ("b".into(), b.clone())],
            AdamConfig::default(),
        )
        .unwrap();
        opt.set_frozen(|n| n == "a");
        opt.set_lr_scales(|n| if n == "b" { 0.5 } else { 1.0 });
        let loss = |p: &Var| p.as_tensor().sqr().unwrap().sum_all().unwrap();
        let both = (loss(&a) + loss(&b)).unwrap();
        opt.step(&both.backward().unwrap()).unwrap();
        let av: Vec<f32> = a.as_tensor().to_vec1().unwrap();
        let bv: Vec<f32> = b.as_tensor().to_vec1().unwrap();
        assert_eq!(av, vec![1.0]);
        assert!((bv[0] - (1.0 - 0.5e-3)).abs() < 1e-7, "{bv:?}");
        // unfrozen now: `a`'s first step is again a full lr·sign(g)
        opt.set_frozen(|_| false);
        let both = (loss(&a) + loss(&b)).unwrap();
        opt.step(&both.backward().unwrap()).unwrap();
        let av: Vec<f32> = a.as_tensor().to_vec1().unwrap();
        assert!((av[0] - (1.0 - 1e-3)).abs() < 1e-7, "{av:?}");
        // per-parameter counts survive a save and load
        let (state, step) = opt.state().unwrap();
        let mut other = Adam::new(
            vec![("a".into(), a.clone()), ("b".into(), b.clone())],
            AdamConfig::default(),
        )
        .unwrap();
        other
            .load_state(&state, step, std::path::Path::new("x"))
            .unwrap();
        assert_eq!(other.steps, vec![1, 2]);
    }

    #[test]
    fn rejects_bad_lr() {
        let p = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        for lr in [0.0, -1.0, f64::NAN] {
            let cfg = AdamConfig {
                lr,
                ..AdamConfig::default()
            };
            assert!(matches!(
                Adam::new(vec![("p".into(), p.clone())], cfg),
                Err(TrainError::Config { .. })
            ));
        }
    }
}
