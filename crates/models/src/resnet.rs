use candle_core::{Module, Tensor, Var};
use candle_nn::{ModuleT, VarBuilder, VarMap};

use crate::batchnorm::{BN_BUFFERS, BN_PARAMS};
use crate::{BatchNorm2d, Conv2d, Linear, ModelError, Result, global_avg_pool};

/// ImageNet channel means (RGB) used by torchvision and timm ResNet checkpoints.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Output channels and first-block stride of the four ResNet18 stages.
const STAGES: [(usize, usize); 4] = [(64, 1), (128, 2), (256, 2), (512, 2)];
/// Channels after the stem (`conv1`).
const STEM: usize = 64;
/// Width of the pooled features that feed `fc`.
pub const RESNET18_FEATURES: usize = 512;

/// Shape of a [`ResNet18`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResNetConfig {
    /// Outputs of `fc`: 1 for the binary head (logits `[N]`), 1000 to run an ImageNet
    /// checkpoint as it is (logits `[N, 1000]`).
    pub num_classes: usize,
}

impl Default for ResNetConfig {
    /// The pneumonia head: one logit.
    fn default() -> Self {
        Self { num_classes: 1 }
    }
}

/// What a named tensor of a [`ResNet18`] is, for optimizers, freezing and weight
/// decay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorRole {
    /// A convolution kernel of the body: frozen with the body.
    BodyConv,
    /// A BatchNorm `weight` or `bias` of the body: trainable, and kept trainable when
    /// the body is frozen (as fastai does).
    BodyNorm,
    /// The head, `fc.weight` and `fc.bias`: always trainable, never loaded from an
    /// ImageNet checkpoint whose class count differs.
    Head,
    /// A BatchNorm running statistic (`running_mean`, `running_var`): saved and loaded
    /// with the weights, updated by `forward_t(x, true)`, never given to an optimizer.
    Buffer,
}

impl TensorRole {
    /// True for parameters an optimizer may update (everything but [`TensorRole::Buffer`]).
    pub fn is_trainable(self) -> bool {
        !matches!(self, TensorRole::Buffer)
    }
}

/// One named tensor of a [`ResNet18`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// PyTorch name, e.g. `layer2.0.downsample.1.running_var`.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Role (parameter of body or head, or buffer).
    pub role: TensorRole,
    /// fastai's layer group for discriminative learning rates (`resnet_split`):
    /// 0 = stem, `layer1`, `layer2`; 1 = `layer3`, `layer4`; 2 = head (`fc`).
    pub lr_group: usize,
}

/// A [`ResNet18`]'s variables in a [`VarMap`], split by role, each list in
/// [`ResNet18::tensor_specs`] order. Hand the trainable lists to an optimizer, never
/// `buffers`.
#[derive(Debug, Clone)]
pub struct ParamGroups {
    /// Convolution kernels of the body ([`TensorRole::BodyConv`]).
    pub body_conv: Vec<(String, Var)>,
    /// BatchNorm weights and biases of the body ([`TensorRole::BodyNorm`]).
    pub body_norm: Vec<(String, Var)>,
    /// `fc.weight`, `fc.bias` ([`TensorRole::Head`]).
    pub head: Vec<(String, Var)>,
    /// BatchNorm running statistics ([`TensorRole::Buffer`]).
    pub buffers: Vec<(String, Var)>,
    /// fastai layer group of every trainable name (see [`TensorSpec::lr_group`]).
    lr_groups: Vec<(String, usize)>,
}

impl ParamGroups {
    /// Every trainable parameter (body and head; no buffers).
    pub fn trainable(&self) -> Vec<(String, Var)> {
        let mut out = self.body_conv.clone();
        out.extend(self.body_norm.iter().cloned());
        out.extend(self.head.iter().cloned());
        out
    }

    /// What fastai trains while the body is frozen: the head and the body's BatchNorm
    /// weights and biases.
    pub fn frozen_body_trainable(&self) -> Vec<(String, Var)> {
        let mut out = self.body_norm.clone();
        out.extend(self.head.iter().cloned());
        out
    }

