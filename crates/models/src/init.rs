use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{CnnConfig, RESNET18_FEATURES, ResNet18, ResNetConfig, Result, SeedCnn, TensorRole};

/// Draws `n` values from U(−1/√fan_in, 1/√fan_in): PyTorch's default initialisation
/// for `nn.Conv2d` and `nn.Linear` weights (`kaiming_uniform_(a=√5)`) and biases.
pub fn torch_default_uniform(rng: &mut ChaCha8Rng, n: usize, fan_in: usize) -> Vec<f32> {
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * bound)
        .collect()
}

/// Fills `varmap` with freshly initialised [`SeedCnn`] weights drawn from a ChaCha8
/// stream seeded with `seed`, so the same seed gives bit-identical weights on every
/// machine and thread count. Existing entries with the same names are replaced.
pub fn init_seed_cnn(varmap: &VarMap, cfg: &CnnConfig, seed: u64, device: &Device) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
    for (name, shape, fan_in) in SeedCnn::parameter_shapes(cfg) {
        let n: usize = shape.iter().product();
        let vals = torch_default_uniform(&mut rng, n, fan_in);
        let t = Tensor::from_vec(vals, shape, device)?;
        data.insert(name, Var::from_tensor(&t)?);
    }
    Ok(())
}

/// Draws `n` values from N(0, std²) with the Box–Muller transform on a ChaCha stream.
pub fn normal(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // u1 in (0, 1] so ln(u1) is finite
        let u1 = 1.0 - rng.random::<f64>();
        let u2 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let t = std::f64::consts::TAU * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// Fills `varmap` with a freshly initialised [`ResNet18`] (every tensor of
/// [`ResNet18::tensor_specs`]) drawn from a ChaCha8 stream seeded with `seed`, as
/// torchvision initialises `resnet18(weights=None)`: convolutions Kaiming-normal with
/// `mode="fan_out"` (std √(2 / (out·k·k))), BatchNorm weight 1 and bias 0, running
/// mean 0 and variance 1, and `fc` PyTorch's default uniform U(±1/√512). Same seed,
/// bit-identical weights. Existing entries with the same names are replaced.
pub fn init_resnet18(
    varmap: &VarMap,
    cfg: &ResNetConfig,
    seed: u64,
    device: &Device,
) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut data = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("VarMap lock poisoned".into()))?;
    for spec in ResNet18::tensor_specs(cfg) {
        let n: usize = spec.shape.iter().product();
        let leaf = spec.name.rsplit('.').next().unwrap_or("");
        let vals = match (spec.role, leaf) {
            (TensorRole::BodyConv, _) => {
                let fan_out = spec.shape[0] * spec.shape[2] * spec.shape[3];
                normal(&mut rng, n, (2.0 / fan_out as f64).sqrt())
            }
            (TensorRole::Head, _) => torch_default_uniform(&mut rng, n, RESNET18_FEATURES),
            (_, "weight" | "running_var") => vec![1.0; n],
            _ => vec![0.0; n],
        };
        let t = Tensor::from_vec(vals, spec.shape, device)?;
        data.insert(spec.name, Var::from_tensor(&t)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights_other_seed_differs() {
        let cfg = CnnConfig::default();
        let a = VarMap::new();
        let b = VarMap::new();
        let c = VarMap::new();
        init_seed_cnn(&a, &cfg, 7, &Device::Cpu).unwrap();
        init_seed_cnn(&b, &cfg, 7, &Device::Cpu).unwrap();
        init_seed_cnn(&c, &cfg, 8, &Device::Cpu).unwrap();
        let get = |m: &VarMap| -> Vec<f32> {
            m.data().lock().unwrap()["conv2.weight"]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(get(&a), get(&b));
        assert_ne!(get(&a), get(&c));
        let w = get(&a);
        let bound = 1.0 / (32.0f32 * 9.0).sqrt();
        assert!(w.iter().all(|v| v.abs() <= bound));
    }

    #[test]
    fn normal_draws_have_the_right_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let v = normal(&mut rng, 200_001, 0.5);
        assert_eq!(v.len(), 200_001);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        // standard errors: 0.5/√n ≈ 0.0011 for the mean, ≈ 0.0008 for the variance
        assert!(mean.abs() < 0.006, "mean {mean}");
        assert!((var - 0.25).abs() < 0.004, "variance {var}");
    }

    #[test]
    fn resnet18_init_like_torchvision_and_seeded() {
        let cfg = ResNetConfig::default();
        let a = VarMap::new();
        let b = VarMap::new();
        init_resnet18(&a, &cfg, 5, &Device::Cpu).unwrap();
        init_resnet18(&b, &cfg, 5, &Device::Cpu).unwrap();
        let get = |m: &VarMap, k: &str| -> Vec<f32> {
            m.data().lock().unwrap()[k]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(
            get(&a, "layer3.1.conv2.weight"),
            get(&b, "layer3.1.conv2.weight")
        );
        assert_eq!(get(&a, "fc.weight"), get(&b, "fc.weight"));
        // Kaiming normal, fan_out = 256·3·3: std √(2/2304)
        let w = get(&a, "layer3.1.conv2.weight");
        let std = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
        let want = (2.0f32 / 2304.0).sqrt();
        assert!((std / want - 1.0).abs() < 0.01, "std {std} vs {want}");
        assert!(
            get(&a, "layer2.0.downsample.1.weight")
                .iter()
                .all(|&v| v == 1.0)
        );
        assert!(get(&a, "bn1.bias").iter().all(|&v| v == 0.0));
        assert!(
            get(&a, "layer4.1.bn2.running_var")
                .iter()
                .all(|&v| v == 1.0)
        );
        assert!(
            get(&a, "layer4.1.bn2.running_mean")
                .iter()
                .all(|&v| v == 0.0)
        );
        let bound = 1.0 / 512f32.sqrt();
        assert!(get(&a, "fc.weight").iter().all(|v| v.abs() <= bound));
        assert_eq!(a.data().lock().unwrap().len(), 102);
    }
}
