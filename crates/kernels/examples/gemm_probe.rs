//! Times this crate's AVX-512 GEMM ([`cxr_kernels::sgemm_f32`], row-major operands) on one
//! `m × n × k` product: the fastest of 30 runs, in ms and GFLOP/s. Compare with
//! `torch.mm` of the same shape on the same machine.
//! `cargo run --release -p cxr-kernels --example gemm_probe -- M N K`

use std::time::Instant;

use cxr_kernels::{MatLayout, sgemm_f32};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dims: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let &[m, n, k] = dims.as_slice() else {
        return Err("usage: gemm_probe M N K".into());
    };
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut best = f64::MAX;
    for _ in 0..std::env::var("REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30)
    {
        let t = Instant::now();
        let c = sgemm_f32(m, n, k, &a, MatLayout::RowMajor, &b, MatLayout::RowMajor, n)
            .ok_or("the AVX-512 GEMM is not active on this CPU")?;
        std::hint::black_box(c);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let gflops = 2.0 * (m * n * k) as f64 / best / 1e9;
    println!("{m} × {n} × {k}: {:.3} ms, {gflops:.1} GFLOP/s", best * 1e3);
    Ok(())
}
