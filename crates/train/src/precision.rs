//! Mixed precision: the forward pass in bf16 or f16 over f32 master weights.
//!
//! With [`Precision::Bf16`] or [`Precision::F16`] each forward pass casts the f32
//! parameters and the input batch to the half type (the casts are part of the
//! autograd graph, so gradients arrive at the f32 variables as f32), runs the network
//! in that type, and casts the logits back to f32 before the loss. The optimizer and
//! its moments stay in f32. f16 adds dynamic loss scaling ([`LossScaler`], PyTorch's
//! `GradScaler` defaults) because its range is too small for raw gradients; bf16 has
//! f32's range and needs none.
//!
//! ResNet18's BatchNorm stays f32 under autocast ([`Autocast::keeping_f32`]): its
//! weights, biases and running statistics are handed over uncast, and it normalises a
//! half-precision input in f32 and returns the input's type.
//!
//! [`Precision::F32`] lets CUDA's f32 matrix multiplications round their inputs to
//! TF32 (Ampere and newer; PyTorch's default for cuDNN convolutions);
//! [`Precision::F32Strict`] turns that off ([`apply_matmul_precision`]).
//!
//! Half precision is accepted on CUDA and Metal only: candle's CPU kernels for bf16/f16
//! are slower than its f32 ones, so on the CPU it would cost time and accuracy for
//! nothing ([`check_precision_device`] says so).

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
pub use cxr_runfolder::Precision;

use crate::{Result, TrainError};

/// The dtype the forward pass computes in at `precision`.
pub fn compute_dtype(precision: Precision) -> DType {
    match precision {
        Precision::F32 | Precision::F32Strict => DType::F32,
        Precision::Bf16 => DType::BF16,
        Precision::F16 => DType::F16,
    }
}

/// Sets candle's process-wide CUDA matmul mode for `precision` when `device` is a CUDA
/// GPU: TF32 inputs for [`Precision::F32`], full f32 for [`Precision::F32Strict`] (the
/// half types are not affected). Returns whether TF32 is now on; always `false` off
/// CUDA, where neither precision changes anything.
pub fn apply_matmul_precision(precision: Precision, device: &Device) -> bool {
    if !device.is_cuda() {
        return false;
    }
    let tf32 = precision == Precision::F32;
    candle_core::cuda::set_gemm_reduced_precision_f32(tf32);
    tf32
}

/// Refuses half precision on the CPU, with the reason.
pub fn check_precision_device(precision: Precision, device: &Device) -> Result<()> {
    if precision.is_half() && device.is_cpu() {
        return Err(TrainError::Config {
            field: "precision".into(),
            reason: format!(
                "{} autocast needs a CUDA or Metal device (--device cuda|metal|auto on a GPU \
                 build); on the CPU candle's half-precision kernels are slower than f32, \
                 so use --precision f32",
                precision.as_str()
            ),
        });
    }
    Ok(())
}

/// Casts f32 master parameters to a half type for one forward pass.
///
/// Build the network from [`Autocast::var_builder`] for each step (the cast is cheap
/// next to the forward pass, and a fresh one sees the latest weights), feed it
/// [`Autocast::input`], and pass its output through [`Autocast::output`].
#[derive(Debug, Clone)]
pub struct Autocast {
    dtype: DType,
    params: Vec<(String, Var)>,
    kept: Vec<(String, Var)>,
}

impl Autocast {
    /// `None` for the f32 precisions (no casting), otherwise an autocast over `params`.
    pub fn new(precision: Precision, params: Vec<(String, Var)>) -> Option<Self> {
        precision.is_half().then(|| Self {
            dtype: compute_dtype(precision),
            params,
            kept: Vec::new(),
        })
    }

