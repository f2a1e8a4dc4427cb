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
    if matches!(
        cli.command,
        cli::Command::Train(_)
            | cli::Command::Pipeline(_)
            | cli::Command::Audit(_)
            | cli::Command::Bench(_)
    ) {
        tune_malloc();
    }
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

/// glibc's malloc settings for tensor work: every freed multi-megabyte buffer would
/// otherwise go back to the kernel and come back as fresh zeroed pages at the next
/// op (measured on ResNet18 at 64 px: 412k page faults per three steps, 0.8 s of
/// system time; with these, 129k and 0.3 s; see docs/performance.md). And candle's
/// spin limit for its own worker threads: by default a worker spins for 25 000 pauses
/// (about a millisecond) after each of candle's parallel element-wise ops, taking a
/// core from the rayon tasks of our custom ops that follow (seed-CNN step 6–10 %
/// slower on 2 cores). The variables are read once, at process start or at the
/// first op, so the process re-executes itself with them (same pid: `exec` replaces
/// the image). Set `CXR_MALLOC_TUNING=0` to opt out; a value already in the
/// environment is kept.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    use std::os::unix::process::CommandExt;
    const VARS: [(&str, &str); 4] = [
        ("MALLOC_MMAP_THRESHOLD_", "33554432"),
        ("MALLOC_TRIM_THRESHOLD_", "4294967296"),
        ("MALLOC_TOP_PAD_", "268435456"),
        ("CANDLE_BARRIER_POOL_SPIN_LIMIT", "200"),
    ];
    if std::env::var_os("CXR_MALLOC_TUNING").is_some() {
        return; // opted out, or already re-executed
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env("CXR_MALLOC_TUNING", "1");
    for (k, v) in VARS {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    // Only returns on failure; then run untuned.
    let err = cmd.exec();
    eprintln!("note: running without malloc tuning ({err})");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}