    /// The trainable parameters split into fastai's three layer groups (see
    /// [`TensorSpec::lr_group`]), for discriminative learning rates.
    pub fn by_lr_group(&self) -> [Vec<(String, Var)>; 3] {
        let mut out: [Vec<(String, Var)>; 3] = Default::default();
        for (name, var) in self.trainable() {
            let g = self
                .lr_groups
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(2, |(_, g)| *g);
            out[g].push((name, var));
        }
        out
    }
}

/// Maps a batch of grayscale images `[N, 1, H, W]` with values in `[0, 1]` to the
/// ResNet input `[N, 3, H, W]`: the channel repeated three times and normalised with
/// [`IMAGENET_MEAN`] and [`IMAGENET_STD`]. `[N, 3, H, W]` input is normalised as it is.
pub fn imagenet_input(x: &Tensor) -> Result<Tensor> {
    let c = match x.dims4() {
        Ok((_, c @ (1 | 3), _, _)) => c,
        _ => {
            return Err(ModelError::Input {
                expected: "[N, 1, H, W] or [N, 3, H, W] with values in [0, 1]".into(),
                actual: x.dims().to_vec(),
            });
        }
    };
    let dev = x.device();
    let scale: Vec<f32> = IMAGENET_STD.iter().map(|s| 1.0 / s).collect();
    let shift: Vec<f32> = IMAGENET_MEAN
        .iter()
        .zip(&IMAGENET_STD)
        .map(|(m, s)| -m / s)
        .collect();
    let scale = Tensor::from_vec(scale, (1, 3, 1, 1), dev)?.to_dtype(x.dtype())?;
    let shift = Tensor::from_vec(shift, (1, 3, 1, 1), dev)?.to_dtype(x.dtype())?;
    let x = if c == 1 {
        let (n, _, h, w) = x.dims4()?;
        x.broadcast_as((n, 3, h, w))?
    } else {
        x.clone()
    };
    Ok(x.broadcast_mul(&scale)?.broadcast_add(&shift)?)
}

/// torchvision's `BasicBlock`: Conv3×3(stride) → BN → ReLU → Conv3×3 → BN, plus the
/// identity (or `downsample` = Conv1×1(stride) → BN when the shape changes), → ReLU.
#[derive(Debug, Clone)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

impl BasicBlock {
    /// Builds the block from `vb` (prefix e.g. `layer2.0`).
    pub fn new(vb: VarBuilder<'_>, in_ch: usize, out_ch: usize, stride: usize) -> Result<Self> {
        let downsample = if stride != 1 || in_ch != out_ch {
            Some((
                Conv2d::new_no_bias(vb.pp("downsample.0"), in_ch, out_ch, 1, 0, stride)?,
                BatchNorm2d::new(vb.pp("downsample.1"), out_ch)?,
            ))
        } else {
            None
        };
        Ok(Self {
            conv1: Conv2d::new_no_bias(vb.pp("conv1"), in_ch, out_ch, 3, 1, stride)?,
            bn1: BatchNorm2d::new(vb.pp("bn1"), out_ch)?,
            conv2: Conv2d::new_no_bias(vb.pp("conv2"), out_ch, out_ch, 3, 1, 1)?,
            bn2: BatchNorm2d::new(vb.pp("bn2"), out_ch)?,
            downsample,
        })
    }

    /// The tensors of a block as `(name suffix, shape)`.
    fn specs(in_ch: usize, out_ch: usize, stride: usize) -> Vec<(String, Vec<usize>)> {
        let mut out = vec![
            ("conv1.weight".to_string(), vec![out_ch, in_ch, 3, 3]),
            ("conv2.weight".to_string(), vec![out_ch, out_ch, 3, 3]),
        ];
        let mut bns = vec!["bn1", "bn2"];
        if stride != 1 || in_ch != out_ch {
            out.push(("downsample.0.weight".into(), vec![out_ch, in_ch, 1, 1]));
            bns.push("downsample.1");
        }
        for bn in bns {
            for t in BN_PARAMS.iter().chain(&BN_BUFFERS) {
                out.push((format!("{bn}.{t}"), vec![out_ch]));
            }
        }
        out
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let h = self.bn1.forward_conv_t(&self.conv1, x, true, train)?;
        let identity = match &self.downsample {
            Some((conv, bn)) => bn.forward_conv_t(conv, x, false, train)?,
            None => x.clone(),
        };
        self.bn2
            .forward_add_relu_t(&self.conv2.forward(&h)?, &identity, train)
    }
}

