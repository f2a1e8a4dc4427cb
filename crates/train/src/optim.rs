use std::collections::HashMap;

use candle_core::{Tensor, Var, backprop::GradStore};
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

/// Which Adam variant to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// `torch.optim.Adam`: weight decay (if any) is added to the gradient (L2).
    Adam,
    /// `torch.optim.AdamW`: decoupled weight decay, `θ ← θ(1 − lr·wd)` before the step.
    AdamW,
}

/// Hyper-parameters of [`Adam`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Variant: L2 (`adam`) or decoupled (`adamw`) weight decay.
    pub kind: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// β₁, the first-moment decay.
    pub beta1: f64,
    /// β₂, the second-moment decay.
    pub beta2: f64,
    /// ε added to the denominator.
    pub eps: f64,
    /// Weight decay (0 disables it).
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    /// PyTorch's `Adam` defaults with lr 1e-3: β = (0.9, 0.999), ε = 1e-8, no decay.
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

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
            let mut g = g.clone();
            let mut theta = p.as_tensor().clone();
            if c.weight_decay > 0.0 {
                match c.kind {
                    OptimizerKind::Adam => g = (g + (&theta * c.weight_decay)?)?,
                    OptimizerKind::AdamW => theta = (&theta * (1.0 - lr * c.weight_decay))?,
                }
            }
            // m ← m + (1 − β₁)(g − m)   (torch: exp_avg.lerp_(grad, 1 − β₁))
            let m = (&self.m[i] + ((&g - &self.m[i])? * (1.0 - c.beta1))?)?;
            // v ← β₂ v + (1 − β₂) g²
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((v.sqrt()? / bias2_sqrt)? + c.eps)?;
            let theta = (theta - ((&m / denom)? * step_size)?)?;
            p.set(&theta)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// The optimizer state as named tensors (`m.<param>`, `v.<param>`, and each
    /// parameter's own step count `t.<param>` as a one-element u32 tensor) plus the
    /// optimizer's step count.
    pub fn state(&self) -> (HashMap<String, Tensor>, u64) {
        let mut out = HashMap::new();
        for (i, (name, p)) in self.params.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
            let t = u32::try_from(self.steps[i]).unwrap_or(u32::MAX);
            if let Ok(t) = Tensor::new(&[t], p.device()) {
                out.insert(format!("t.{name}"), t);
            }
        }
        (out, self.step)
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
                let t = t.to_device(p.device())?.to_dtype(p.dtype())?;
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

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

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
        let (state, step) = opt.state();
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
        let (state, step) = opt.state();
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
