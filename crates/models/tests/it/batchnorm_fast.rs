//! The fused CPU BatchNorm (with and without the ReLU, and with the residual add +
//! ReLU) against the same layer through candle's tensor ops: outputs, the gradients of
//! the input, `weight`, `bias` and the residual, and the running statistics, in
//! training and evaluation mode, on random shapes (batch 1 to 8, odd and even sizes,
//! 1 to 70 channels); and a convolution + BatchNorm as one op against the two.

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use cxr_models::{BatchNorm2d, Conv2d};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Relative tolerance: max |a − b| / max(1, max |b|). The two paths sum in different
/// orders (the fused one in f64 across planes) and fold the affine map differently.
const TOL: f32 = 1e-5;
/// Tolerance for the running statistics: both paths apply the same momentum update to
/// batch statistics that differ only by summation order.
const STATS_TOL: f32 = 1e-6;

fn vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn check(what: &str, a: &[f32], b: &[f32]) {
    check_tol(what, a, b, TOL);
}

fn check_tol(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale;
    assert!(err <= tol, "{what}: scaled max error {err} > {tol}");
}

/// A layer over a fresh VarMap holding the given `weight`, `bias` and running stats.
fn layer(params: &[Vec<f32>; 4]) -> (VarMap, BatchNorm2d) {
    let dev = Device::Cpu;
    let c = params[0].len();
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (name, v) in ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .zip(params)
        {
            let t = Tensor::from_vec(v.clone(), c, &dev).unwrap();
            data.insert(format!("bn.{name}"), Var::from_tensor(&t).unwrap());
        }
    }
    let bn = BatchNorm2d::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &dev).pp("bn"),
        c,
    )
    .unwrap();
    (varmap, bn)
}

fn get(varmap: &VarMap, name: &str) -> Tensor {
    varmap.data().lock().unwrap()[name].as_tensor().clone()
}

