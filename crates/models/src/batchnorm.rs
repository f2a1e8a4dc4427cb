use candle_core::{DType, Module, Tensor, Var};
use candle_nn::{ModuleT, VarBuilder};

use crate::Result;
use cxr_kernels::{
    Act, Norm, PoolSpec, batch_norm_cpu, bn_fast_path_applies, conv_batch_norm_cpu,
    cpu_fast_norm_enabled,
};

/// PyTorch's default `BatchNorm2d` momentum: `running = 0.9·running + 0.1·batch`.
pub const BN_MOMENTUM: f64 = 0.1;
/// PyTorch's default `BatchNorm2d` epsilon.
pub const BN_EPS: f64 = 1e-5;

/// Names of a BatchNorm's running statistics under its prefix: buffers, not parameters.
pub const BN_BUFFERS: [&str; 2] = ["running_mean", "running_var"];
/// Names of a BatchNorm's trainable parameters under its prefix.
pub const BN_PARAMS: [&str; 2] = ["weight", "bias"];

/// 2-D batch normalisation over `[N, C, H, W]` with PyTorch's train/eval semantics and
/// weight names (`weight`, `bias`, `running_mean`, `running_var`).
///
/// - Training (`forward_t(x, true)`): normalises with the batch's mean and biased
///   variance over `N, H, W`, and updates the running statistics in place with momentum
///   [`BN_MOMENTUM`] and the *unbiased* batch variance, as `nn.BatchNorm2d` does.
/// - Evaluation (`forward_t(x, false)`): normalises with the running statistics.
///
/// `weight` and `bias` are trainable. The running statistics are held as candle
/// [`Var`]s only so they can be updated in place and saved with the weights: when the
/// layer is built from a [`VarMap`](candle_nn::VarMap) they live in it (and are saved
/// and restored with it), so an optimizer must skip them — see
/// [`ResNet18::tensor_role`](crate::ResNet18::tensor_role) and [`BN_BUFFERS`]. They are
/// detached in every forward pass, so no gradient ever reaches them.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm2d {
    /// Builds the layer from `vb`, which must hold `weight`, `bias`, `running_mean`
    /// and `running_var` (all `[channels]`). Running statistics that come from a
    /// `VarMap` are shared with it (updates are visible there); from any other backend
    /// they are copied and updated in the layer only.
    ///
    /// All four are taken in f32 whatever `vb`'s dtype: under mixed precision the layer
    /// normalises in f32 (see [`forward_path`](Self::forward_path)).
    pub fn new(vb: VarBuilder<'_>, channels: usize) -> Result<Self> {
        let get =
            |name: &str| vb.get_with_hints_dtype(channels, name, Default::default(), DType::F32);
        let weight = get("weight")?;
        let bias = get("bias")?;
        let running_mean = Var::from_tensor(&get("running_mean")?)?;
        let running_var = Var::from_tensor(&get("running_var")?)?;
        Ok(Self {
            weight,
            bias,
            running_mean,
            running_var,
            eps: BN_EPS,
            momentum: BN_MOMENTUM,
        })
    }

    /// The running mean `[C]` (a detached copy of its current value).
    pub fn running_mean(&self) -> Tensor {
        self.running_mean.as_tensor().detach()
    }

    /// The running variance `[C]` (a detached copy of its current value).
    pub fn running_var(&self) -> Tensor {
        self.running_var.as_tensor().detach()
    }

    fn check(&self, x: &Tensor) -> candle_core::Result<(usize, usize, usize, usize)> {
        let c = self.weight.dims1()?;
        match x.dims4() {
            Ok(d) if d.1 == c => Ok(d),
            _ => candle_core::bail!(
                "BatchNorm2d({c}) expects input [N, {c}, H, W], got {:?}",
                x.dims()
            ),
        }
    }

    /// `relu(bn(x))` in training or evaluation mode. On the CPU fast path (see
    /// [`crate::set_cpu_fast_path`]) the normalisation and the ReLU are one op each
    /// way; elsewhere [`ModuleT::forward_t`] followed by a ReLU.
    pub fn forward_relu_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.forward_path(x, None, true, train, cpu_fast_norm_enabled())
    }

    /// `relu(bn(x) + residual)` (the end of a ResNet `BasicBlock`), `residual` of
    /// `x`'s shape. On the CPU fast path one op each way; elsewhere
    /// [`ModuleT::forward_t`], an addition and a ReLU.
    pub fn forward_add_relu_t(
        &self,
        x: &Tensor,
        residual: &Tensor,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        self.forward_path(x, Some(residual), true, train, cpu_fast_norm_enabled())
    }

    /// `bn(x)` (+ `residual`) (→ ReLU), through the fused CPU op when `fast` is set and
    /// it applies (`f32` on the CPU), else through candle's tensor ops; for tests and
    /// benchmarks that compare the two paths without the process-wide switch. A
    /// residual needs `relu`.
    #[doc(hidden)]
    pub fn forward_path(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        relu: bool,
        train: bool,
        fast: bool,
    ) -> candle_core::Result<Tensor> {
        let act = match (residual, relu) {
            (None, false) => Act::None,
            (None, true) => Act::Relu,
            (Some(_), true) => Act::AddRelu,
            (Some(_), false) => candle_core::bail!("BatchNorm2d: a residual add needs the ReLU"),
        };
        let (_, c, _, _) = self.check(x)?;
        if let Some(r) = residual
            && r.dims() != x.dims()
        {
            candle_core::bail!(
                "BatchNorm2d: residual {:?} does not match input {:?}",
                r.dims(),
                x.dims()
            );
        }
        let params = [&self.weight, &self.bias];
        let fast = fast
            && bn_fast_path_applies(x, &params)
            && residual.is_none_or(|r| bn_fast_path_applies(r, &[]));
        if !fast {
            // A half-precision input (autocast) is normalised in f32, with f32
            // statistics, and handed on in its own type.
            let dtype = x.dtype();
            let x = x.to_dtype(DType::F32)?;
            let y = if train {
                self.forward_train(&x)?
            } else {
                self.forward_eval(&x)?
            };
            let y = match residual {
                Some(r) => (y + r.to_dtype(DType::F32)?)?.relu()?,
                None if relu => y.relu()?,
                None => y,
            };
            return y.to_dtype(dtype);
        }
        if train {
            self.check_train(x)?;
        }
        let eval_norm = self.eval_norm(train)?;
        let gb = Tensor::cat(&[&self.weight, &self.bias], 0)?;
        let (y, stats) = batch_norm_cpu(x, &gb, residual, train, self.eps, act, eval_norm)?;
        self.update_running(stats, x.elem_count() / c)?;
        Ok(y)
    }

    /// `act(bn(conv(x)))`, `act` the ReLU when `relu`: on the CPU fast path, for a
    /// bias-free convolution, one op each way (the convolution's output is no separate
    /// autograd node, so candle's backprop neither zero-fills nor accumulates a gradient
    /// for it); elsewhere the convolution's forward followed by
    /// [`forward_relu_t`](Self::forward_relu_t) or [`ModuleT::forward_t`]. The results
    /// are the same either way on the fast path, bit for bit.
    pub fn forward_conv_t(
        &self,
        conv: &crate::Conv2d,
        x: &Tensor,
        relu: bool,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        if let Some(y) = self.fused_conv(conv, x, relu, None, train)? {
            return Ok(y);
        }
        let fast_norm = cpu_fast_norm_enabled();
        self.forward_path(&conv.forward(x)?, None, relu, train, fast_norm)
    }

    /// ResNet's stem after its convolution: `max_pool2d_3x3_s2(relu(bn(conv(x))))`, on the
    /// fast path one op each way (neither the convolution's nor the BatchNorm's output is
    /// an autograd node), elsewhere [`forward_conv_t`](Self::forward_conv_t) followed by
    /// [`crate::max_pool2d_3x3_s2`]; bit for bit the same on the fast path.
    pub(crate) fn forward_conv_pool_t(
        &self,
        conv: &crate::Conv2d,
        x: &Tensor,
        train: bool,
    ) -> crate::Result<Tensor> {
        let pool = PoolSpec {
            k: 3,
            stride: 2,
            pad: 1,
            relu: false,
        };
        if let Some(y) = self.fused_conv(conv, x, true, Some(pool), train)? {
            return Ok(y);
        }
        crate::max_pool2d_3x3_s2(&self.forward_conv_t(conv, x, true, train)?)
    }

    /// The fused convolution + BatchNorm (+ ReLU) (+ `pool`) op, or `None` where it does
    /// not apply (off the fast path, a bias, a shape the two-op path rejects).
    fn fused_conv(
        &self,
        conv: &crate::Conv2d,
        x: &Tensor,
        relu: bool,
        pool: Option<PoolSpec>,
        train: bool,
    ) -> candle_core::Result<Option<Tensor>> {
        let (Some(kind), Some((n, c, h, w))) = (conv.fused_kind(x), conv.output_dims(x)) else {
            return Ok(None);
        };
        if !cpu_fast_norm_enabled()
            || !bn_fast_path_applies(x, &[&self.weight, &self.bias])
            || c != self.weight.dims1()?
            || (train && n * h * w < 2)
        {
            return Ok(None);
        }
        let act = if relu { Act::Relu } else { Act::None };
        let eval_norm = self.eval_norm(train)?;
        let gb = Tensor::cat(&[&self.weight, &self.bias], 0)?;
        let (y, stats) = conv_batch_norm_cpu(
            x,
            conv.weight(),
            &gb,
            kind,
            train,
            self.eps,
            act,
            eval_norm,
            pool,
        )?;
        self.update_running(stats, n * h * w)?;
        Ok(Some(y))
    }

    /// The running statistics as the fused op's normalisation constants in evaluation
    /// (`None` in training: the op computes the batch's).
    fn eval_norm(&self, train: bool) -> candle_core::Result<Option<Norm>> {
        if train {
            return Ok(None);
        }
        let rm = self.running_mean.as_tensor().to_vec1::<f32>()?;
        let rv = self.running_var.as_tensor().to_vec1::<f32>()?;
        Ok(Some(Norm {
            mean: rm,
            invstd: rv
                .iter()
                .map(|&v| (1.0 / (v as f64 + self.eps).sqrt()) as f32)
                .collect(),
            batch: Vec::new(),
        }))
    }

    /// Updates the running statistics from a fused op's batch statistics (training),
    /// as the tensor path does: momentum, unbiased variance over the `per_channel` values
    /// each channel had.
    fn update_running(&self, stats: Option<Norm>, per_channel: usize) -> candle_core::Result<()> {
        let Some(stats) = stats else {
            return Ok(());
        };
        let c = self.weight.dims1()?;
        let m = per_channel as f64;
        let keep = 1.0 - self.momentum;
        let rm = self.running_mean.as_tensor().to_vec1::<f32>()?;
        let rv = self.running_var.as_tensor().to_vec1::<f32>()?;
        let (rm, rv): (Vec<f32>, Vec<f32>) = stats
            .batch
            .iter()
            .zip(rm.iter().zip(&rv))
            .map(|(&(mean, var), (&rm, &rv))| {
                let unbiased = var * (m / (m - 1.0));
                (
                    (rm as f64 * keep + mean * self.momentum) as f32,
                    (rv as f64 * keep + unbiased * self.momentum) as f32,
                )
            })
            .unzip();
        let dev = self.weight.device();
        self.running_mean.set(&Tensor::from_vec(rm, c, dev)?)?;
        self.running_var.set(&Tensor::from_vec(rv, c, dev)?)?;
        Ok(())
    }

    /// The training-mode shape check: more than one value per channel.
    fn check_train(&self, x: &Tensor) -> candle_core::Result<()> {
        let (n, _, h, w) = self.check(x)?;
        if n * h * w < 2 {
            candle_core::bail!(
                "BatchNorm2d in training needs more than one value per channel, got input {:?}",
                x.dims()
            );
        }
        Ok(())
    }

    fn forward_train(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = self.check(x)?;
        self.check_train(x)?;
        let m = (n * h * w) as f64;
        // [N, C, H·W]: both reductions run over contiguous or tiny dimensions.
        let x3 = x.reshape((n, c, h * w))?;
        let mean = (x3.sum_keepdim(2)?.sum_keepdim(0)? / m)?; // [1, C, 1]
        let xc = x3.broadcast_sub(&mean)?;
        let var = (xc.sqr()?.sum_keepdim(2)?.sum_keepdim(0)? / m)?; // biased, [1, C, 1]
        let scale = (&var + self.eps)?
            .sqrt()?
            .recip()?
            .broadcast_mul(&self.weight.reshape((1, c, 1))?)?;
        let y = xc
            .broadcast_mul(&scale)?
            .broadcast_add(&self.bias.reshape((1, c, 1))?)?
            .reshape((n, c, h, w))?;

        // Running statistics: PyTorch uses the unbiased variance here.
        let batch_mean = mean.detach().reshape(c)?;
        let batch_var = (var.detach().reshape(c)? * (m / (m - 1.0)))?;
        let keep = 1.0 - self.momentum;
        let rm =
            ((self.running_mean.as_tensor().detach() * keep)? + (batch_mean * self.momentum)?)?;
        let rv = ((self.running_var.as_tensor().detach() * keep)? + (batch_var * self.momentum)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)?;
        Ok(y)
    }

    fn forward_eval(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, c, _, _) = self.check(x)?;
        let rm = self.running_mean.as_tensor().detach();
        let rv = self.running_var.as_tensor().detach();
        // y = (x − μ)·γ/√(σ² + ε) + β, folded into one scale and one shift.
        let scale = (rv + self.eps)?.sqrt()?.recip()?.mul(&self.weight)?;
        let shift = (&self.bias - rm.mul(&scale)?)?;
        x.broadcast_mul(&scale.reshape((1, c, 1, 1))?)?
            .broadcast_add(&shift.reshape((1, c, 1, 1))?)
    }
}

