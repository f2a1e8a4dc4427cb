//! An exponential moving average of a model's weights ([`TrainConfig::ema`]).
//!
//! The average covers every variable of the model, BatchNorm's running statistics
//! included (as timm's `ModelEmaV2` does), so that the averaged network is complete
//! and needs no statistics recomputed. The decay warms up as TensorFlow's
//! `ExponentialMovingAverage(num_updates=…)` does: early in training the average
//! follows the weights closely instead of remembering the random start.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Tensor, Var};

use crate::{Result, TrainConfig, TrainError};

/// The averaged weights, by variable name.
pub(crate) struct Ema {
    decay: f64,
    vars: Vec<(String, Var)>,
    shadow: HashMap<String, Tensor>,
}

impl Ema {
    /// The average of `vars` for `cfg` (none when [`TrainConfig::ema`] is off), starting
    /// at their current values.
    pub(crate) fn new(cfg: &TrainConfig, vars: Vec<(String, Var)>) -> Result<Option<Self>> {
        let Some(decay) = cfg.ema else {
            return Ok(None);
        };
        let shadow = vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?)))
            .collect::<Result<_>>()?;
        Ok(Some(Self {
            decay,
            vars,
            shadow,
        }))
    }

    /// The decay used by update `n` (0-based): `min(decay, (1 + n) / (10 + n))`.
    pub(crate) fn decay_at(&self, n: u64) -> f64 {
        self.decay.min((1.0 + n as f64) / (10.0 + n as f64))
    }

    /// Moves the average towards the variables' current values, as update `n`
    /// (0-based). Stays on the variables' device: no host synchronisation.
    pub(crate) fn update(&mut self, n: u64) -> Result<()> {
        let d = self.decay_at(n);
        for (name, var) in &self.vars {
            let old = &self.shadow[name];
            // Detached: an op on a variable records its inputs for backprop, which
            // would chain every earlier average to the new one and keep them all alive.
            let w = var.as_tensor().detach();
            let new = (old.affine(d, 0.0)? + w.affine(1.0 - d, 0.0)?)?;
            self.shadow.insert(name.clone(), new);
        }
        Ok(())
    }

    /// The averaged weights.
    pub(crate) fn weights(&self) -> &HashMap<String, Tensor> {
        &self.shadow
    }

    /// Replaces the average by `saved` (a checkpoint's), which must hold every variable
    /// with its shape; `source` names the file in errors.
    pub(crate) fn restore(&mut self, saved: &HashMap<String, Tensor>, source: &Path) -> Result<()> {
        let bad = |reason: String| TrainError::Checkpoint {
            path: source.to_path_buf(),
            reason,
        };
        for (name, var) in &self.vars {
            let t = saved
                .get(name)
                .ok_or_else(|| bad(format!("no averaged weight `ema.{name}`")))?;
            if t.dims() != var.dims() {
                return Err(bad(format!(
                    "averaged weight `ema.{name}` has shape {:?}, the model's is {:?}",
                    t.dims(),
                    var.dims()
                )));
            }
            let t = t.to_device(var.device())?.to_dtype(var.dtype())?;
            self.shadow.insert(name.clone(), t);
        }
        if let Some(extra) = saved.keys().find(|k| !self.shadow.contains_key(*k)) {
            return Err(bad(format!(
                "averaged weight `ema.{extra}` belongs to no variable of the model"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    fn var(values: &[f32]) -> Var {
        Var::from_tensor(&Tensor::new(values, &Device::Cpu).unwrap()).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.to_vec1::<f32>().unwrap()
    }

    /// `got` equals `want` within a relative 1e-6 (f32 products of the decays).
    fn assert_close(got: &Tensor, want: &[f32]) {
        let got = values(got);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{got:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn off_without_a_decay() {
        let cfg = TrainConfig::default();
        assert!(
            Ema::new(&cfg, vec![("w".into(), var(&[1.0]))])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_average_follows_tensorflow_arithmetic() {
        let cfg = TrainConfig {
            ema: Some(0.5),
            ..TrainConfig::default()
        };
        let w = var(&[0.0, 4.0]);
        let mut ema = Ema::new(&cfg, vec![("w".into(), w.clone())])
            .unwrap()
            .unwrap();
        // Update 0 decays by 1/10 (warm-up), update 9 by 10/19 → the configured 0.5.
        assert_eq!(ema.decay_at(0), 0.1);
        assert_eq!(ema.decay_at(9), 0.5);
        assert!((ema.decay_at(3) - 4.0 / 13.0).abs() < 1e-15);
        w.set(&Tensor::new(&[10.0f32, 4.0], &Device::Cpu).unwrap())
            .unwrap();
        ema.update(0).unwrap();
        // 0.1 · 0 + 0.9 · 10 = 9; a weight that does not move stays.
        assert_close(&ema.weights()["w"], &[9.0, 4.0]);
        w.set(&Tensor::new(&[1.0f32, 4.0], &Device::Cpu).unwrap())
            .unwrap();
        ema.update(100).unwrap();
        assert_close(&ema.weights()["w"], &[5.0, 4.0]);
        // The average is a copy: the variable keeps its own value.
        assert_eq!(values(w.as_tensor()), [1.0, 4.0]);
        // …and records no backprop graph, which would hold every earlier average.
        assert!(!ema.weights()["w"].track_op());
    }

    #[test]
    fn restoring_checks_names_and_shapes() {
        let cfg = TrainConfig {
            ema: Some(0.9),
            ..TrainConfig::default()
        };
        let mut ema = Ema::new(&cfg, vec![("w".into(), var(&[1.0, 2.0]))])
            .unwrap()
            .unwrap();
        let path = Path::new("run/checkpoint.safetensors");
        let t = |v: &[f32]| Tensor::new(v, &Device::Cpu).unwrap();
        let err = |saved: HashMap<String, Tensor>| {
            let mut e = Ema::new(&cfg, vec![("w".into(), var(&[1.0, 2.0]))])
                .unwrap()
                .unwrap();
            e.restore(&saved, path).unwrap_err().to_string()
        };
        let missing = err(HashMap::new());
        assert!(missing.contains("checkpoint.safetensors") && missing.contains("ema.w"));
        let shape = err(HashMap::from([("w".to_string(), t(&[1.0]))]));
        assert!(shape.contains("shape"), "{shape}");
        let extra = err(HashMap::from([
            ("w".to_string(), t(&[1.0, 2.0])),
            ("b".to_string(), t(&[1.0])),
        ]));
        assert!(extra.contains("ema.b"), "{extra}");
        let saved = HashMap::from([(
            "w".to_string(),
            t(&[3.0, 5.0]).to_dtype(DType::F64).unwrap(),
        )]);
        ema.restore(&saved, path).unwrap();
        assert_eq!(values(&ema.weights()["w"]), [3.0, 5.0]);
    }
}
