//! [`Ensemble`]: several trained networks of one kind scored as one classifier.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use crate::{Classifier, ModelError, Result, build_classifier};

/// The prefix of member `i`'s variables in an ensemble's weights file
/// (`member0.conv1.weight`, …).
pub fn member_prefix(i: usize) -> String {
    format!("member{i}")
}

/// Members of one network kind whose logits are combined as `Σ wᵢ zᵢ` (the weights
/// sum to 1: a weighted mean of logits).
///
/// Every member takes the same input (the same size and normalisation), so the
/// ensemble is a [`Classifier`] like its members: its feature map is the members'
/// feature maps side by side on the channel axis (`[N, Σ Cᵢ, h, w]`, which needs the
/// members' maps to be the same size — true for one network at one input size), and
/// its head applies each member's head to its channels and combines the logits. So
/// Grad-CAM of an ensemble is the Grad-CAM of its combined logit.
pub struct Ensemble {
    members: Vec<Box<dyn Classifier>>,
    weights: Vec<f64>,
    channels: Vec<usize>,
}

impl Ensemble {
    /// Combines `members` with `weights` (one each, non-negative, not all zero;
    /// normalised to sum to 1). `channels[i]` is member `i`'s feature channels.
    fn new(
        members: Vec<Box<dyn Classifier>>,
        weights: &[f64],
        channels: Vec<usize>,
    ) -> Result<Self> {
        let total: f64 = weights.iter().sum();
        if members.is_empty()
            || weights.len() != members.len()
            || weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
            || total <= 0.0
        {
            return Err(ModelError::Ensemble(format!(
                "needs one non-negative weight per member, not all zero \
                 ({} members, weights {weights:?})",
                members.len()
            )));
        }
        Ok(Self {
            members,
            weights: weights.iter().map(|w| w / total).collect(),
            channels,
        })
    }

    /// The members' weights (summing to 1).
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    fn combine(&self, logits: Vec<Tensor>) -> Result<Tensor> {
        let mut sum: Option<Tensor> = None;
        for (z, &w) in logits.into_iter().zip(&self.weights) {
            let z = z.affine(w, 0.0)?;
            sum = Some(match sum {
                None => z,
                Some(s) => (s + z)?,
            });
        }
        sum.ok_or_else(|| ModelError::Ensemble("no members".into()))
    }
}

impl Classifier for Ensemble {
    fn logits_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let z = self
            .members
            .iter()
            .map(|m| m.logits_t(x, train))
            .collect::<Result<Vec<_>>>()?;
        self.combine(z)
    }

    fn features(&self, x: &Tensor) -> Result<Tensor> {
        let f = self
            .members
            .iter()
            .map(|m| m.features(x))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&f, 1)?)
    }

    fn head(&self, features: &Tensor) -> Result<Tensor> {
        let mut start = 0;
        let mut z = Vec::with_capacity(self.members.len());
        for (m, &c) in self.members.iter().zip(&self.channels) {
            z.push(m.head(&features.narrow(1, start, c)?)?);
            start += c;
        }
        self.combine(z)
    }
}

/// Loads an ensemble of `weights.len()` networks `model` from the safetensors file
/// `path`, member `i`'s variables under [`member_prefix`]`(i)`, onto `device`; the
/// logits are combined with `weights`. Errors name the file.
pub fn load_ensemble(
    model: &str,
    path: &Path,
    weights: &[f64],
    device: &Device,
) -> Result<Ensemble> {
    let bad = |reason: String| ModelError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    let tensors = candle_core::safetensors::load(path, device).map_err(|e| bad(e.to_string()))?;
    let mut members = Vec::with_capacity(weights.len());
    let mut channels = Vec::with_capacity(weights.len());
    for i in 0..weights.len() {
        let prefix = format!("{}.", member_prefix(i));
        let own: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix(&prefix).map(|k| (k.to_string(), t.clone())))
            .collect();
        if own.is_empty() {
            return Err(bad(format!("no tensors of member {i} (`{prefix}*`)")));
        }
        let vb = VarBuilder::from_tensors(own, DType::F32, device);
        let net = build_classifier(model, vb).map_err(|e| match e {
            e @ ModelError::UnknownModel { .. } => e,
            e => bad(format!("member {i}: {e}")),
        })?;
        channels.push(feature_channels(model)?);
        members.push(net);
    }
    Ensemble::new(members, weights, channels).map_err(|e| bad(e.to_string()))
}

/// Channels of the feature map of the network `model`.
fn feature_channels(model: &str) -> Result<usize> {
    match model {
        "cnn" => Ok(crate::CnnConfig::default().channels[2]),
        "resnet18" => Ok(crate::RESNET18_FEATURES),
        other => Err(ModelError::UnknownModel {
            name: other.to_string(),
            known: crate::CLASSIFIERS.join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    fn cnn(seed: u64, dev: &Device) -> (Box<dyn Classifier>, HashMap<String, Tensor>) {
        let varmap = VarMap::new();
        crate::init_seed_cnn(&varmap, &crate::CnnConfig::default(), seed, dev).unwrap();
        let tensors: HashMap<String, Tensor> = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let net = build_classifier(
            "cnn",
            VarBuilder::from_tensors(tensors.clone(), DType::F32, dev),
        )
        .unwrap();
        (net, tensors)
    }

    #[test]
    fn logits_are_the_weighted_mean_and_the_head_reproduces_them() {
        let dev = Device::Cpu;
        let (a, ta) = cnn(1, &dev);
        let (b, tb) = cnn(2, &dev);
        let x = Tensor::randn(0f32, 1.0, (3, 1, 28, 28), &dev).unwrap();
        let za: Vec<f32> = a.logits(&x).unwrap().to_vec1().unwrap();
        let zb: Vec<f32> = b.logits(&x).unwrap().to_vec1().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let mut all = HashMap::new();
        for (i, t) in [ta, tb].into_iter().enumerate() {
            for (k, v) in t {
                all.insert(format!("{}.{k}", member_prefix(i)), v);
            }
        }
        candle_core::safetensors::save(&all, &path).unwrap();
        let e = load_ensemble("cnn", &path, &[1.0, 3.0], &dev).unwrap();
        assert_eq!(e.weights(), &[0.25, 0.75]);
        let z: Vec<f32> = e.logits(&x).unwrap().to_vec1().unwrap();
        let via_head: Vec<f32> = e.head(&e.features(&x).unwrap()).unwrap().to_vec1().unwrap();
        for i in 0..3 {
            let want = 0.25 * za[i] + 0.75 * zb[i];
            // f32 sums of two products: a few ulps.
            assert!(
                (z[i] - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{} {want}",
                z[i]
            );
            assert!((via_head[i] - z[i]).abs() <= 1e-5 * z[i].abs().max(1.0));
        }
        // A third member the file does not hold is named.
        let err = load_ensemble("cnn", &path, &[1.0, 1.0, 1.0], &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("member 2") && err.contains("m.safetensors"),
            "{err}"
        );
        assert!(load_ensemble("cnn", &path, &[0.0, 0.0], &dev).is_err());
    }
}