/// ResNet18 with torchvision/timm weight names (`conv1`, `bn1`,
/// `layer{1..4}.{0,1}.{conv1,bn1,conv2,bn2,downsample.0,downsample.1}`, `fc`), so
/// ImageNet checkpoints from either load directly.
///
/// Input: `[N, 3, H, W]` normalised as ImageNet images (see [`imagenet_input`]).
/// Output: logits `[N]` when `num_classes` is 1, `[N, num_classes]` otherwise.
/// Every parameter is a candle variable when built from a [`VarMap`]; BatchNorm has
/// real train/eval semantics (see [`BatchNorm2d`]), chosen by `forward_t`'s `train`.
#[derive(Debug, Clone)]
pub struct ResNet18 {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    blocks: Vec<BasicBlock>,
    fc: Linear,
    num_classes: usize,
}

impl ResNet18 {
    /// Builds the network from `vb`, which must hold every tensor listed by
    /// [`ResNet18::tensor_specs`] (fill a `VarMap` with [`crate::init_resnet18`], then
    /// optionally [`crate::load_resnet18_weights`]).
    pub fn new(vb: VarBuilder<'_>, cfg: &ResNetConfig) -> Result<Self> {
        let conv1 = Conv2d::new_no_bias(vb.pp("conv1"), 3, STEM, 7, 3, 2)?;
        let bn1 = BatchNorm2d::new(vb.pp("bn1"), STEM)?;
        let mut blocks = Vec::with_capacity(8);
        let mut in_ch = STEM;
        for (stage, &(out_ch, stride)) in STAGES.iter().enumerate() {
            for b in 0..2 {
                let s = if b == 0 { stride } else { 1 };
                let prefix = format!("layer{}.{b}", stage + 1);
                blocks.push(BasicBlock::new(vb.pp(prefix), in_ch, out_ch, s)?);
                in_ch = out_ch;
            }
        }
        let fc = Linear::new(vb.pp("fc"), RESNET18_FEATURES, cfg.num_classes)?;
        Ok(Self {
            conv1,
            bn1,
            blocks,
            fc,
            num_classes: cfg.num_classes,
        })
    }

    /// Every tensor (parameters and buffers) in torchvision's `state_dict` order.
    pub fn tensor_specs(cfg: &ResNetConfig) -> Vec<TensorSpec> {
        let mut out = vec![TensorSpec {
            name: "conv1.weight".into(),
            shape: vec![STEM, 3, 7, 7],
            role: TensorRole::BodyConv,
            lr_group: 0,
        }];
        for t in BN_PARAMS.iter().chain(&BN_BUFFERS) {
            let name = format!("bn1.{t}");
            let role = Self::tensor_role(&name).unwrap_or(TensorRole::Buffer);
            out.push(TensorSpec {
                name,
                shape: vec![STEM],
                role,
                lr_group: 0,
            });
        }
        let mut in_ch = STEM;
        for (stage, &(out_ch, stride)) in STAGES.iter().enumerate() {
            for b in 0..2 {
                let s = if b == 0 { stride } else { 1 };
                let mut block = BasicBlock::specs(in_ch, out_ch, s);
                // state_dict order: conv1, bn1.*, conv2, bn2.*, downsample.*
                block.sort_by_key(|(n, _)| module_order(n));
                for (suffix, shape) in block {
                    let name = format!("layer{}.{b}.{suffix}", stage + 1);
                    let role = Self::tensor_role(&name).unwrap_or(TensorRole::Buffer);
                    out.push(TensorSpec {
                        name,
                        shape,
                        role,
                        lr_group: if stage < 2 { 0 } else { 1 },
                    });
                }
                in_ch = out_ch;
            }
        }
        for (name, shape) in [
            ("fc.weight", vec![cfg.num_classes, RESNET18_FEATURES]),
            ("fc.bias", vec![cfg.num_classes]),
        ] {
            out.push(TensorSpec {
                name: name.into(),
                shape,
                role: TensorRole::Head,
                lr_group: 2,
            });
        }
        out
    }

