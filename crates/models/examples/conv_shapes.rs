//! Times the CPU fast path's convolution on each of ResNet18's convolution shapes —
//! forward, and the backward split into its gradients — at one input size and batch.
//! `cargo run --release -p cxr-models --example conv_shapes -- [SIZE] [BATCH] [REPEATS]`
//! (defaults 64 px, batch 32, 5 repeats; the fastest repeat, in ms). The count column is how many
//! convolutions of that shape one ResNet18 forward has; the 3×3 stride-1 shapes come
//! again (count 0, not in the total) through the Winograd op. A fourth argument keeps only
//! the shape of that name (for profiling one shape).

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use cxr_models::{conv2d_cpu, conv3x3_winograd};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .take(3)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let size = args.first().copied().unwrap_or(64);
    let batch = args.get(1).copied().unwrap_or(32);
    let repeats = args.get(2).copied().unwrap_or(5).max(1);
    let only = std::env::args().nth(4);
    let dev = Device::Cpu;
    let s = |d: usize| size.div_ceil(d);
    // (name, count, c_in, c_out, k, stride, pad, input size)
    let shapes = [
        ("stem 7x7/2", 1, 3, 64, 7, 2, 3, size),
        ("layer1 3x3", 4, 64, 64, 3, 1, 1, s(4)),
        ("layer2 3x3/2", 1, 64, 128, 3, 2, 1, s(4)),
        ("layer2 1x1/2", 1, 64, 128, 1, 2, 0, s(4)),
        ("layer2 3x3", 3, 128, 128, 3, 1, 1, s(8)),
        ("layer3 3x3/2", 1, 128, 256, 3, 2, 1, s(8)),
        ("layer3 1x1/2", 1, 128, 256, 1, 2, 0, s(8)),
        ("layer3 3x3", 3, 256, 256, 3, 1, 1, s(16)),
        ("layer4 3x3/2", 1, 256, 512, 3, 2, 1, s(16)),
        ("layer4 1x1/2", 1, 256, 512, 1, 2, 0, s(16)),
        ("layer4 3x3", 3, 512, 512, 3, 1, 1, s(32)),
    ];
    println!("ResNet18 convolutions at {size} px, batch {batch}: best of {repeats}, ms");
    println!(
        "{:18} {:>3} {:>9} {:>9} {:>9} {:>9}",
        "shape", "n", "forward", "bwd all", "bwd dW", "total×n"
    );
    let mut sum = 0.0;
    // The 3×3 stride-1 shapes once more through the Winograd op (whether or not
    // `Conv2d` would pick it for them).
    let wino = shapes
        .iter()
        .filter(|s| s.4 == 3 && s.5 == 1)
        .map(|&(name, _, ci, co, k, stride, pad, hw)| (name, 0, ci, co, k, stride, pad, hw));
    let shapes: Vec<_> = shapes.iter().copied().chain(wino).collect();
    for (name, count, ci, co, k, stride, pad, hw) in shapes {
        let winograd = count == 0;
        let label = if winograd {
            format!("{name} wino")
        } else {
            name.to_string()
        };
        if only.as_ref().is_some_and(|o| label != *o) {
            continue;
        }
        let conv = |x: &Tensor, w: &Tensor| {
            if winograd {
                conv3x3_winograd(x, w)
            } else {
                conv2d_cpu(x, w, None, pad, stride)
            }
        };
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (batch, ci, hw, hw), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.05, (co, ci, k, k), &dev)?)?;
        let xc = x.as_tensor().detach();
        let (mut fwd, mut all, mut dw) = (vec![], vec![], vec![]);
        for rep in 0..=repeats {
            let t0 = Instant::now();
            let y = conv(x.as_tensor(), w.as_tensor())?;
            let t1 = Instant::now();
            let r = y.ones_like()?;
            let loss = (y * &r)?.sum_all()?;
            let t2 = Instant::now();
            let _g = loss.backward()?;
            let t3 = Instant::now();
            let y = conv(&xc, w.as_tensor())?;
            let loss = (y * &r)?.sum_all()?;
            let t4 = Instant::now();
            let _g = loss.backward()?;
            let t5 = Instant::now();
            if rep > 0 {
                let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
                fwd.push(ms(t0, t1));
                all.push(ms(t2, t3));
                dw.push(ms(t4, t5));
            }
        }
        let med = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[0]
        };
        let (f, a, d) = (med(fwd), med(all), med(dw));
        sum += (f + a) * count as f64;
        println!(
            "{label:18} {count:>3} {f:9.2} {a:9.2} {d:9.2} {:9.2}",
            (f + a) * count as f64
        );
    }
    println!("all convolutions, forward + backward: {sum:.1} ms");
    Ok(())
}
