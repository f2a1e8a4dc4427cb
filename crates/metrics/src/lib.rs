//! Binary-classifier metrics for cxr, on plain slices: labels `&[u8]` (0 or 1) and
//! scores, probabilities or logits `&[f64]`.
//!
//! Key items:
//! - Threshold metrics: [`confusion`] / [`Confusion`] (positive iff
//!   `p >= threshold`), [`binary_report`] / [`BinaryReport`] (the `val`/`test`
//!   objects of a run's `metrics.json`).
//! - Ranking, each equal to scikit-learn's: [`roc_auc`], [`roc_curve`],
//!   [`precision_recall_curve`], [`average_precision`].
//! - Calibration: [`ece`] (top-label confidence `max(p, 1 − p)` vs correctness,
//!   Guo et al. 2017), [`ece_pos`] (P(positive) vs label, torchmetrics'
//!   `BinaryCalibrationError`), [`mce`], [`brier`], [`log_loss`],
//!   [`reliability_bins`], with [`Binning`] (default 15 equal-width bins).
//! - Temperature scaling: [`fit_temperature`], [`apply_temperature`],
//!   [`temperature_nll`]; bias-corrected temperature scaling
//!   [`fit_bias_corrected_scaling`] / [`BiasCorrectedScaling`] (`σ(a·z + b)` by
//!   maximum likelihood, Alexandari et al. 2020: the calibrated probabilities
//!   average the fitted set's prevalence, as the label-shift EM needs).
//! - Operating points: [`threshold_youden`], [`threshold_for_sensitivity`],
//!   [`operating_point`] / [`OperatingPoint`].
//! - Uncertainty: [`auc_ci_delong`] and [`delong_test`] (Sun & Xu's fast DeLong),
//!   [`bootstrap_ci`] (stratified, seeded, parallel), [`mean_std`] for multi-seed
//!   summaries.
//! - Label shift (site check): [`em_prevalence`] (Saerens et al. 2002 EM
//!   estimate of an unlabelled set's prevalence from calibrated probabilities),
//!   [`estimate_prevalence`] / [`PrevalenceEstimate`] (with a seeded, parallel
//!   bootstrap interval and whether the training prevalence lies outside it),
//!   [`adapt_probability`] and [`adapt_threshold`] (Bayes' rule for a new prior),
//!   [`label_shift_test`] / [`LabelShiftTest`] (is the new set's score
//!   distribution a label-shifted mixture of the reference's? bootstrapped
//!   Kolmogorov–Smirnov, [`mixture_ks_statistic`]).
//! - Association (failure analysis): [`fisher_exact`] (two-sided, 2×2),
//!   [`cochran_armitage`] (trend in proportions), [`logistic_regression`] (one
//!   predictor, Wald CI and p-value), [`quantiles`] / [`quartile_edges`] /
//!   [`bucket_of`] for quartile bucketing.
//! - External validation (`cxr evaluate`): [`wilson_interval`] /
//!   [`ProportionCi`] (Wilson score interval for sensitivity, specificity,
//!   accuracy), [`mcnemar`] / [`McNemar`] (two models on the same items),
//!   [`auc_heterogeneity`] (Cochran's Q over subgroup AUCs with their DeLong
//!   variances) and [`proportion_heterogeneity`] (Pearson chi-square over subgroup
//!   proportions), both giving a [`Heterogeneity`]; [`chi2_sf`], the chi-square
//!   upper tail they use.
//!
//! What this crate does not do: touch tensors, files or models, apply a sigmoid to
//! logits for you (except [`apply_temperature`] and
//! [`BiasCorrectedScaling::apply`]), or handle more than two classes
//! or sample weights; it depends on no other cxr crate. Bad input — empty,
//! mismatched lengths, labels outside {0, 1}, NaN/±∞, probabilities outside
//! [0, 1], one class where two are needed — is a [`MetricsError`], never a NaN.
//! (The one NaN returned is the documented "no threshold" sentinel of the
//! precision–recall curve's last point.)
//!
//! ```
//! use cxr_metrics::{Binning, binary_report, ece, ece_pos, roc_auc};
//!
//! let labels = [0, 0, 1, 1, 1, 0];
//! let probs = [0.1, 0.4, 0.35, 0.8, 0.9, 0.2];
//! assert!((roc_auc(&labels, &probs)? - 8.0 / 9.0).abs() < 1e-15);
//! let report = binary_report(&labels, &probs, 0.5)?;
//! assert_eq!((report.tp, report.fp, report.tn, report.fn_), (2, 0, 3, 1));
//! // top-label vs positive-class calibration
//! let (top, pos) = (ece(&labels, &probs, Binning::default())?, ece_pos(&labels, &probs, Binning::default())?);
//! assert!(top >= 0.0 && pos >= 0.0);
//! # Ok::<(), cxr_metrics::MetricsError>(())
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod association;
mod bootstrap;
mod calibration;
mod curves;
mod delong;
mod error;
mod evaluation;
mod operating;
mod prior;
mod scaling;
mod shift;
mod special;
mod temperature;
mod threshold;

pub use association::{
    FisherExact, LogisticFit, TrendTest, Z_975, bucket_of, cochran_armitage, fisher_exact,
    logistic_regression, quantile, quantiles, quartile_edges,
};
pub use bootstrap::{BootstrapCi, BootstrapConfig, Interval, bootstrap_ci};
pub use calibration::{
    Binning, CalibrationKind, LOG_LOSS_EPS, MAX_BINS, ReliabilityBin, brier, ece, ece_pos,
    log_loss, mce, reliability_bins,
};
pub use curves::{
    PrPoint, RocPoint, average_precision, precision_recall_curve, roc_auc, roc_curve,
};
pub use delong::{AucCi, DelongTest, auc_ci_delong, delong_test, normal_cdf};
pub use error::{MetricsError, Result};
pub use evaluation::{
    Heterogeneity, McNemar, ProportionCi, auc_heterogeneity, mcnemar, proportion_heterogeneity,
    wilson_interval,
};
pub use operating::{
    OperatingPoint, mean_std, operating_point, threshold_for_sensitivity, threshold_youden,
};
pub use prior::{
    EM_MAX_ITERATIONS, EM_TOLERANCE, EmPrevalence, EmSettings, PrevalenceConfig,
    PrevalenceEstimate, adapt_probability, adapt_threshold, em_prevalence, estimate_prevalence,
};
pub use scaling::{BiasCorrectedScaling, fit_bias_corrected_scaling};
pub use shift::{LabelShiftTest, label_shift_test, mixture_ks_statistic};
pub use special::chi2_sf;
pub use temperature::{
    MAX_TEMPERATURE, MIN_TEMPERATURE, apply_temperature, fit_temperature, temperature_nll,
};
pub use threshold::{BinaryReport, Confusion, binary_report, confusion};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