    /// The role of a tensor name of this architecture, or `None` if the name is not
    /// one (e.g. `num_batches_tracked`, which this crate does not keep).
    pub fn tensor_role(name: &str) -> Option<TensorRole> {
        let (module, leaf) = name.rsplit_once('.')?;
        if module == "fc" {
            return matches!(leaf, "weight" | "bias").then_some(TensorRole::Head);
        }
        let is_bn = module == "bn1"
            || module.ends_with(".bn1")
            || module.ends_with(".bn2")
            || module.ends_with(".downsample.1");
        let is_conv = module == "conv1"
            || module.ends_with(".conv1")
            || module.ends_with(".conv2")
            || module.ends_with(".downsample.0");
        let in_body = module == "conv1" || module == "bn1" || module.starts_with("layer");
        if !in_body {
            return None;
        }
        match (is_conv, is_bn, leaf) {
            (true, _, "weight") => Some(TensorRole::BodyConv),
            (_, true, "weight" | "bias") => Some(TensorRole::BodyNorm),
            (_, true, "running_mean" | "running_var") => Some(TensorRole::Buffer),
            _ => None,
        }
    }

    /// Looks up this model's variables in `varmap` and splits them by role.
    pub fn param_groups(varmap: &VarMap, cfg: &ResNetConfig) -> Result<ParamGroups> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
        let mut groups = ParamGroups {
            body_conv: Vec::new(),
            body_norm: Vec::new(),
            head: Vec::new(),
            buffers: Vec::new(),
            lr_groups: Vec::new(),
        };
        for spec in Self::tensor_specs(cfg) {
            let var = data.get(&spec.name).cloned().ok_or_else(|| {
                candle_core::Error::Msg(format!(
                    "the VarMap has no `{}`: fill it with init_resnet18 first",
                    spec.name
                ))
            })?;
            let entry = (spec.name.clone(), var);
            match spec.role {
                TensorRole::BodyConv => groups.body_conv.push(entry),
                TensorRole::BodyNorm => groups.body_norm.push(entry),
                TensorRole::Head => groups.head.push(entry),
                TensorRole::Buffer => groups.buffers.push(entry),
            }
            if spec.role.is_trainable() {
                groups.lr_groups.push((spec.name, spec.lr_group));
            }
        }
        Ok(groups)
    }

    /// Number of outputs of `fc`.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The last convolution block's activations `[N, 512, h, w]` (output of `layer4`,
    /// before pooling) and the logits, in training (`train = true`: batch statistics,
    /// running statistics updated) or evaluation mode. For Grad-CAM.
    pub fn forward_with_features_t(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        match x.dims4() {
            Ok((n, 3, h, w)) if n > 0 && h > 0 && w > 0 => {}
            _ => {
                return Err(ModelError::Input {
                    expected: "[N, 3, H, W] (map [N, 1, H, W] images with imagenet_input)".into(),
                    actual: x.dims().to_vec(),
                });
            }
        }
        let mut h = self.bn1.forward_conv_pool_t(&self.conv1, x, train)?;
        for block in &self.blocks {
            h = block.forward_t(&h, train)?;
        }
        let pooled = global_avg_pool(&h)?;
        let logits = self.fc.forward(&pooled)?;
        let logits = if self.num_classes == 1 {
            logits.squeeze(1)?
        } else {
            logits
        };
        Ok((h, logits))
    }

    /// [`ResNet18::forward_with_features_t`] in evaluation mode.
    pub fn forward_with_features(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        self.forward_with_features_t(x, false)
    }

    /// Logits in training or evaluation mode (see [`ResNet18::forward_with_features_t`]).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.forward_with_features_t(x, train)?.1)
    }

    /// Logits in evaluation mode.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, false)
    }

    /// Logits from the last block's activations `[N, 512, h, w]` (global average
    /// pool and `fc`), as [`ResNet18::forward_with_features_t`] computes them; the
    /// gradient flows back to `features` (Grad-CAM).
    pub fn head(&self, features: &Tensor) -> Result<Tensor> {
        let logits = self.fc.forward(&global_avg_pool(features)?)?;
        Ok(if self.num_classes == 1 {
            logits.squeeze(1)?
        } else {
            logits
        })
    }
}

