//! `cargo xtask`: cxr's one entry point for users and CI.
//!
//! - `pipeline`: the seed recipe over several seeds, each run folder plus a
//!   comparison (`summary.csv`, `summary.md`) and a report per run.
//! - `train`: one training run into a run folder.
//! - `report --run DIR`: rebuild `report.md`, `report.html`, `figures/` and
//!   `predictions.parquet` from a run (or pipeline) folder, without retraining.
//! - `report-check --run DIR`: render the report in headless Chromium and check that
//!   every image loaded.
//! - `audit --run DIR`: recompute a run folder's `audit/` from its weights, without
//!   retraining.
//! - `bench`: training and inference throughput, with PyTorch ratios when a
//!   `python3` with torch is available.
//! - `ci`: the checks CI runs, cheapest first: fmt, clippy, docs, tests, actionlint.
//! - `fuzz`: the cargo-fuzz targets of `fuzz/` (npz reader, image decoder, run-folder
//!   readers), each for `--seconds`, with a summary of executions and crashes.
//! - `cuda-build`: a `--features cuda` build on a machine without a GPU or CUDA
//!   install (nvcc and the CUDA libraries from PyPI).

mod bench;
mod cli;
mod cuda;
mod fuzz;
mod report_check;
mod tasks;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.verbose);
    match tasks::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}

fn init_tracing(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("CXR_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}
