use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::Result;
use crate::relu_max_pool2d;
use cxr_kernels::{
    ConvKind, conv_fast_path_applies, conv2d_cpu, conv3x3_relu_max_pool2d, conv3x3_winograd,
    fused_block_applies, winograd_conv_applies,
};

/// A 2-D convolution, weights `weight` `[out, in, k, k]` and optional `bias` `[out]`
/// as in PyTorch's `nn.Conv2d` (`bias=False` for [`Conv2d::new_no_bias`]).
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    padding: usize,
    stride: usize,
}

impl Conv2d {
    /// Builds the layer from `vb` (which must already hold, or be able to create,
    /// `weight` and `bias` under its prefix).
    pub fn new(
        vb: VarBuilder<'_>,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
    ) -> Result<Self> {
        let weight = vb.get((out_channels, in_channels, kernel, kernel), "weight")?;
        let bias = Some(vb.get(out_channels, "bias")?);
        Ok(Self {
            weight,
            bias,
            padding,
            stride,
        })
    }

    /// Builds a convolution without bias (PyTorch's `bias=False`, used before a
    /// BatchNorm); `vb` holds only `weight` under its prefix.
    pub fn new_no_bias(
        vb: VarBuilder<'_>,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
    ) -> Result<Self> {
        let weight = vb.get((out_channels, in_channels, kernel, kernel), "weight")?;
        Ok(Self {
            weight,
            bias: None,
            padding,
            stride,
        })
    }

    /// `max_pool2d(relu(self.forward(x)))` (2×2, stride 2, floor mode): the seed CNN's
    /// block. A 3×3, stride-1, padding-1 convolution with bias on CPU `f32` batches of
    /// at least 8 images with at least 8 input channels runs as one fused Winograd op
    /// ([`crate::conv3x3_relu_max_pool2d`]); anything else as the convolution followed
    /// by [`relu_max_pool2d`]. Same values up to rounding, same gradients.
    pub fn forward_relu_max_pool2d(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(bias) = &self.bias
            && self.padding == 1
            && self.stride == 1
            && crate::cpu_fast_path_enabled()
            && fused_block_applies(x, &self.weight)
        {
            return Ok(conv3x3_relu_max_pool2d(x, &self.weight, bias)?);
        }
        relu_max_pool2d(&self.forward(x)?)
    }

    /// The fast-path convolution [`Module::forward`] would run on `x`, for the fused
    /// convolution + BatchNorm op: `None` with a bias, off the fast path or where the
    /// fast path does not apply.
    pub(crate) fn fused_kind(&self, x: &Tensor) -> Option<ConvKind> {
        self.bias.is_none().then(|| self.fast_kind(x)).flatten()
    }

    /// The fast-path convolution for `x`, if any: Winograd for a bias-free 3×3 stride-1
    /// padding-1 convolution where it applies, else the implicit-im2col GEMM.
    fn fast_kind(&self, x: &Tensor) -> Option<ConvKind> {
        if !crate::cpu_fast_path_enabled() {
            return None;
        }
        if self.bias.is_none()
            && self.padding == 1
            && self.stride == 1
            && winograd_conv_applies(x, &self.weight)
        {
            return Some(ConvKind::Winograd);
        }
        conv_fast_path_applies(x, &self.weight).then_some(ConvKind::Im2col {
            stride: self.stride,
            pad: self.padding,
        })
    }

    /// `[N, C_out, H_out, W_out]` of the convolution of `x`; `None` where `x` is not
    /// `[N, C_in, H, W]` of this layer's `C_in` or is smaller than the kernel.
    pub(crate) fn output_dims(&self, x: &Tensor) -> Option<(usize, usize, usize, usize)> {
        let (n, c, h, w) = x.dims4().ok()?;
        let (co, ci, k, _) = self.weight.dims4().ok()?;
        let (hp, wp) = (h + 2 * self.padding, w + 2 * self.padding);
        if c != ci || hp < k || wp < k || self.stride == 0 {
            return None;
        }
        Some((
            n,
            co,
            (hp - k) / self.stride + 1,
            (wp - k) / self.stride + 1,
        ))
    }

    /// The kernel tensor `[out, in, k, k]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

impl Module for Conv2d {
    /// On the CPU with `f32` tensors (and the fast path enabled, see
    /// [`crate::set_cpu_fast_path`]) the convolution, its bias and its backward run as
    /// one implicit-im2col GEMM op — a bias-free 3×3, stride-1, padding-1 convolution of
    /// a batch of at least 16 on maps of at least 8×8 as a Winograd op
    /// ([`crate::conv3x3_winograd`]) — elsewhere through candle's `conv2d`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.fast_kind(x) {
            Some(ConvKind::Winograd) => return conv3x3_winograd(x, &self.weight),
            Some(ConvKind::Im2col { stride, pad }) => {
                return conv2d_cpu(x, &self.weight, self.bias.as_ref(), pad, stride);
            }
            None => {}
        }
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        match &self.bias {
            Some(bias) => {
                let out = bias.dims1()?;
                y.broadcast_add(&bias.reshape((1, out, 1, 1))?)
            }
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    use super::*;

    fn conv(
        varmap: &VarMap,
        (ci, co, k): (usize, usize, usize),
        pad: usize,
        stride: usize,
        bias: bool,
    ) -> Conv2d {
        let vb = VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu);
        if bias {
            Conv2d::new(vb, ci, co, k, pad, stride).unwrap()
        } else {
            Conv2d::new_no_bias(vb, ci, co, k, pad, stride).unwrap()
        }
    }

    /// The fused convolution + BatchNorm op runs the convolution the forward would:
    /// Winograd for a bias-free 3×3/1 on a large enough batch, the im2col GEMM otherwise,
    /// and none with a bias; the output size is the forward's.
    #[test]
    fn fused_kind_and_output_dims_follow_the_forward() {
        let x = Tensor::zeros((16, 8, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let c = conv(&VarMap::new(), (8, 8, 3), 1, 1, false);
        assert_eq!(c.fused_kind(&x), Some(ConvKind::Winograd));
        assert_eq!(c.output_dims(&x), Some((16, 8, 8, 8)));
        let c = conv(&VarMap::new(), (8, 4, 3), 1, 2, false);
        assert_eq!(
            c.fused_kind(&x),
            Some(ConvKind::Im2col { stride: 2, pad: 1 })
        );
        let y = c.forward(&x).unwrap();
        assert_eq!(c.output_dims(&x), Some(y.dims4().unwrap()));
        let c = conv(&VarMap::new(), (8, 8, 3), 1, 1, true);
        assert_eq!(c.fused_kind(&x), None);
        let c = conv(&VarMap::new(), (3, 8, 3), 1, 1, false);
        assert_eq!(c.output_dims(&x), None, "channels do not match");
        let c = conv(&VarMap::new(), (8, 8, 11), 1, 1, false);
        assert_eq!(
            c.output_dims(&x),
            None,
            "kernel larger than the padded input"
        );
    }
}
