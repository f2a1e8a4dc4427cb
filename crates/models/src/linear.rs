use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::Result;

/// A fully connected layer `y = x Wᵀ + b`, weights `weight` `[out, in]` and `bias`
/// `[out]` as in PyTorch's `nn.Linear`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// Builds the layer from `vb`.
    pub fn new(vb: VarBuilder<'_>, in_features: usize, out_features: usize) -> Result<Self> {
        let weight = vb.get((out_features, in_features), "weight")?;
        let bias = vb.get(out_features, "bias")?;
        Ok(Self { weight, bias })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
    }
}
