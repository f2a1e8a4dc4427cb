//! cxr in one dependency: the commands a user runs — train (then audit and report), the
//! pipeline, audit, report — as functions, the recipes behind them, and the `cxr`
//! binary.
//!
//! Key items:
//! - [`run`] carries out a [`cli::Command`]; [`pipeline`], [`train`], [`audit`] and
//!   [`report`] are the commands as functions returning their results.
//! - [`recipe`]: each model's recipe with the user's settings on top
//!   ([`recipe::train_config`]), checked before any data is read
//!   ([`recipe::validate`]), and the ResNet18 weights' hub fall-back policy
//!   ([`recipe::resnet_weights`]).
//! - [`load_data`]: the data from `--data`, `CXR_DATA_DIR`, `data/` or the official
//!   download.
//! - [`logging`]: `tracing` to stderr (`CXR_LOG` / `RUST_LOG`), progress bars on a
//!   terminal only.
//!
//! The crates under it, each usable alone: `cxr-data`, `cxr-kernels`, `cxr-models`,
//! `cxr-train`, `cxr-audit`, `cxr-metrics`, `cxr-runfolder`, `cxr-report`.
//!
//! What this crate does not do: compute anything itself. Training, auditing and
//! reporting are the crates' above; this one chains them.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod cli;
mod commands;
mod error;
pub mod logging;
pub mod recipe;

pub use commands::{
    LoadedData, audit, load_data, pipeline, report, report_if_diverged, run, run_options, runs_dir,
    timestamp, train,
};
pub use error::{CxrError, Result};

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
