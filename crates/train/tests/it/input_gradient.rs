//! A training step computes no gradient for its input batch on the CPU: the batch is a
//! plain tensor, and the fast path's first layer (the seed CNN's fused convolution, ReLU
//! and pool; ResNet18's fused stem) skips the input gradient of an input that tracks
//! nothing. candle's own `conv2d` backward, which CUDA and Metal run, computes it anyway.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cxr_models::{ResNetConfig, build_classifier, init_resnet18, init_seed_cnn};
use cxr_train::bce_with_logits;

/// Whether one training step of `model` on `x` (`[16, 1, size, size]`) leaves a gradient
/// for `x`.
fn input_gets_a_gradient(model: &str, x: &Tensor) -> bool {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    match model {
        "cnn" => init_seed_cnn(&varmap, &Default::default(), 0, &dev).unwrap(),
        _ => init_resnet18(&varmap, &ResNetConfig::default(), 0, &dev).unwrap(),
    }
    let net = build_classifier(model, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
    let y = Tensor::from_vec((0..16).map(|i| (i % 2) as f32).collect(), 16, &dev).unwrap();
    let loss = bce_with_logits(&net.logits_t(x, true).unwrap(), &y).unwrap();
    let grads = loss.backward().unwrap();
    // The step did compute the weights' gradients.
    let data = varmap.data().lock().unwrap();
    assert!(data.values().any(|v| grads.get(v.as_tensor()).is_some()));
    grads.get(x).is_some()
}

#[test]
fn the_input_batch_gets_no_gradient_on_the_cpu() {
    for (model, size) in [("cnn", 28), ("resnet18", 32)] {
        let n = 16 * size * size;
        let values: Vec<f32> = (0..n).map(|i| ((i * 37 % 255) as f32) / 255.0).collect();
        let x = Tensor::from_vec(values, (16, 1, size, size), &Device::Cpu).unwrap();
        assert!(
            !input_gets_a_gradient(model, &x),
            "{model}: input gradient computed"
        );
        // The check sees an input gradient where one is wanted.
        let tracked = Var::from_tensor(&x).unwrap();
        assert!(
            input_gets_a_gradient(model, tracked.as_tensor()),
            "{model}: no gradient for a tracked input"
        );
    }
}
