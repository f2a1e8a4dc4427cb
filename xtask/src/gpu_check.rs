//! `cargo xtask gpu-check`: builds, on this machine (no GPU needed), what a GPU machine
//! runs to check cxr on CUDA, and one prepared script that runs it there.
//!
//! The bundle (default `target/gpu-check/`): `cxr` (release, `--features cuda`),
//! `train-tests` (cxr-train's integration tests with the same features: the CUDA parity
//! and ResNet18 step tests, short CUDA runs), `torch_resnet18.py` (the PyTorch peer) and
//! `run.sh` (the check: the GPU tests with `CXR_REQUIRE_GPU=cuda`, then ResNet18 at
//! 224 px for 5 epochs in cxr and in PyTorch on the same GPU, then one table). Binaries
//! are stripped, so that the bundle can be carried to the GPU machine.
//!
//! `--rehearse` builds the same bundle without CUDA and runs `run.sh` here on the CPU
//! with a short setting: the script, the binaries' command lines and the table are
//! exercised before a GPU machine's time is spent on them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cuda::{Toolkit, ToolkitArgs, toolkit};
use crate::tasks::{cargo, project_root};

/// The check the bundle runs on the GPU machine.
const RUN_SH: &str = include_str!("gpu_check.sh");

#[derive(Debug, Args)]
pub struct GpuCheckArgs {
    /// Where the bundle goes (default `<target>/gpu-check`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Build for the CPU (debug profile, no CUDA) and run the bundle's script here with a
    /// short setting (1 epoch, 32 px, 256 images), to check it without a GPU (with
    /// `--python`'s torch as the peer).
    #[arg(long)]
    pub rehearse: bool,
    #[command(flatten)]
    pub kit: ToolkitArgs,
}

pub fn gpu_check(a: &GpuCheckArgs) -> Result<()> {
    let started = Instant::now();
    let root = project_root();
    let target = std::path::absolute(
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target")),
    )?;
    let out = std::path::absolute(a.out.clone().unwrap_or_else(|| target.join("gpu-check")))?;

    // The CUDA build goes to a target folder of its own, as with `cuda-build`.
    let (builder, target_dir, profile, features): (Builder, PathBuf, &str, &[&str]) = if a.rehearse
    {
        (Builder::Cpu, target.clone(), "debug", &[])
    } else {
        let kit = toolkit(&a.kit)?;
        eprintln!(
            "==> CUDA root {} ({})",
            kit.root.display(),
            kit.nvcc_version
        );
        (
            Builder::Cuda(kit, a.kit.compute_cap.clone()),
            target.join("cuda"),
            "release",
            &["--features", "cuda"],
        )
    };
    let profile_args: &[&str] = if profile == "release" {
        &["--release"]
    } else {
        &[]
    };
    let target_arg = target_dir.display().to_string();

    let mut build = builder.cargo()?;
    build
        .current_dir(&root)
        .args(["build", "--package", "cxr", "--bin", "cxr"])
        .args(features)
        .args(profile_args)
        .args(["--target-dir", &target_arg]);
    eprintln!(
        "==> cargo build -p cxr ({profile}{})",
        features_note(features)
    );
    run(build, "building cxr")?;

    let mut tests = builder.cargo()?;
    tests
        .current_dir(&root)
        .args(["test", "--package", "cxr-train", "--test", "it", "--no-run"])
        .args(features)
        .args(profile_args)
        .args([
            "--target-dir",
            &target_arg,
            "--message-format",
            "json-render-diagnostics",
        ])
        .stdout(Stdio::piped());
    eprintln!(
        "==> cargo test -p cxr-train --test it --no-run ({profile}{})",
        features_note(features)
    );
    let test_exe = test_executable(tests)?;

    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let binary = target_dir.join(profile).join("cxr");
    copy_stripped(&binary, &out.join("cxr"))?;
    copy_stripped(&test_exe, &out.join("train-tests"))?;
    compress(&out.join("cxr"))?;
    compress(&out.join("train-tests"))?;
    let peer = root.join("bench").join("torch_resnet18.py");
    std::fs::copy(&peer, out.join("torch_resnet18.py"))
        .with_context(|| format!("copying {}", peer.display()))?;
    let script = out.join("run.sh");
    let tmp = out.join(".run.sh.tmp");
    std::fs::write(&tmp, RUN_SH).with_context(|| format!("writing {}", tmp.display()))?;
    set_executable(&tmp)?;
    std::fs::rename(&tmp, &script).with_context(|| format!("writing {}", script.display()))?;
    eprintln!(
        "==> bundle in {} ({:.0} s)",
        out.display(),
        started.elapsed().as_secs_f64()
    );

    if a.rehearse {
        let results = out.join("rehearsal");
        let mut rehearsal = Process::new("bash");
        // run.sh looks for shared/ three folders above itself, which holds for the default
        // `target/gpu-check` only; name the checkout's ../shared for any `--out`.
        let shared = root.parent().unwrap_or(&root).join("shared");
        for (var, sub) in [("CXR_DATA_DIR", "data"), ("CXR_FIXTURES", "fixtures")] {
            if std::env::var_os(var).is_none() {
                rehearsal.env(var, shared.join(sub));
            }
        }
        let status = rehearsal
            .arg(&script)
            .args([
                "--device",
                "cpu",
                "--epochs",
                "1",
                "--image-size",
                "32",
                "--limit",
                "256",
            ])
            .arg("--out")
            .arg(&results)
            .env("PYTHON", &a.kit.python)
            .status()
            .context("running bash")?;
        if !status.success() {
            bail!(
                "the rehearsal of {} failed ({status}); its logs are in {}",
                script.display(),
                results.display()
            );
        }
        println!(
            "rehearsal passed: {}",
            results.join("gpu-check.md").display()
        );
    } else {
        println!(
            "GPU check bundle: {dir}\n\
             on a GPU machine (NVIDIA driver >= 580, PyTorch with CUDA 13 wheels, python3), \
             with the checkout's ../shared beside it or CXR_DATA_DIR / CXR_FIXTURES set:\n  \
             bash {dir}/run.sh --out RESULTS   # about 8 minutes; prints the table",
            dir = out.display()
        );
    }
    Ok(())
}