impl ModuleT for BatchNorm2d {
    /// `bn(x)`; one fused op each way on the CPU fast path (see
    /// [`crate::set_cpu_fast_path`]), candle tensor ops elsewhere.
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.forward_path(x, None, false, train, cpu_fast_norm_enabled())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    use super::*;

    fn layer(varmap: &VarMap, c: usize) -> BatchNorm2d {
        let dev = Device::Cpu;
        {
            let mut data = varmap.data().lock().unwrap();
            let vals = |f: &dyn Fn(usize) -> f32| (0..c).map(f).collect::<Vec<f32>>();
            for (name, v) in [
                ("bn.weight", vals(&|i| 1.0 + 0.1 * i as f32)),
                ("bn.bias", vals(&|i| 0.2 * i as f32 - 0.1)),
                ("bn.running_mean", vals(&|i| 0.3 * i as f32)),
                ("bn.running_var", vals(&|i| 1.0 + 0.5 * i as f32)),
            ] {
                let t = Tensor::from_vec(v, c, &dev).unwrap();
                data.insert(name.into(), Var::from_tensor(&t).unwrap());
            }
        }
        BatchNorm2d::new(
            VarBuilder::from_varmap(varmap, DType::F32, &dev).pp("bn"),
            c,
        )
        .unwrap()
    }

