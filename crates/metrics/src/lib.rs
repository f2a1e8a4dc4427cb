//! Binary-classifier metrics for cxr, on plain slices: labels `&[u8]` (0/1) and
//! scores or probabilities `&[f64]`.
//!
//! Key items:
//! - Threshold metrics: [`confusion`], [`Confusion`], [`binary_report`] /
//!   [`BinaryReport`] (the `val`/`test` objects of a run's `metrics.json`).
//! - Ranking: [`roc_auc`], [`roc_curve`], [`precision_recall_curve`],
//!   [`average_precision`] — each equal to scikit-learn's.
//! - Calibration: [`ece`] (top-label, Guo et al.), [`ece_pos`] (P(positive),
//!   torchmetrics), [`mce`], [`brier`], [`log_loss`], [`reliability_bins`];
//!   [`fit_temperature`] / [`apply_temperature`].
//! - Operating points: [`threshold_youden`], [`threshold_for_sensitivity`],
//!   [`operating_point`].
//! - Uncertainty: [`auc_ci_delong`], [`delong_test`], [`bootstrap_ci`], [`mean_std`].
//!
//! What this crate does not do: touch tensors, files or models; it depends on no
//! other cxr crate. Bad input (empty, mismatched lengths, labels outside {0, 1},
//! NaN/inf, one class where two are needed) is a [`MetricsError`], never a NaN.
#![warn(missing_docs)]

mod bootstrap;
mod calibration;
mod curves;
mod delong;
mod error;
mod operating;
mod temperature;
mod threshold;

pub use bootstrap::{BootstrapCi, BootstrapConfig, Interval, bootstrap_ci};
pub use calibration::{
    Binning, CalibrationKind, ReliabilityBin, brier, ece, ece_pos, log_loss, mce, reliability_bins,
};
pub use curves::{
    PrPoint, RocPoint, average_precision, precision_recall_curve, roc_auc, roc_curve,
};
pub use delong::{AucCi, DelongTest, auc_ci_delong, delong_test, normal_cdf};
pub use error::{MetricsError, Result};
pub use operating::{
    OperatingPoint, mean_std, operating_point, threshold_for_sensitivity, threshold_youden,
};
pub use temperature::{apply_temperature, fit_temperature, temperature_nll};
pub use threshold::{BinaryReport, Confusion, binary_report, confusion};