/// Values with a per-channel offset and scale, so that the statistics matter.
fn activations(rng: &mut ChaCha8Rng, (n, c, h, w): (usize, usize, usize, usize)) -> Vec<f32> {
    let offs: Vec<(f32, f32)> = (0..c)
        .map(|_| (rng.random_range(-3.0..3.0), rng.random_range(0.2..4.0)))
        .collect();
    (0..n * c * h * w)
        .map(|i| {
            let (o, s) = offs[(i / (h * w)) % c];
            o + s * (rng.random::<f32>() * 2.0 - 1.0)
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Act {
    None,
    Relu,
    AddRelu,
}

fn case(rng: &mut ChaCha8Rng, dims: (usize, usize, usize, usize), act: Act, train: bool) {
    let c = dims.1;
    let dev = Device::Cpu;
    let params = [
        (0..c)
            .map(|_| rng.random_range(0.5..1.5))
            .collect::<Vec<f32>>(),
        (0..c).map(|_| rng.random_range(-0.5..0.5)).collect(),
        (0..c).map(|_| rng.random_range(-1.0..1.0)).collect(),
        (0..c).map(|_| rng.random_range(0.5..2.0)).collect(),
    ];
    let xv = activations(rng, dims);
    let rv: Vec<f32> = (0..xv.len())
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let upstream: Vec<f32> = (0..xv.len())
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let upstream = Tensor::from_vec(upstream, dims, &dev).unwrap();
    let label = format!("{dims:?} {act:?} train={train}");

    let mut results = Vec::new();
    for fast in [true, false] {
        let (varmap, bn) = layer(&params);
        let x = Var::from_vec(xv.clone(), dims, &dev).unwrap();
        let r = Var::from_vec(rv.clone(), dims, &dev).unwrap();
        let (residual, relu) = match act {
            Act::None => (None, false),
            Act::Relu => (None, true),
            Act::AddRelu => (Some(r.as_tensor()), true),
        };
        let y = bn
            .forward_path(x.as_tensor(), residual, relu, train, fast)
            .unwrap();
        let grads = (&y * &upstream)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = |t: &Tensor| grads.get(t).map(vec);
        results.push((
            vec(&y),
            g(x.as_tensor()).expect("input gradient"),
            g(&get(&varmap, "bn.weight")).expect("weight gradient"),
            g(&get(&varmap, "bn.bias")).expect("bias gradient"),
            g(r.as_tensor()),
            vec(&get(&varmap, "bn.running_mean")),
            vec(&get(&varmap, "bn.running_var")),
        ));
        assert!(grads.get(&get(&varmap, "bn.running_mean")).is_none());
    }
    let (fast, plain) = (&results[0], &results[1]);
    check(&format!("{label} output"), &fast.0, &plain.0);
    check(&format!("{label} dx"), &fast.1, &plain.1);
    check(&format!("{label} dweight"), &fast.2, &plain.2);
    check(&format!("{label} dbias"), &fast.3, &plain.3);
    match (&fast.4, &plain.4) {
        (Some(a), Some(b)) => check(&format!("{label} dresidual"), a, b),
        (None, None) => assert!(!matches!(act, Act::AddRelu)),
        _ => panic!("{label}: residual gradient on one path only"),
    }
    check_tol(
        &format!("{label} running_mean"),
        &fast.5,
        &plain.5,
        STATS_TOL,
    );
    check_tol(
        &format!("{label} running_var"),
        &fast.6,
        &plain.6,
        STATS_TOL,
    );
    if train {
        assert_ne!(fast.5, params[2], "{label}: running mean not updated");
        assert_ne!(fast.6, params[3], "{label}: running var not updated");
    } else {
        assert_eq!(fast.5, params[2], "{label}: eval changed the running mean");
        assert_eq!(fast.6, params[3], "{label}: eval changed the running var");
    }
}

#[test]
fn fused_batchnorm_matches_candle_ops_on_random_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for i in 0..60 {
        let n = rng.random_range(1..=8);
        let c = rng.random_range(1..=70);
        let h = rng.random_range(1..=11);
        // at least two values per channel in every image
        let w = rng.random_range(if h == 1 { 2 } else { 1 }..=11);
        let act = [Act::None, Act::Relu, Act::AddRelu][i % 3];
        let train = i % 6 < 4;
        case(&mut rng, (n, c, h, w), act, train);
    }
}

/// Listed edge shapes: one image, 1×2 planes, one channel, and a ResNet-like layer.
#[test]
fn fused_batchnorm_matches_candle_ops_on_edge_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    for dims in [
        (1, 1, 1, 2),
        (1, 3, 2, 1),
        (2, 1, 1, 1),
        (8, 64, 9, 7),
        (4, 70, 1, 3),
    ] {
        for act in [Act::None, Act::Relu, Act::AddRelu] {
            for train in [true, false] {
                case(&mut rng, dims, act, train);
            }
        }
    }
}

/// Bad input is an error on the fused path too: wrong channel count, a residual of
/// another shape, one value per channel in training.
#[test]
fn fused_batchnorm_rejects_bad_input() {
    let (_, bn) = layer(&[vec![1.0; 2], vec![0.0; 2], vec![0.0; 2], vec![1.0; 2]]);
    let dev = Device::Cpu;
    let x = Tensor::zeros((2, 3, 2, 2), DType::F32, &dev).unwrap();
    assert!(bn.forward_path(&x, None, true, true, true).is_err());
    let x = Tensor::zeros((2, 2, 2, 2), DType::F32, &dev).unwrap();
    let r = Tensor::zeros((2, 2, 2, 1), DType::F32, &dev).unwrap();
    let err = bn
        .forward_path(&x, Some(&r), true, true, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("residual"), "{err}");
    let x = Tensor::zeros((1, 2, 1, 1), DType::F32, &dev).unwrap();
    let err = bn
        .forward_path(&x, None, false, true, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than one value"), "{err}");
    // eval with a single value per channel is fine
    assert!(bn.forward_path(&x, None, false, false, true).is_ok());
}

/// `forward_conv_t` (the convolution and the BatchNorm as one op on the fast path)
/// against the convolution's forward followed by the fused BatchNorm: the same kernels
/// in the same order, so output, running statistics and every gradient bit for bit; on
/// a Winograd shape, a stem-like 7×7/2 and a 1×1/2 shortcut without the ReLU, in
/// training and evaluation.
#[test]
fn conv_then_batchnorm_as_one_op_matches_the_two_ops() {
    let dev = Device::Cpu;
    let cases = [
        ((16, 8, 8, 8), (8, 3, 1, 1), true),
        ((2, 3, 13, 11), (6, 7, 3, 2), true),
        ((3, 4, 9, 9), (5, 1, 0, 2), false),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    for (dims, (co, k, pad, stride), relu) in cases {
        let wv: Vec<f32> = (0..co * dims.1 * k * k)
            .map(|_| rng.random_range(-0.3..0.3))
            .collect();
        let params = [
            (0..co)
                .map(|_| rng.random_range(0.5..1.5))
                .collect::<Vec<f32>>(),
            (0..co).map(|_| rng.random_range(-0.5..0.5)).collect(),
            (0..co).map(|_| rng.random_range(-1.0..1.0)).collect(),
            (0..co).map(|_| rng.random_range(0.5..2.0)).collect(),
        ];
        let xv = activations(&mut rng, dims);
        for train in [true, false] {
            let mut results = Vec::new();
            for fused in [true, false] {
                let (varmap, bn) = layer(&params);
                let w = Var::from_vec(wv.clone(), (co, dims.1, k, k), &dev).unwrap();
                varmap
                    .data()
                    .lock()
                    .unwrap()
                    .insert("conv.weight".into(), w.clone());
                let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
                let conv = Conv2d::new_no_bias(vb.pp("conv"), dims.1, co, k, pad, stride).unwrap();
                let x = Var::from_vec(xv.clone(), dims, &dev).unwrap();
                let y = if fused {
                    bn.forward_conv_t(&conv, x.as_tensor(), relu, train)
                        .unwrap()
                } else {
                    let c = conv.forward(x.as_tensor()).unwrap();
                    bn.forward_path(&c, None, relu, train, true).unwrap()
                };
                let r: Vec<f32> = (0..y.elem_count())
                    .map(|i| ((i * 5) % 11) as f32 - 5.0)
                    .collect();
                let r = Tensor::from_vec(r, y.dims(), &dev).unwrap();
                let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let g = |t: &Tensor| vec(grads.get(t).expect("a gradient"));
                results.push([
                    vec(&y),
                    g(x.as_tensor()),
                    g(w.as_tensor()),
                    g(&get(&varmap, "bn.weight")),
                    g(&get(&varmap, "bn.bias")),
                    vec(&get(&varmap, "bn.running_mean")),
                    vec(&get(&varmap, "bn.running_var")),
                ]);
            }
            let names = [
                "output",
                "dx",
                "dw",
                "dweight",
                "dbias",
                "running_mean",
                "running_var",
            ];
            for ((name, a), b) in names.iter().zip(&results[0]).zip(&results[1]) {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(a), bits(b), "{dims:?} train={train}: {name}");
            }
        }
    }
}
