//! Probe: speed of pool variants and conv backward (not part of the build's API).
use std::time::Instant;

use candle_core::{Device, Tensor, Var};

fn time<F: FnMut() -> candle_core::Result<()>>(name: &str, mut f: F) -> candle_core::Result<()> {
    f()?;
    let t0 = Instant::now();
    for _ in 0..5 {
        f()?;
    }
    println!("{name}: {:.2} ms", t0.elapsed().as_secs_f64() * 1e3 / 5.0);
    Ok(())
}

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (64, 32, 28, 28), &dev)?)?;
    time("reshape-max fwd+bwd", || {
        let y = cxr_models::max_pool2d(x.as_tensor())
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        y.sum_all()?.backward()?;
        Ok(())
    })?;
    time("reshape-max fwd", || {
        let y = cxr_models::max_pool2d(x.as_tensor())
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        y.sum_all()?;
        Ok(())
    })?;
    time("candle max_pool2d fwd+bwd", || {
        let y = x.as_tensor().max_pool2d(2)?;
        y.sum_all()?.backward()?;
        Ok(())
    })?;
    let w = Var::from_tensor(&Tensor::randn(0f32, 0.1, (64, 32, 3, 3), &dev)?)?;
    time("conv 32->64 fwd+bwd", || {
        let y = x.as_tensor().conv2d(w.as_tensor(), 1, 1, 1, 1)?;
        y.sum_all()?.backward()?;
        Ok(())
    })?;
    time("conv 32->64 fwd", || {
        let y = x.as_tensor().conv2d(w.as_tensor(), 1, 1, 1, 1)?;
        y.sum_all()?;
        Ok(())
    })?;
    Ok(())
}
