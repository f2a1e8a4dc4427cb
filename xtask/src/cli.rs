use clap::{Parser, Subcommand};

/// cxr's developer tasks; the user commands (pipeline, train, audit, report) are the
/// `cxr` binary's, forwarded.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about)]
pub struct Cli {
    /// More log output (also: CXR_LOG=debug or RUST_LOG=debug).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The user commands (boxed: they hold every training and prediction flag).
    #[command(flatten)]
    User(Box<cxr::cli::Command>),
    /// Check a report.html in headless Chromium: screenshot, and every image loaded.
    /// Skips (exit 0, with a warning) when no Chromium is installed.
    ReportCheck(crate::report_check::ReportCheckArgs),
    /// Measure training and inference throughput (and PyTorch's, when available).
    Bench(crate::bench::BenchArgs),
    /// Run CI's checks: cargo fmt --check, clippy -D warnings, docs, the tests, and
    /// actionlint on the workflows when it is installed.
    Ci(crate::tasks::CiArgs),
    /// Fuzz the decoders and run-folder readers (cargo-fuzz targets in fuzz/), one
    /// target after another with one job each; needs `cargo install cargo-fuzz`.
    Fuzz(crate::fuzz::FuzzArgs),
    /// Build cxr with CUDA on a machine without a GPU: installs nvcc, the CUDA headers
    /// and libraries from PyPI into target/cuda-toolchain (or uses --cuda-root), then
    /// `cargo build --features cuda` into target/cuda.
    CudaBuild(crate::cuda::CudaBuildArgs),
    /// Build the CUDA binary and tests here (no GPU needed) with one prepared script
    /// that a GPU machine runs: the GPU tests, then ResNet18 at 224 px against PyTorch,
    /// one table. `--rehearse` runs the script here on the CPU, briefly.
    GpuCheck(crate::gpu_check::GpuCheckArgs),
}
