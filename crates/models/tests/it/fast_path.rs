//! The CPU fast paths against candle's plain ops and a direct reference (convolution)
//! and a brute-force reference (max-pool): values and every gradient, on listed and
//! random shapes including odd and non-square sizes, stride 1 and 2, padding 0 to 3,
//! batch 1, and 1×1 to 7×7 kernels.

use candle_core::{DType, Device, Tensor, Var};
use cxr_models::{conv2d_candle, conv2d_cpu, max_pool2d, relu_max_pool2d, set_cpu_sgemm};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Relative tolerance: max |a − b| / max(1, max |b|). f32 sums of up to a few hundred
/// products in a different order differ by a few ulps of the largest partial sum.
const TOL: f32 = 1e-5;

fn rand_tensor(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn check(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
    let (a, b) = (vec(a), vec(b));
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(&b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale;
    assert!(err <= TOL, "{what}: scaled max error {err} > {TOL}");
}

/// One case: (batch, c_in, c_out, h, w, kernel, stride, padding).
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

fn conv_case(rng: &mut ChaCha8Rng, case: Case) {
    let (b, ci, co, h, w, k, s, p) = case;
    let x = Var::from_tensor(&rand_tensor(rng, &[b, ci, h, w])).unwrap();
    let wt = Var::from_tensor(&rand_tensor(rng, &[co, ci, k, k])).unwrap();
    let bias = Var::from_tensor(&rand_tensor(rng, &[co])).unwrap();
    let fast = conv2d_cpu(x.as_tensor(), wt.as_tensor(), Some(bias.as_tensor()), p, s).unwrap();
    let slow = conv2d_candle(x.as_tensor(), wt.as_tensor(), Some(bias.as_tensor()), p, s).unwrap();
    check(&format!("{case:?} forward"), &fast, &slow);
    // A random upstream gradient: d(sum(y ⊙ r)).
    let r = rand_tensor(rng, slow.dims());
    let gf = (fast * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let gs = (slow * &r).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, v) in [("x", &x), ("w", &wt), ("bias", &bias)] {
        let a = gf.get(v.as_tensor()).expect("fast grad");
        let b = gs.get(v.as_tensor()).expect("candle grad");
        check(&format!("{case:?} grad {name}"), a, b);
    }
}

#[test]
fn conv_matches_candle_on_listed_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let cases: [Case; 10] = [
        (1, 1, 1, 5, 5, 3, 1, 1),
        (1, 1, 32, 28, 28, 3, 1, 1),
        (3, 4, 5, 7, 9, 3, 1, 0),
        (2, 3, 6, 9, 7, 3, 2, 1),
        (2, 3, 4, 8, 8, 3, 2, 0),
        (1, 2, 3, 11, 13, 7, 2, 3),
        (2, 5, 7, 6, 6, 1, 1, 0),
        (2, 5, 7, 7, 7, 1, 2, 0),
        (1, 3, 2, 4, 4, 5, 1, 2),
        (4, 6, 8, 3, 3, 3, 1, 1),
    ];
    for case in cases {
        conv_case(&mut rng, case);
    }
}

/// Direct (six nested loops, f64 accumulation) convolution of `x` `[b, ci, h, w]` with
/// `wt` `[co, ci, k, k]` and `bias`, and the gradients of `sum(y ⊙ r)`.
#[allow(clippy::too_many_arguments)]
fn conv_reference(
    x: &[f32],
    wt: &[f32],
    bias: &[f32],
    r: &[f32],
    case: Case,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (b, ci, co, h, w, k, s, p) = case;
    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let mut y = vec![0f64; b * co * ho * wo];
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; wt.len()];
    let mut db = vec![0f64; co];
    for n in 0..b {
        for o in 0..co {
            for oy in 0..ho {
                for ox in 0..wo {
                    let yi = ((n * co + o) * ho + oy) * wo + ox;
                    let mut acc = bias[o] as f64;
                    let g = r[yi] as f64;
                    db[o] += g;
                    for c in 0..ci {
                        for i in 0..k {
                            for j in 0..k {
                                let yy = (oy * s + i) as isize - p as isize;
                                let xx = (ox * s + j) as isize - p as isize;
                                if yy < 0 || xx < 0 || yy >= h as isize || xx >= w as isize {
                                    continue;
                                }
                                let xi = ((n * ci + c) * h + yy as usize) * w + xx as usize;
                                let wi = ((o * ci + c) * k + i) * k + j;
                                acc += x[xi] as f64 * wt[wi] as f64;
                                dx[xi] += g * wt[wi] as f64;
                                dw[wi] += g * x[xi] as f64;
                            }
                        }
                    }
                    y[yi] = acc;
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect();
    (f(y), f(dx), f(dw), f(db))
}

fn check_vec(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale;
    assert!(err <= TOL, "{what}: scaled max error {err} > {TOL}");
}

/// Random shapes (non-square, odd and even, stride 1–2, padding 0 to k/2 + 1) against
/// the direct reference: candle 0.11's own conv2d backward cannot serve here, it fails
/// on stride-2 inputs whose height and width leave different remainders.
#[test]
fn conv_matches_direct_reference_on_random_shapes() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for _ in 0..60 {
        let k = [1, 3, 5][rng.random_range(0..3)];
        let s = rng.random_range(1..=2);
        let p = rng.random_range(0..=k / 2 + 1);
        let h = rng.random_range(k.max(2)..12);
        let w = rng.random_range(k.max(2)..12);
        let case: Case = (
            rng.random_range(1..4),
            rng.random_range(1..5),
            rng.random_range(1..6),
            h,
            w,
            k,
            s,
            p,
        );
        direct_case(&mut rng, case);
    }
}

/// One case against [`conv_reference`]: the output and the three gradients of
/// `sum(y ⊙ r)` for a random `r`.
fn direct_case(rng: &mut ChaCha8Rng, case: Case) {
    let (b, ci, co, h, w, k, s, p) = case;
    let x = Var::from_tensor(&rand_tensor(rng, &[b, ci, h, w])).unwrap();
    let wt = Var::from_tensor(&rand_tensor(rng, &[co, ci, k, k])).unwrap();
    let bias = Var::from_tensor(&rand_tensor(rng, &[co])).unwrap();
    let y = conv2d_cpu(x.as_tensor(), wt.as_tensor(), Some(bias.as_tensor()), p, s).unwrap();
    let r = rand_tensor(rng, y.dims());
    let (want_y, want_dx, want_dw, want_db) = conv_reference(
        &vec(x.as_tensor()),
        &vec(wt.as_tensor()),
        &vec(bias.as_tensor()),
        &vec(&r),
        case,
    );
    check_vec(&format!("{case:?} forward"), &vec(&y), &want_y);
    let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, v, want) in [
        ("x", &x, &want_dx),
        ("w", &wt, &want_dw),
        ("bias", &bias, &want_db),
    ] {
        check_vec(
            &format!("{case:?} grad {name}"),
            &vec(g.get(v.as_tensor()).unwrap()),
            want,
        );
    }
}

/// Channel counts past the AVX-512 GEMM's 8×48 tile and its blocks (odd ones included;
/// the last two split both the kernel taps and the pixels into several k blocks of the
/// implicit-im2col packing, mid output row; the last is a stem-like 7×7/2 on a wide map, whose
/// output rows of 37 pixels are packed sixteen at a time from 32-value windows), with the GEMM on
/// and switched off (candle's matmul): both must match the direct
/// reference. Other tests of this binary may run meanwhile under either setting; both
/// are correct, so they are unaffected.
#[test]
fn conv_matches_direct_reference_with_and_without_the_avx512_gemm() {
    let cases: [Case; 9] = [
        (2, 32, 64, 14, 14, 3, 1, 1),
        (3, 17, 33, 7, 7, 3, 1, 1),
        (2, 9, 70, 9, 11, 3, 2, 1),
        (5, 40, 12, 5, 5, 3, 1, 0),
        (1, 3, 50, 15, 13, 5, 1, 2),
        (4, 64, 20, 3, 3, 1, 1, 0),
        (3, 40, 50, 13, 11, 3, 1, 1),
        (2, 36, 49, 33, 29, 3, 2, 1),
        (2, 3, 20, 9, 73, 7, 2, 3),
    ];
    for sgemm in [true, false] {
        set_cpu_sgemm(sgemm);
        let mut rng = ChaCha8Rng::seed_from_u64(14);
        for case in cases {
            direct_case(&mut rng, case);
        }
    }
    set_cpu_sgemm(true);
}

#[test]
fn conv_input_gradient_is_skipped_for_plain_inputs() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let x = rand_tensor(&mut rng, &[2, 1, 6, 6]);
    let wt = Var::from_tensor(&rand_tensor(&mut rng, &[3, 1, 3, 3])).unwrap();
    let y = conv2d_cpu(&x, wt.as_tensor(), None, 1, 1).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none());
    assert!(g.get(wt.as_tensor()).is_some());
}