    /// Eval mode is the affine map with running statistics, computed here by hand.
    #[test]
    fn eval_uses_running_stats() {
        let varmap = VarMap::new();
        let bn = layer(&varmap, 2);
        let vals: Vec<f32> = (0..16).map(|i| i as f32 * 0.25 - 1.0).collect();
        let x = Tensor::from_vec(vals.clone(), (2, 2, 2, 2), &Device::Cpu).unwrap();
        let y: Vec<f32> = bn
            .forward_t(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (i, (&xv, &yv)) in vals.iter().zip(&y).enumerate() {
            let ch = (i / 4) % 2;
            let (g, b, m, v) = [(1.0, -0.1, 0.0, 1.0), (1.1, 0.1, 0.3, 1.5)][ch];
            let want = (xv - m) / (v + 1e-5f32).sqrt() * g + b;
            assert!((yv - want).abs() < 1e-6, "{i}: {yv} vs {want}");
        }
        // eval leaves the running statistics alone
        assert_eq!(bn.running_mean().to_vec1::<f32>().unwrap(), vec![0.0, 0.3]);
    }

    /// In training the output is normalised per channel with the batch statistics:
    /// before the affine map each channel has mean 0 and biased variance 1.
    #[test]
    fn train_output_normalised_and_shared_with_varmap() {
        let varmap = VarMap::new();
        let bn = layer(&varmap, 2);
        let vals: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32).collect();
        let x = Tensor::from_vec(vals, (3, 2, 2, 2), &Device::Cpu).unwrap();
        let y = bn.forward_t(&x, true).unwrap();
        let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        for (ch, (g, b)) in [(1.0f32, -0.1f32), (1.1, 0.1)].into_iter().enumerate() {
            let z: Vec<f32> = y
                .iter()
                .enumerate()
                .filter(|(i, _)| (i / 4) % 2 == ch)
                .map(|(_, v)| (v - b) / g)
                .collect();
            let mean = z.iter().sum::<f32>() / z.len() as f32;
            let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / z.len() as f32;
            assert!(mean.abs() < 1e-5, "channel {ch} mean {mean}");
            assert!((var - 1.0).abs() < 1e-3, "channel {ch} variance {var}");
        }
        // the update is visible through the VarMap (so it is saved with the weights)
        let rm = varmap.data().lock().unwrap()["bn.running_mean"]
            .as_tensor()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(rm, bn.running_mean().to_vec1::<f32>().unwrap());
        assert_ne!(rm, vec![0.0, 0.3]);
    }

    #[test]
    fn rejects_bad_input() {
        let varmap = VarMap::new();
        let bn = layer(&varmap, 2);
        let x = Tensor::zeros((1, 3, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(bn.forward_t(&x, false).is_err());
        let x = Tensor::zeros((1, 2, 1, 1), DType::F32, &Device::Cpu).unwrap();
        let err = bn.forward_t(&x, true).unwrap_err().to_string();
        assert!(err.contains("more than one value"), "{err}");
    }
}