/// How cargo is run: plainly (the CPU rehearsal) or with a CUDA toolkit and compute
/// capability.
enum Builder {
    Cpu,
    Cuda(Toolkit, String),
}

impl Builder {
    fn cargo(&self) -> Result<Process> {
        match self {
            Self::Cpu => Ok(Process::new(cargo())),
            Self::Cuda(kit, cap) => kit.cargo(cap),
        }
    }
}

fn features_note(features: &[&str]) -> String {
    if features.is_empty() {
        String::new()
    } else {
        format!(", {}", features.join(" "))
    }
}

fn run(mut cmd: Process, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("running cargo ({what})"))?;
    if !status.success() {
        bail!("{what} failed ({status}); see cargo's output above");
    }
    Ok(())
}

/// Runs `cargo test --no-run --message-format json…` and returns the test binary it
/// built (the one artifact with an `executable`).
fn test_executable(mut cmd: Process) -> Result<PathBuf> {
    let mut child = cmd.spawn().context("running cargo (building the tests)")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut exe = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's messages")?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && let Some(path) = msg["executable"].as_str()
        {
            exe = Some(PathBuf::from(path));
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("building the tests failed ({status}); see cargo's output above");
    }
    exe.context("cargo built no test executable for cxr-train's `it`")
}

/// Copies `from` to `to` and strips its symbols when `strip` is installed (a CUDA
/// build's binary is about 150 MB with them, 57 MB without); a plain copy otherwise.
fn copy_stripped(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    match Process::new("strip").arg(to).status() {
        Ok(s) if s.success() => {}
        _ => eprintln!(
            "note: {} left unstripped (no working `strip`)",
            to.display()
        ),
    }
    Ok(())
}

/// Replaces `file` by `file.xz` (`xz -9`, when installed; the stripped CUDA test binary
/// goes from 70 MB to 10 MB), so that the bundle fits a machine that takes only a few dozen MiB at a
/// time. `run.sh` unpacks it on every run, so an older unpacked binary is never used.
fn compress(file: &Path) -> Result<()> {
    match Process::new("xz")
        .args(["-9", "-T0", "-f"])
        .arg(file)
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("xz failed on {} ({s})", file.display()),
        Err(_) => {
            eprintln!(
                "note: no `xz` installed; {} left uncompressed",
                file.display()
            );
            Ok(())
        }
    }
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn set_executable(_path: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script's defaults are the check: 224 px, 5 epochs, batch 64, on CUDA,
    /// with the GPU tests required.
    #[test]
    fn the_script_runs_the_prescribed_check() {
        for needle in [
            "DEVICE=cuda",
            "EPOCHS=5",
            "SIZE=224",
            "BATCH=64",
            "req=cuda",
            "--label-smoothing 0.1",
            "--keep last",
        ] {
            assert!(RUN_SH.contains(needle), "run.sh lacks `{needle}`");
        }
    }
}
