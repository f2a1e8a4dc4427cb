use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{CnnConfig, Result, SeedCnn};

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
}
