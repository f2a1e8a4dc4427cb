//! A run's model loaded once and applied to images as the run itself scored them.

use std::path::Path;

use candle_core::{DType, Device};
use cxr_data::{Batcher, BatcherConfig, ImageSet, Normalize};
use cxr_models::{Classifier, device_name, load_classifier, load_ensemble, parse_device};
use cxr_runfolder::ModelCard;
use tracing::warn;

use crate::{PredictError, Result};

/// A trained run's model with its card: gives the logits of images exactly as the
/// run's own evaluation computed them (same preprocessing, same batch size, so the
/// same floating-point sums).
pub struct Scorer {
    pub(crate) card: ModelCard,
    pub(crate) model: Box<dyn Classifier>,
    pub(crate) device: Device,
    pub(crate) batch_size: usize,
}

impl Scorer {
    /// Loads the model of `run_dir` (its `model.json`, or a card derived from an older
    /// run's files, and `model.safetensors`) onto `device` (`cpu`, `cuda[:N]`, `metal`,
    /// `auto`). `batch_size` `None`: the card's evaluation batch size.
    pub fn open(run_dir: &Path, device: &str, batch_size: Option<usize>) -> Result<Self> {
        let card = ModelCard::of_run(run_dir)?;
        if let Some(why) = &card.derived {
            warn!("{}: {why}", run_dir.display());
        }
        Self::with_card(run_dir, card, device, batch_size)
    }

    /// As [`Scorer::open`] with the card already read.
    pub(crate) fn with_card(
        run_dir: &Path,
        card: ModelCard,
        device: &str,
        batch_size: Option<usize>,
    ) -> Result<Self> {
        let batch_size = batch_size.unwrap_or(card.batch_size);
        if batch_size == 0 {
            return Err(PredictError::Setting {
                field: "batch-size".into(),
                reason: "must be at least 1".into(),
            });
        }
        let device = parse_device(device)?;
        let path = run_dir.join(&card.weights);
        let model: Box<dyn Classifier> = match &card.members {
            Some(members) => {
                let weights: Vec<f64> = members.iter().map(|m| m.weight).collect();
                Box::new(load_ensemble(
                    card.network.as_str(),
                    &path,
                    &weights,
                    &device,
                )?)
            }
            None => load_classifier(card.network.as_str(), &path, &device)?,
        };
        Ok(Self {
            card,
            model,
            device,
            batch_size,
        })
    }

    /// The model card.
    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The device, in words (`cpu`, `cuda:0`, …).
    pub fn device_name(&self) -> String {
        device_name(&self.device)
    }

    /// The normalisation the model was trained with.
    pub(crate) fn normalize(&self) -> Normalize {
        Normalize {
            mean: self.card.preprocess.normalize_mean,
            std: self.card.preprocess.normalize_std,
        }
    }

    /// The logits of `set`'s images, in order. The images are the card's source size
    /// (`preprocess.source_size`, what `cxr_data::read_input` gives); they are resized
    /// to the network's input size here when the two differ, as training did.
    pub fn logits(&self, set: &ImageSet) -> Result<Vec<f32>> {
        if set.is_empty() {
            return Ok(Vec::new());
        }
        let pre = &self.card.preprocess;
        if set.height != pre.source_size || set.width != pre.source_size {
            return Err(PredictError::Setting {
                field: "images".into(),
                reason: format!(
                    "{}×{} images given, the model card's source size is {}",
                    set.height, set.width, pre.source_size
                ),
            });
        }
        let resized;
        let set = if pre.input_size == pre.source_size {
            set
        } else {
            resized = set.resized(pre.input_size)?;
            &resized
        };
        let batcher = Batcher::new(
            set,
            BatcherConfig {
                batch_size: self.batch_size,
                shuffle: false,
                seed: 0,
                epoch: 0,
                augment: None,
                normalize: self.normalize(),
                limit: None,
                drop_last: false,
            },
            &self.device,
        )?;
        let mut out = Vec::with_capacity(set.len());
        for batch in batcher {
            let batch = batch?;
            let z = self.model.logits(&batch.x)?.detach();
            out.extend(z.to_dtype(DType::F32)?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}
