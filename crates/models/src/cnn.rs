use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::{Conv2d, Linear, ModelError, Result, global_avg_pool, max_pool2d};

/// Shape of the seed CNN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CnnConfig {
    /// Input channels (1 for grayscale X-rays).
    pub in_channels: usize,
    /// Output channels of `conv1`, `conv2`, `conv3`.
    pub channels: [usize; 3],
}

impl Default for CnnConfig {
    /// The seed study's network: 1 → 32 → 64 → 128.
    fn default() -> Self {
        Self {
            in_channels: 1,
            channels: [32, 64, 128],
        }
    }
}

/// The seed study's CNN: three blocks of Conv(k3, p1) → ReLU → MaxPool(2), adaptive
/// average pool to 1×1, and `fc` to one logit. The forward pass returns logits of
/// shape `[N]` (apply a sigmoid for P(pneumonia)).
///
/// Weight names match the PyTorch module: `conv1.weight`, `conv1.bias`, …, `fc.weight`,
/// `fc.bias`.
#[derive(Debug, Clone)]
pub struct SeedCnn {
    convs: [Conv2d; 3],
    fc: Linear,
    in_channels: usize,
}

impl SeedCnn {
    /// Builds the network from `vb`, which must hold every parameter listed by
    /// [`SeedCnn::parameter_shapes`] (fill a `VarMap` with [`crate::init_seed_cnn`]
    /// or load a safetensors file).
    pub fn new(vb: VarBuilder<'_>, cfg: &CnnConfig) -> Result<Self> {
        let [c1, c2, c3] = cfg.channels;
        let convs = [
            Conv2d::new(vb.pp("conv1"), cfg.in_channels, c1, 3, 1, 1)?,
            Conv2d::new(vb.pp("conv2"), c1, c2, 3, 1, 1)?,
            Conv2d::new(vb.pp("conv3"), c2, c3, 3, 1, 1)?,
        ];
        let fc = Linear::new(vb.pp("fc"), c3, 1)?;
        Ok(Self {
            convs,
            fc,
            in_channels: cfg.in_channels,
        })
    }

    /// Every parameter as `(name, shape, fan_in)`, in a fixed order.
    pub fn parameter_shapes(cfg: &CnnConfig) -> Vec<(String, Vec<usize>, usize)> {
        let [c1, c2, c3] = cfg.channels;
        let mut out = Vec::new();
        for (name, cin, cout) in [
            ("conv1", cfg.in_channels, c1),
            ("conv2", c1, c2),
            ("conv3", c2, c3),
        ] {
            out.push((format!("{name}.weight"), vec![cout, cin, 3, 3], cin * 9));
            out.push((format!("{name}.bias"), vec![cout], cin * 9));
        }
        out.push(("fc.weight".into(), vec![1, c3], c3));
        out.push(("fc.bias".into(), vec![1], c3));
        out
    }

    /// The last convolution block's activations `[N, C, h, w]` (before its pool) and
    /// the logits `[N]`; used for Grad-CAM.
    pub fn forward_with_features(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.check_input(x)?;
        let mut h = x.clone();
        let mut features = None;
        for (i, conv) in self.convs.iter().enumerate() {
            h = conv.forward(&h)?.relu()?;
            if i == 2 {
                features = Some(h.clone());
            }
            if i < 2 {
                h = max_pool2d(&h)?;
            }
        }
        let features = features.ok_or_else(|| candle_core::Error::Msg("no conv blocks".into()))?;
        let logits = self.head(&features)?;
        Ok((features, logits))
    }

    /// The rest of the network after [`SeedCnn::forward_with_features`]' features:
    /// the last block's max-pool, the global average pool and `fc`, giving logits
    /// `[N]`. Gradients of the logits with respect to `features` (for Grad-CAM) flow
    /// through it.
    pub fn head(&self, features: &Tensor) -> Result<Tensor> {
        let pooled = global_avg_pool(&max_pool2d(features)?)?;
        Ok(self.fc.forward(&pooled)?.squeeze(1)?)
    }

    /// Logits `[N]` for a batch `[N, C, H, W]`. Each block runs through
    /// [`Conv2d::forward_relu_max_pool2d`] (on the CPU one fused op per block; same values
    /// up to rounding and same gradients as [`SeedCnn::forward_with_features`], fewer
    /// passes).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.check_input(x)?;
        let mut h = x.clone();
        for conv in &self.convs {
            h = conv.forward_relu_max_pool2d(&h)?;
        }
        let pooled = global_avg_pool(&h)?;
        Ok(self.fc.forward(&pooled)?.squeeze(1)?)
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != self.in_channels || dims[2] < 8 || dims[3] < 8 {
            return Err(ModelError::Input {
                expected: format!("[N, {}, H, W] with H, W ≥ 8", self.in_channels),
                actual: dims.to_vec(),
            });
        }
        Ok(())
    }
}