    /// Hands `vars` to the network uncast, as the f32 variables themselves: what must
    /// stay f32 under autocast — BatchNorm's weights, biases and running statistics
    /// (the statistics are updated in place, which a cast copy would lose; PyTorch's
    /// autocast also normalises with f32 statistics). A name in both lists is kept.
    #[must_use]
    pub fn keeping_f32(mut self, vars: Vec<(String, Var)>) -> Self {
        self.kept = vars;
        self
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// A `VarBuilder` holding half-precision casts of the master parameters; the casts
    /// stay in the autograd graph, so `backward` yields f32 gradients for the masters.
    pub fn var_builder(&self, device: &Device) -> Result<VarBuilder<'static>> {
        let mut map = HashMap::with_capacity(self.params.len() + self.kept.len());
        for (name, var) in &self.params {
            map.insert(name.clone(), var.as_tensor().to_dtype(self.dtype)?);
        }
        for (name, var) in &self.kept {
            map.insert(name.clone(), var.as_tensor().clone());
        }
        Ok(VarBuilder::from_tensors(map, self.dtype, device))
    }

    /// The input batch in the compute dtype.
    pub fn input(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.to_dtype(self.dtype)?)
    }

    /// The network's output back in f32 (the loss is computed in f32).
    pub fn output(&self, y: &Tensor) -> Result<Tensor> {
        Ok(y.to_dtype(DType::F32)?)
    }
}

/// Dynamic loss scaling for f16 training, with PyTorch `GradScaler`'s defaults: start
/// at 2¹⁶, halve and skip the step when a gradient overflows, double after 2000
/// consecutive good steps. Disabled (scale 1, never skips) for f32 and bf16.
#[derive(Debug, Clone)]
pub struct LossScaler {
    enabled: bool,
    scale: f64,
    good_steps: u32,
}

impl LossScaler {
    /// Initial scale (2¹⁶).
    pub const INIT_SCALE: f64 = 65536.0;
    /// Good steps before the scale doubles.
    pub const GROWTH_INTERVAL: u32 = 2000;

    /// A scaler that is active only for [`Precision::F16`].
    pub fn new(precision: Precision) -> Self {
        let enabled = precision == Precision::F16;
        Self {
            enabled,
            scale: if enabled { Self::INIT_SCALE } else { 1.0 },
            good_steps: 0,
        }
    }

    /// The current scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// `loss × scale` (the loss itself when disabled).
    pub fn scale_loss(&self, loss: &Tensor) -> Result<Tensor> {
        if self.enabled {
            Ok((loss * self.scale)?)
        } else {
            Ok(loss.clone())
        }
    }

