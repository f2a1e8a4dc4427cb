//! `cargo xtask fuzz`: runs the cargo-fuzz targets in `fuzz/` one after another, each
//! for a time budget with one job, and sums up seconds, executions and crashes.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use crate::tasks::{cargo, project_root};

/// The fuzz targets (binaries of the `fuzz/` crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FuzzTarget {
    /// The npz/npy reader (`cxr_data::load_npz_bytes`).
    Npz,
    /// One image file to pixels, as the image-folder loader decodes it.
    Image,
    /// The run-folder readers of `cargo xtask report` (metrics.json, predictions.csv,
    /// history.csv, config.json).
    RunFolder,
    /// One DICOM file to 8-bit gray frames (`cxr_data::decode_dicom_bytes`), each
    /// cropped and resized as the image-folder loader does.
    Dicom,
}

impl FuzzTarget {
    const ALL: [FuzzTarget; 4] = [
        FuzzTarget::Npz,
        FuzzTarget::Image,
        FuzzTarget::RunFolder,
        FuzzTarget::Dicom,
    ];

    fn name(self) -> &'static str {
        match self {
            FuzzTarget::Npz => "npz",
            FuzzTarget::Image => "image",
            FuzzTarget::RunFolder => "run_folder",
            FuzzTarget::Dicom => "dicom",
        }
    }
}

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Fuzz only this target (default: each in turn).
    #[arg(long, value_enum)]
    pub target: Option<FuzzTarget>,
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Sanitizer: `none` (fast; our crates forbid unsafe code) or `address`.
    #[arg(long, default_value = "none")]
    pub sanitizer: String,
}

/// One target's outcome.
struct Outcome {
    target: &'static str,
    seconds: f64,
    execs: Option<u64>,
    new_artifacts: Vec<PathBuf>,
}

/// Crash, timeout and out-of-memory inputs libFuzzer saved for `target`.
fn artifacts(fuzz_dir: &Path, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir.join("artifacts").join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// `cargo fuzz` must be installed; says how otherwise.
fn check_cargo_fuzz() -> Result<()> {
    let probe = Process::new(cargo())
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match probe {
        Ok(s) if s.success() => Ok(()),
        _ => bail!(
            "cargo-fuzz is not installed. Install it with `cargo install cargo-fuzz` (it builds \
             with stable Rust; `cargo xtask fuzz` sets RUSTC_BOOTSTRAP=1 for the nightly-only \
             flags it passes, or use a nightly toolchain). libFuzzer needs a C++ compiler \
             (Linux or macOS)."
        ),
    }
}

/// The number of executions libFuzzer reported (`-print_final_stats=1`).
fn parse_execs(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        l.strip_prefix("stat::number_of_executed_units:")
            .and_then(|v| v.trim().parse().ok())
    })
}

pub fn fuzz(a: &FuzzArgs) -> Result<()> {
    if a.seconds == 0 {
        bail!("--seconds: give at least 1");
    }
    check_cargo_fuzz()?;
    let fuzz_dir = project_root().join("fuzz");
    let targets: Vec<FuzzTarget> = match a.target {
        Some(t) => vec![t],
        None => FuzzTarget::ALL.to_vec(),
    };
    let mut outcomes = Vec::new();
    for t in targets {
        let name = t.name();
        let corpus = fuzz_dir.join("corpus").join(name);
        let seeds = fuzz_dir.join("seeds").join(name);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let before = artifacts(&fuzz_dir, name);
        eprintln!("==> fuzzing `{name}` for {} s (1 job)", a.seconds);
        let start = Instant::now();
        let out = Process::new(cargo())
            .current_dir(&fuzz_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .env("CARGO_TARGET_DIR", fuzz_dir.join("target"))
            .args(["fuzz", "run", "--sanitizer", &a.sanitizer, name])
            .arg(&corpus)
            .arg(&seeds)
            .args([
                "--",
                &format!("-max_total_time={}", a.seconds),
                "-print_final_stats=1",
                "-timeout=10",
                "-rss_limit_mb=2048",
            ])
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running cargo fuzz for `{name}`"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        // libFuzzer's progress goes to stderr; keep its tail visible.
        for line in log
            .lines()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            eprintln!("    {line}");
        }
        let new_artifacts: Vec<PathBuf> = artifacts(&fuzz_dir, name)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if !out.status.success() && new_artifacts.is_empty() {
            bail!(
                "cargo fuzz run {name} failed ({}) without a crash artifact:\n{}",
                out.status,
                log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
            );
        }
        outcomes.push(Outcome {
            target: name,
            seconds: start.elapsed().as_secs_f64(),
            execs: parse_execs(&log),
            new_artifacts,
        });
    }
    println!("target      seconds       execs  new crashes");
    for o in &outcomes {
        println!(
            "{:<10} {:>8.0} {:>11} {:>12}",
            o.target,
            o.seconds,
            o.execs.map_or("?".into(), |e| e.to_string()),
            o.new_artifacts.len()
        );
    }
    let found: Vec<&PathBuf> = outcomes.iter().flat_map(|o| &o.new_artifacts).collect();
    if !found.is_empty() {
        let list: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "fuzzing found {} failing input(s); reproduce with `cargo fuzz run <target> <file>`:\n  {}",
            found.len(),
            list.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_final_stats() {
        let log = "#1024\tpulse  cov: 10\nDone 5000 runs in 2 second(s)\n\
                   stat::number_of_executed_units: 5000\nstat::peak_rss_mb: 40\n";
        assert_eq!(parse_execs(log), Some(5000));
        assert_eq!(parse_execs("no stats"), None);
    }
}
