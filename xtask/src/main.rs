//! `cargo xtask`: cxr's developer automation, and the user commands of the `cxr`
//! binary for a checkout (`pipeline`, `train`, `audit`, `report` run the `cxr` crate).
//!
//! - `report-check --run DIR`: render the report in headless Chromium and check that
//!   every image loaded.
//! - `bench`: training, inference and predict (PNG and DICOM folders) throughput, with
//!   PyTorch ratios when a `python3` with torch (and pydicom) is available.
//! - `ci`: the checks CI runs, cheapest first: fmt, clippy, docs, tests, actionlint.
//! - `fuzz`: the cargo-fuzz targets of `fuzz/` (npz reader, image decoder, DICOM
//!   reader, run-folder readers), each for `--seconds`, with a summary of executions and
//!   crashes.
//! - `cuda-build`: a `--features cuda` build on a machine without a GPU or CUDA
//!   install (nvcc and the CUDA libraries from PyPI).
//! - `gpu-check`: the CUDA binary and tests with the script a GPU machine runs (GPU
//!   tests, ResNet18 at 224 px against PyTorch, one table); `--rehearse` on the CPU.
#![forbid(unsafe_code)]

mod bench;
mod cli;
mod cuda;
mod fuzz;
mod gpu_check;
mod report_check;
mod tasks;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Command;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if matches!(cli.command, Command::User(_) | Command::Bench(_)) {
        cxr::logging::tune_process();
    }
    cxr::logging::init_tracing(cli.verbose);
    let result = match cli.command {
        Command::User(c) => cxr::run(checkout_defaults(*c)).map_err(anyhow::Error::from),
        Command::ReportCheck(a) => report_check::check(&a),
        Command::Bench(a) => bench::bench(&a),
        Command::Ci(a) => tasks::ci(&a),
        Command::CudaBuild(a) => cuda::cuda_build(&a),
        Command::GpuCheck(a) => gpu_check::gpu_check(&a),
        Command::Fuzz(a) => fuzz::fuzz(&a),
    };
    match result {
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

/// A checkout's pipeline shows the project's measured ablation (`docs/ablation.json`)
/// unless `--ablation` names another.
fn checkout_defaults(command: cxr::cli::Command) -> cxr::cli::Command {
    match command {
        cxr::cli::Command::Pipeline(mut a) => {
            let docs = tasks::project_root().join("docs").join("ablation.json");
            if a.ablation.is_none() && docs.is_file() {
                a.ablation = Some(docs);
            }
            cxr::cli::Command::Pipeline(a)
        }
        other => other,
    }
}
