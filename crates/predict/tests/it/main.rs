//! Integration tests for cxr-predict: every input format gives the run's own test
//! probabilities, bad inputs give rows with reasons (or the documented errors), and the
//! probabilities agree with PyTorch's.

mod bad_inputs;
mod invariance;
mod torch;

use std::path::Path;

use cxr_runfolder::TrainConfig;

/// Trains the seed CNN for one epoch on `data` into `dir` (a few seconds).
pub fn train_cnn(data: &cxr_data::Dataset, dir: &Path) {
    let cfg = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    cxr_train::train(&cfg, data, dir, &cxr_train::RunOptions::default()).unwrap();
}

/// Options writing to `out`, with a small site-check bootstrap.
pub fn options(out: &Path) -> cxr_predict::PredictOptions {
    cxr_predict::PredictOptions {
        out: Some(out.to_path_buf()),
        site_resamples: 50,
        ..cxr_predict::PredictOptions::default()
    }
}
