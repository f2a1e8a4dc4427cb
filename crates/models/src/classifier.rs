//! [`Classifier`]: what training, the audit and prediction need of a network, and
//! [`build_classifier`], the one place that maps a model name to a network.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::{
    CnnConfig, ModelError, ResNet18, ResNetConfig, Result, SeedCnn, TensorRole, imagenet_input,
};

/// A binary chest X-ray classifier: one logit per image, P(pneumonia) = σ(logit).
///
/// Inputs are `[N, 1, H, W]` grayscale batches normalised as the run's settings say
/// (a network that wants another input, such as ResNet18's ImageNet-normalised three
/// channels, maps it itself). A new network joins training, the audit (Grad-CAM needs
/// [`Classifier::features`] and [`Classifier::head`]) and prediction by implementing
/// this trait and adding a name to [`build_classifier`].
pub trait Classifier {
    /// Logits `[N]`; `train` selects training mode (BatchNorm batch statistics, running
    /// statistics updated).
    fn logits_t(&self, x: &Tensor, train: bool) -> Result<Tensor>;

    /// Logits `[N]` in inference mode.
    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        self.logits_t(x, false)
    }

    /// The last convolutional block's activations `[N, C, h, w]` (inference mode).
    fn features(&self, x: &Tensor) -> Result<Tensor>;

    /// Logits `[N]` from [`Classifier::features`]' output; the gradient of the logits
    /// with respect to the features flows through it.
    fn head(&self, features: &Tensor) -> Result<Tensor>;

    /// Whether the variable `name` is trained (buffers such as BatchNorm's running
    /// statistics are not).
    fn is_trainable(&self, name: &str) -> bool {
        let _ = name;
        true
    }

    /// Whether the variable `name` stays f32 under mixed precision (normalisation
    /// weights and running statistics); the rest is cast to the half type.
    fn keeps_f32(&self, name: &str) -> bool {
        let _ = name;
        false
    }

    /// fastai's layer group of the variable `name` for discriminative learning rates:
    /// 0 the earliest body layers, 1 the later ones, 2 the head.
    fn lr_group(&self, name: &str) -> usize {
        let _ = name;
        2
    }

    /// Whether `name` belongs to the pretrained body that a frozen fine-tuning phase
    /// keeps fixed.
    fn is_frozen_when_fine_tuning(&self, name: &str) -> bool {
        let _ = name;
        false
    }
}

impl Classifier for SeedCnn {
    fn logits_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        self.forward(x)
    }

    fn features(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with_features(x)?.0)
    }

    fn head(&self, features: &Tensor) -> Result<Tensor> {
        SeedCnn::head(self, features)
    }
}

/// ResNet18 takes `[N, 1, H, W]` pixels in [0, 1] (its runs normalise with mean 0,
/// std 1) and maps them to its ImageNet-normalised 3-channel input itself.
impl Classifier for ResNet18 {
    fn logits_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_t(&imagenet_input(x)?, train)
    }

    fn features(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with_features(&imagenet_input(x)?)?.0)
    }

    fn head(&self, features: &Tensor) -> Result<Tensor> {
        ResNet18::head(self, features)
    }

    fn is_trainable(&self, name: &str) -> bool {
        ResNet18::tensor_role(name).is_some_and(TensorRole::is_trainable)
    }

    fn keeps_f32(&self, name: &str) -> bool {
        matches!(
            ResNet18::tensor_role(name),
            Some(TensorRole::BodyNorm | TensorRole::Buffer)
        )
    }

    fn lr_group(&self, name: &str) -> usize {
        if name.starts_with("fc.") {
            2
        } else if name.starts_with("layer3.") || name.starts_with("layer4.") {
            1
        } else {
            0
        }
    }

    fn is_frozen_when_fine_tuning(&self, name: &str) -> bool {
        ResNet18::tensor_role(name) == Some(TensorRole::BodyConv)
    }
}

/// The model names [`build_classifier`] knows.
pub const CLASSIFIERS: [&str; 2] = ["cnn", "resnet18"];

/// Builds the network `model` (`cnn`: [`SeedCnn`], `resnet18`: [`ResNet18`] with one
/// logit) from `vb`, which must hold its variables (from a `VarMap` being trained, or
/// a run folder's `model.safetensors`).
pub fn build_classifier(model: &str, vb: VarBuilder<'_>) -> Result<Box<dyn Classifier>> {
    match model {
        "cnn" => Ok(Box::new(SeedCnn::new(vb, &CnnConfig::default())?)),
        "resnet18" => Ok(Box::new(ResNet18::new(vb, &ResNetConfig::default())?)),
        other => Err(ModelError::UnknownModel {
            name: other.to_string(),
            known: CLASSIFIERS.join(", "),
        }),
    }
}

/// Loads the network `model` with the weights in the safetensors file `path` (a run
/// folder's `model.safetensors`; tensors the network does not use, such as PyTorch's
/// `num_batches_tracked`, are ignored) onto `device`. Errors name the file.
pub fn load_classifier(model: &str, path: &Path, device: &Device) -> Result<Box<dyn Classifier>> {
    let weights = |reason: String| ModelError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    let tensors =
        candle_core::safetensors::load(path, device).map_err(|e| weights(e.to_string()))?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    build_classifier(model, vb).map_err(|e| match e {
        e @ ModelError::UnknownModel { .. } => e,
        e => weights(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resnet_lr_groups_match_the_tensor_specs() {
        let vm = candle_nn::VarMap::new();
        crate::init_resnet18(&vm, &ResNetConfig::default(), 0, &candle_core::Device::Cpu).unwrap();
        let vb = VarBuilder::from_varmap(&vm, candle_core::DType::F32, &candle_core::Device::Cpu);
        let net = build_classifier("resnet18", vb).unwrap();
        for spec in ResNet18::tensor_specs(&ResNetConfig::default()) {
            assert_eq!(net.lr_group(&spec.name), spec.lr_group, "{}", spec.name);
            assert_eq!(net.is_trainable(&spec.name), spec.role.is_trainable());
        }
        assert!(matches!(
            build_classifier(
                "vit",
                VarBuilder::zeros(candle_core::DType::F32, &candle_core::Device::Cpu)
            ),
            Err(ModelError::UnknownModel { .. })
        ));
    }
}