/// Brute-force 2×2/stride-2 max-pool (floor mode) and its gradient for `sum(pool ⊙ r)`,
/// first maximum in row-major order, optional ReLU before the pool.
fn pool_reference(
    x: &[f32],
    (b, c, h, w): (usize, usize, usize, usize),
    r: &[f32],
    relu: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (ho, wo) = (h / 2, w / 2);
    let mut out = vec![0f32; b * c * ho * wo];
    let mut grad = vec![0f32; x.len()];
    for plane in 0..b * c {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut best = (0usize, f32::NEG_INFINITY);
                for dy in 0..2 {
                    for dx in 0..2 {
                        let i = plane * h * w + (2 * oy + dy) * w + 2 * ox + dx;
                        let v = if relu { x[i].max(0.0) } else { x[i] };
                        if v > best.1 {
                            best = (i, v);
                        }
                    }
                }
                let o = plane * ho * wo + oy * wo + ox;
                out[o] = best.1;
                if !relu || x[best.0] > 0.0 {
                    grad[best.0] += r[o];
                }
            }
        }
    }
    (out, grad)
}

#[test]
fn pools_match_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    for (b, c, h, w) in [(1, 1, 2, 2), (2, 3, 7, 7), (1, 2, 8, 5), (3, 1, 9, 12)] {
        for relu in [false, true] {
            let x = Var::from_tensor(&rand_tensor(&mut rng, &[b, c, h, w])).unwrap();
            let y = if relu {
                relu_max_pool2d(x.as_tensor()).unwrap()
            } else {
                max_pool2d(x.as_tensor()).unwrap()
            };
            let r = rand_tensor(&mut rng, y.dims());
            let (want, want_grad) =
                pool_reference(&vec(x.as_tensor()), (b, c, h, w), &vec(&r), relu);
            assert_eq!(vec(&y), want, "pool values {b}x{c}x{h}x{w} relu={relu}");
            let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let got = vec(g.get(x.as_tensor()).unwrap());
            assert_eq!(got, want_grad, "pool grad {b}x{c}x{h}x{w} relu={relu}");
        }
    }
}

#[test]
fn fused_block_equals_plain_block() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let x = rand_tensor(&mut rng, &[2, 1, 12, 12]);
    let wt = rand_tensor(&mut rng, &[4, 1, 3, 3]);
    let on = relu_max_pool2d(&conv2d_cpu(&x, &wt, None, 1, 1).unwrap()).unwrap();
    let off = max_pool2d(&conv2d_candle(&x, &wt, None, 1, 1).unwrap().relu().unwrap()).unwrap();
    check("fast vs plain network block", &on, &off);
    assert_eq!(on.dtype(), DType::F32);
}