impl ModuleT for ResNet18 {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        ResNet18::forward_t(self, x, train).map_err(candle_core::Error::wrap)
    }
}

/// Sort key putting a block's tensors in `state_dict` order.
fn module_order(name: &str) -> usize {
    let module = name.rsplit_once('.').map_or(name, |(m, _)| m);
    let leaf = name.rsplit_once('.').map_or("", |(_, l)| l);
    let m = [
        "conv1",
        "bn1",
        "conv2",
        "bn2",
        "downsample.0",
        "downsample.1",
    ]
    .iter()
    .position(|p| *p == module)
    .unwrap_or(6);
    let l = ["weight", "bias", "running_mean", "running_var"]
        .iter()
        .position(|p| *p == leaf)
        .unwrap_or(4);
    m * 8 + l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_cover_torchvision_names_with_roles() {
        let specs = ResNet18::tensor_specs(&ResNetConfig::default());
        // torchvision's resnet18 state_dict without num_batches_tracked: 102 tensors
        assert_eq!(specs.len(), 102);
        let count = |r: TensorRole| specs.iter().filter(|s| s.role == r).count();
        assert_eq!(count(TensorRole::BodyConv), 20); // 1 stem + 16 block convs + 3 downsample
        assert_eq!(count(TensorRole::BodyNorm), 40); // 20 BatchNorms × (weight, bias)
        assert_eq!(count(TensorRole::Buffer), 40);
        assert_eq!(count(TensorRole::Head), 2);
        let params: usize = specs
            .iter()
            .filter(|s| s.role.is_trainable())
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        // torchvision resnet18 has 11,689,512 parameters with a 1000-class fc;
        // with one logit: 11,689,512 − 512·999 − 999.
        assert_eq!(params, 11_689_512 - 512 * 999 - 999);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            &names[..6],
            &[
                "conv1.weight",
                "bn1.weight",
                "bn1.bias",
                "bn1.running_mean",
                "bn1.running_var",
                "layer1.0.conv1.weight"
            ]
        );
        assert!(names.contains(&"layer2.0.downsample.1.running_var"));
        assert!(!names.contains(&"layer1.0.downsample.0.weight"));
        let spec = |n: &str| specs.iter().find(|s| s.name == n).unwrap().clone();
        assert_eq!(
            spec("layer3.0.downsample.0.weight").shape,
            vec![256, 128, 1, 1]
        );
        assert_eq!(spec("layer2.1.bn2.bias").lr_group, 0);
        assert_eq!(spec("layer3.1.conv1.weight").lr_group, 1);
        assert_eq!(spec("fc.bias").lr_group, 2);
        for s in &specs {
            assert_eq!(ResNet18::tensor_role(&s.name), Some(s.role), "{}", s.name);
        }
        assert_eq!(ResNet18::tensor_role("bn1.num_batches_tracked"), None);
        assert_eq!(ResNet18::tensor_role("features.0.weight"), None);
        assert_eq!(ResNet18::tensor_role("conv1.bias"), None);
    }

    #[test]
    fn imagenet_input_repeats_and_normalises() {
        let x = Tensor::from_vec(
            vec![0.0f32, 0.5, 1.0, 0.25],
            (1, 1, 2, 2),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let y = imagenet_input(&x).unwrap();
        assert_eq!(y.dims(), &[1, 3, 2, 2]);
        let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        for c in 0..3 {
            for (i, v) in [0.0f32, 0.5, 1.0, 0.25].iter().enumerate() {
                let want = (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
                assert!((y[c * 4 + i] - want).abs() < 1e-6);
            }
        }
        let bad = Tensor::zeros(
            (1, 2, 2, 2),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        assert!(matches!(
            imagenet_input(&bad),
            Err(ModelError::Input { .. })
        ));
    }
}
