//! The fused Winograd block (`conv3x3_relu_max_pool2d`) against candle's convolution
//! followed by ReLU and the max-pool: exactly equal values and gradients on data where
//! both are exact (so window ties and ReLU cuts must be routed the same way), and within
//! rounding on random data; odd, non-square and tiny maps, batches that do not fill a
//! lane group of 16, batch 1. The plain Winograd convolution (`conv3x3_winograd`) against
//! candle's convolution the same way, and through `Conv2d` where it picks it.

use candle_core::Module;
use candle_core::{Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cxr_models::{
    Conv2d, conv2d_candle, conv3x3_relu_max_pool2d, conv3x3_winograd, relu_max_pool2d,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One case: (batch, c_in, c_out, h, w).
type Case = (usize, usize, usize, usize, usize);

/// Fewer than 8 input channels run the direct variant, 8 or more Winograd's GEMMs.
const CASES: [Case; 9] = [
    (20, 1, 32, 28, 28),
    (17, 2, 5, 7, 9),
    (16, 8, 16, 14, 14),
    (17, 8, 8, 7, 7),
    (33, 9, 12, 6, 9),
    (8, 8, 8, 2, 2),
    (1, 3, 4, 5, 5),
    (20, 16, 24, 3, 8),
    (3, 32, 64, 14, 14),
];

fn tensor(v: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Values `j / den` with `j` uniform in `-span..=span`: sums of their products are exact
/// in `f32` at these sizes, whichever way they are computed.
fn dyadic(rng: &mut ChaCha8Rng, shape: &[usize], span: i32, den: f32) -> Tensor {
    let n: usize = shape.iter().product();
    tensor(
        (0..n)
            .map(|_| rng.random_range(-span..=span) as f32 / den)
            .collect(),
        shape,
    )
}

fn uniform(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    tensor(
        (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect(),
        shape,
    )
}

/// Asserts each named result equal to the reference's, value for value.
fn assert_equal(case: Case, names: &[&str], got: &[Vec<f32>], want: &[Vec<f32>]) {
    for (name, (f, p)) in names.iter().zip(got.iter().zip(want)) {
        let bad: Vec<usize> = (0..f.len()).filter(|&i| f[i] != p[i]).collect();
        assert!(
            f.len() == p.len() && bad.is_empty(),
            "{name} of {case:?}: {} of {} values differ, first at {:?}: {:?} vs {:?}",
            bad.len(),
            p.len(),
            bad.first(),
            bad.first().map(|&i| f[i]),
            bad.first().map(|&i| p[i])
        );
    }
}

/// Asserts each named result within 2e-5 of the reference's largest magnitude (at
/// least 1): Winograd's transforms add a few roundings to sums of up to 9·C products.
fn assert_close(case: Case, names: &[&str], got: &[Vec<f32>], want: &[Vec<f32>]) {
    for (name, (f, p)) in names.iter().zip(got.iter().zip(want)) {
        let scale = p.iter().fold(1f32, |m, v| m.max(v.abs()));
        let err = f.iter().zip(p).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
        assert!(
            f.len() == p.len() && err <= 2e-5,
            "{name} of {case:?}: scaled error {err}"
        );
    }
}

/// The results [`conv_both`] returns.
const CONV_NAMES: [&str; 3] = ["forward", "grad x", "grad w"];

/// Forward values and the gradients of `sum(y ⊙ r)` for x, w, bias: fused and reference.
fn both(x: &Tensor, w: &Tensor, b: &Tensor, r: &Tensor) -> [[Vec<f32>; 4]; 2] {
    let (x, w, b) = (
        Var::from_tensor(x).unwrap(),
        Var::from_tensor(w).unwrap(),
        Var::from_tensor(b).unwrap(),
    );
    let fused = conv3x3_relu_max_pool2d(x.as_tensor(), w.as_tensor(), b.as_tensor()).unwrap();
    // ReLU + pool with PyTorch's rule (no gradient where the pre-activation is 0;
    // candle's own ReLU passes it there), itself checked against brute force.
    let plain = relu_max_pool2d(
        &conv2d_candle(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), 1, 1).unwrap(),
    )
    .unwrap();
    assert_eq!(fused.dims(), plain.dims());
    [fused, plain].map(|y| {
        let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
        let grad = |v: &Var| vec(g.get(v.as_tensor()).expect("gradient"));
        [vec(&y), grad(&x), grad(&w), grad(&b)]
    })
}

#[test]
fn fused_block_equals_conv_relu_pool_exactly_on_dyadic_data() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for (bn, c, k, h, w) in CASES {
        // Coarse values: many exact ties and exact zeros inside pool windows.
        let x = dyadic(&mut rng, &[bn, c, h, w], 4, 4.0);
        let wt = dyadic(&mut rng, &[k, c, 3, 3], 8, 8.0);
        let b = dyadic(&mut rng, &[k], 4, 8.0);
        let r = dyadic(&mut rng, &[bn, k, h / 2, w / 2], 4, 4.0);
        let [fused, plain] = both(&x, &wt, &b, &r);
        let names = ["forward", "grad x", "grad w", "grad bias"];
        assert_equal((bn, c, k, h, w), &names, &fused, &plain);
    }
}

#[test]
fn fused_block_matches_conv_relu_pool_within_rounding_on_random_data() {
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    for (bn, c, k, h, w) in CASES {
        let x = uniform(&mut rng, &[bn, c, h, w]);
        let wt = uniform(&mut rng, &[k, c, 3, 3]);
        let b = uniform(&mut rng, &[k]);
        let r = uniform(&mut rng, &[bn, k, h / 2, w / 2]);
        let [fused, plain] = both(&x, &wt, &b, &r);
        // Relative to the tensor's scale: Winograd's transforms add a few roundings to
        // sums of up to 9·C products. The gradients also depend on which element of each
        // window wins; on continuous data a change of winner by rounding is rare and would
        // show as a large error here.
        let names = ["forward", "grad x", "grad w", "grad bias"];
        assert_close((bn, c, k, h, w), &names, &fused, &plain);
    }
}

#[test]
fn fused_block_rejects_other_kernels_and_too_small_maps() {
    let x = tensor(vec![0.0; 2 * 3 * 5 * 5], &[2, 3, 5, 5]);
    let b = tensor(vec![0.0; 4], &[4]);
    let w5 = tensor(vec![0.0; 4 * 3 * 25], &[4, 3, 5, 5]);
    let err = conv3x3_relu_max_pool2d(&x, &w5, &b)
        .unwrap_err()
        .to_string();
    assert!(err.contains("3×3"), "{err}");
    let tiny = tensor(vec![0.0; 2 * 3], &[2, 3, 1, 1]);
    let w3 = tensor(vec![0.0; 4 * 3 * 9], &[4, 3, 3, 3]);
    let err = conv3x3_relu_max_pool2d(&tiny, &w3, &b)
        .unwrap_err()
        .to_string();
    assert!(err.contains("smaller than one 2×2 pool window"), "{err}");
    let b3 = tensor(vec![0.0; 3], &[3]);
    let err = conv3x3_relu_max_pool2d(&x, &w3, &b3)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bias has 3 values for 4"), "{err}");
}

/// Plain-convolution cases (batch, c_in, c_out, h, w), all maps even: partial and several
/// lane groups, batch 1, fewer than 8 channels, one tile, non-square maps.
const CONV_CASES: [Case; 8] = [
    (16, 8, 8, 8, 8),
    (17, 16, 24, 6, 10),
    (33, 12, 8, 4, 4),
    (1, 3, 5, 2, 2),
    (5, 64, 16, 16, 16),
    (20, 9, 7, 2, 6),
    (32, 32, 32, 8, 8),
    (2, 1, 1, 4, 2),
];

/// Values and the gradients of `sum(y ⊙ r)` for x and w: Winograd and candle's conv.
fn conv_both(x: &Tensor, w: &Tensor, r: &Tensor) -> [[Vec<f32>; 3]; 2] {
    let (x, w) = (Var::from_tensor(x).unwrap(), Var::from_tensor(w).unwrap());
    let wino = conv3x3_winograd(x.as_tensor(), w.as_tensor()).unwrap();
    let plain = conv2d_candle(x.as_tensor(), w.as_tensor(), None, 1, 1).unwrap();
    assert_eq!(wino.dims(), plain.dims());
    [wino, plain].map(|y| {
        let g = (&y * r).unwrap().sum_all().unwrap().backward().unwrap();
        let grad = |v: &Var| vec(g.get(v.as_tensor()).expect("gradient"));
        [vec(&y), grad(&x), grad(&w)]
    })
}

#[test]
fn winograd_conv_equals_conv_exactly_on_dyadic_data() {
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    for (bn, c, k, h, w) in CONV_CASES {
        let x = dyadic(&mut rng, &[bn, c, h, w], 4, 4.0);
        let wt = dyadic(&mut rng, &[k, c, 3, 3], 8, 8.0);
        let r = dyadic(&mut rng, &[bn, k, h, w], 4, 4.0);
        let [wino, plain] = conv_both(&x, &wt, &r);
        assert_equal((bn, c, k, h, w), &CONV_NAMES, &wino, &plain);
    }
}

#[test]
fn winograd_conv_matches_conv_within_rounding_on_random_data() {
    let mut rng = ChaCha8Rng::seed_from_u64(32);
    for (bn, c, k, h, w) in CONV_CASES {
        let x = uniform(&mut rng, &[bn, c, h, w]);
        let wt = uniform(&mut rng, &[k, c, 3, 3]);
        let r = uniform(&mut rng, &[bn, k, h, w]);
        let [wino, plain] = conv_both(&x, &wt, &r);
        // Relative to the tensor's scale: the transforms add a few roundings to sums of
        // up to 9·C products (sums over the batch for the weight gradient).
        assert_close((bn, c, k, h, w), &CONV_NAMES, &wino, &plain);
    }
}

/// Only the weight gradient when the input tracks none (the network's input).
#[test]
fn winograd_conv_skips_the_input_gradient_of_an_untracked_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(33);
    let x = dyadic(&mut rng, &[16, 8, 4, 4], 4, 4.0);
    let w = Var::from_tensor(&dyadic(&mut rng, &[8, 8, 3, 3], 8, 8.0)).unwrap();
    let g = conv3x3_winograd(&x, w.as_tensor())
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let want = conv2d_candle(&x, w.as_tensor(), None, 1, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        vec(g.get(w.as_tensor()).unwrap()),
        vec(want.get(w.as_tensor()).unwrap())
    );
    assert!(g.get(&x).is_none());
}

#[test]
fn winograd_conv_rejects_odd_maps_and_other_kernels() {
    let x = tensor(vec![0.0; 2 * 3 * 5 * 4], &[2, 3, 5, 4]);
    let w3 = tensor(vec![0.0; 4 * 3 * 9], &[4, 3, 3, 3]);
    let err = conv3x3_winograd(&x, &w3).unwrap_err().to_string();
    assert!(err.contains("odd height or width"), "{err}");
    let x = tensor(vec![0.0; 2 * 3 * 4 * 4], &[2, 3, 4, 4]);
    let w5 = tensor(vec![0.0; 4 * 3 * 25], &[4, 3, 5, 5]);
    let err = conv3x3_winograd(&x, &w5).unwrap_err().to_string();
    assert!(err.contains("3×3"), "{err}");
}

/// `Conv2d` takes the Winograd op for a bias-free 3×3 stride-1 layer on a full batch of
/// 8×8 maps (and the implicit-im2col op for the same layer on 4×4 maps): same values as
/// candle's convolution either way, within rounding.
#[test]
fn conv2d_layer_dispatch_matches_candle() {
    let mut rng = ChaCha8Rng::seed_from_u64(34);
    let mut varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
    let layer = Conv2d::new_no_bias(vb, 16, 16, 3, 1, 1).unwrap();
    varmap
        .set_one("weight", uniform(&mut rng, &[16, 16, 3, 3]))
        .unwrap();
    assert!(vec(layer.weight()).iter().any(|&v| v != 0.0));
    for hw in [8, 4] {
        let x = uniform(&mut rng, &[16, 16, hw, hw]);
        let got = vec(&layer.forward(&x).unwrap());
        let want = vec(&conv2d_candle(&x, layer.weight(), None, 1, 1).unwrap());
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale;
        assert!(err <= 2e-5, "{hw}×{hw}: scaled error {err}");
    }
}