    /// Divides the gradients of `params` by the scale, in `grads`. Returns `false` when
    /// one of them is not finite: the caller must skip the optimizer step (the scale
    /// has been halved). Always `true` when disabled.
    pub fn unscale(&mut self, grads: &mut GradStore, params: &[(String, Var)]) -> Result<bool> {
        if !self.enabled {
            return Ok(true);
        }
        let inv = 1.0 / self.scale;
        let mut unscaled = Vec::with_capacity(params.len());
        for (_, var) in params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = (g.to_dtype(DType::F32)? * inv)?;
            unscaled.push((var.as_tensor().clone(), g));
        }
        // One device-to-host copy for all the gradients: the skip is decided on the host.
        if !crate::guard::all_finite(unscaled.iter().map(|(_, g)| g))? {
            self.scale = (self.scale * 0.5).max(1.0);
            self.good_steps = 0;
            return Ok(false);
        }
        for (t, g) in unscaled {
            grads.insert(&t, g);
        }
        self.good_steps += 1;
        if self.good_steps >= Self::GROWTH_INTERVAL {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_rejects_half_on_cpu() {
        assert_eq!(Precision::parse("BF16").unwrap(), Precision::Bf16);
        assert_eq!(Precision::parse("fp16").unwrap(), Precision::F16);
        assert_eq!(Precision::parse("f32").unwrap(), Precision::F32);
        assert_eq!(
            Precision::parse("F32-strict").unwrap(),
            Precision::F32Strict
        );
        assert!(!Precision::F32Strict.is_half() && Precision::Bf16.is_half());
        assert!(matches!(
            Precision::parse("int8"),
            Err(cxr_runfolder::RunFolderError::Setting { field, .. }) if field == "precision"
        ));
        check_precision_device(Precision::F32, &Device::Cpu).unwrap();
        check_precision_device(Precision::F32Strict, &Device::Cpu).unwrap();
        for p in [Precision::Bf16, Precision::F16] {
            let e = check_precision_device(p, &Device::Cpu)
                .unwrap_err()
                .to_string();
            assert!(e.contains("CUDA or Metal") && e.contains(p.as_str()), "{e}");
        }
        assert!(Autocast::new(Precision::F32, Vec::new()).is_none());
        assert!(Autocast::new(Precision::F32Strict, Vec::new()).is_none());
    }

    /// The autocast graph must deliver f32 gradients to the f32 masters, equal to the
    /// f32 gradients within the half type's rounding. Checked on the CPU, whose bf16
    /// and f16 kernels compute the same arithmetic as the GPU ones (slowly).
    /// Tolerance: 2⁻⁷ relative for bf16 (8-bit mantissa, one rounding of each operand
    /// and of the result), 2⁻¹⁰ for f16, of max |grad|.
    #[test]
    fn autocast_gradients_reach_f32_masters() {
        let dev = Device::Cpu;
        let w = Var::from_vec(
            (0..12).map(|i| (i as f32 - 5.5) / 7.0).collect::<Vec<_>>(),
            (3, 4),
            &dev,
        )
        .unwrap();
        let x = Tensor::from_vec(
            (0..8).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>(),
            (2, 4),
            &dev,
        )
        .unwrap();
        let params = vec![("w".to_string(), w.clone())];
        let reference = x.matmul(&w.as_tensor().t().unwrap()).unwrap();
        let ref_grad = reference
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let ref_grad = ref_grad.get(w.as_tensor()).unwrap().clone();
        let scale = ref_grad
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();

        for (p, tol) in [
            (Precision::Bf16, 1.0 / 128.0),
            (Precision::F16, 1.0 / 1024.0),
        ] {
            let ac = Autocast::new(p, params.clone()).unwrap();
            let vb = ac.var_builder(&dev).unwrap();
            let wh = vb.get((3, 4), "w").unwrap();
            assert_eq!(wh.dtype(), compute_dtype(p));
            let y = ac
                .output(&ac.input(&x).unwrap().matmul(&wh.t().unwrap()).unwrap())
                .unwrap();
            assert_eq!(y.dtype(), DType::F32);
            let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let g = grads
                .get(w.as_tensor())
                .expect("gradient reaches the f32 master");
            assert_eq!(g.dtype(), DType::F32);
            let err = (g - &ref_grad)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                / scale;
            assert!(err <= tol * 4.0, "{}: relative error {err}", p.as_str());
        }
    }

    #[test]
    fn loss_scaler_unscales_skips_overflow_and_grows() {
        let dev = Device::Cpu;
        let w = Var::from_vec(vec![1.0f32, 2.0], 2, &dev).unwrap();
        let params = vec![("w".to_string(), w.clone())];

        let off = LossScaler::new(Precision::Bf16);
        assert_eq!(off.scale(), 1.0);

        let mut s = LossScaler::new(Precision::F16);
        assert_eq!(s.scale(), LossScaler::INIT_SCALE);
        let loss = (w.as_tensor() * 3.0).unwrap().sum_all().unwrap();
        let mut grads = s.scale_loss(&loss).unwrap().backward().unwrap();
        assert!(s.unscale(&mut grads, &params).unwrap());
        let g: Vec<f32> = grads.get(w.as_tensor()).unwrap().to_vec1().unwrap();
        assert_eq!(g, vec![3.0, 3.0]);

        let mut bad = GradStore::default();
        bad.insert(
            w.as_tensor(),
            Tensor::new(&[f32::INFINITY, 0.0], &dev).unwrap(),
        );
        assert!(!s.unscale(&mut bad, &params).unwrap());
        assert_eq!(s.scale(), LossScaler::INIT_SCALE / 2.0);

        for _ in 0..LossScaler::GROWTH_INTERVAL {
            let mut grads = s.scale_loss(&loss).unwrap().backward().unwrap();
            assert!(s.unscale(&mut grads, &params).unwrap());
        }
        assert_eq!(s.scale(), LossScaler::INIT_SCALE);
    }
}
