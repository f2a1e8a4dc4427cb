//! `cargo xtask cuda-build`: a CUDA build of cxr on a machine without a GPU or a CUDA
//! install.
//!
//! candle's CUDA backend needs `nvcc` and the CUDA headers at build time (cudarc's build
//! script runs `nvcc --version`; candle-kernels compiles its `.cu` files to PTX and a
//! static library) and links against `libcuda`, `libcublas`, `libcublasLt`, `libcurand`,
//! `libnvrtc` and `libcudart`. NVIDIA publishes all of these on PyPI; the CUDA 13 wheels
//! (`nvidia-cuda-nvcc` & co.) are the first whose `nvcc` is a complete compiler driver and
//! they share one prefix (`nvidia/cu13/`), which is then a usable CUDA root. This task
//! installs them with pip into `target/cuda-toolchain/`, adds the two things the wheels
//! lack (unversioned `lib*.so` names for the linker and a link-time stub of the driver's
//! `libcuda.so`, generated from `cuda.h`), and builds with `--features cuda` into a
//! target folder of its own so the CPU build is left alone.
//!
//! With `--cuda-root DIR` an installed toolkit is used instead (e.g. `/usr/local/cuda`
//! in NVIDIA's `nvidia/cuda:*-devel` images) and nothing is downloaded.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::tasks::{cargo, project_root};

/// Which CUDA toolkit to build with, and for which GPUs (shared by `cuda-build` and
/// `gpu-check`).
#[derive(Debug, Args)]
pub struct ToolkitArgs {
    /// Use this CUDA toolkit (containing bin/nvcc, include/, lib64/) instead of
    /// installing one from PyPI, e.g. /usr/local/cuda.
    #[arg(long)]
    pub cuda_root: Option<PathBuf>,
    /// Where the PyPI toolchain goes (default target/cuda-toolchain).
    #[arg(long)]
    pub toolchain_dir: Option<PathBuf>,
    /// GPU compute capability to compile for (90: H100/H200; 80: A100; 89: L4/L40).
    #[arg(long, default_value = "90")]
    pub compute_cap: String,
    /// Python interpreter whose pip installs the toolchain.
    #[arg(long, default_value = "python3")]
    pub python: String,
}

#[derive(Debug, Args)]
pub struct CudaBuildArgs {
    #[command(flatten)]
    pub kit: ToolkitArgs,
    /// Cargo target folder (default `$CARGO_TARGET_DIR/cuda`, else target/cuda).
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
    /// Build with the release profile.
    #[arg(long)]
    pub release: bool,
    /// Build every test binary of the workspace (`cargo test --no-run`) instead of the
    /// xtask binary.
    #[arg(long, conflicts_with = "run_tests")]
    pub tests: bool,
    /// Build and run the workspace's tests (needs a GPU for the CUDA tests to run;
    /// set CXR_REQUIRE_GPU=cuda to make them fail rather than skip without one).
    #[arg(long)]
    pub run_tests: bool,
}

/// The PyPI wheels of the toolchain, pinned: CUDA 13.0 (needs an NVIDIA driver ≥ 580 at
/// run time). cudarc 0.19 supports CUDA 13.0–13.4; 13.0 asks the least of the driver.
pub const CUDA_WHEELS: &[&str] = &[
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-nvvm==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-cccl==13.0.85",
    "nvidia-cuda-nvrtc==13.0.88",
    "nvidia-cublas==13.1.0.3",
    "nvidia-curand==10.4.0.35",
];

/// Libraries the CUDA build links against (cudarc: driver, nvrtc, curand, cublas,
/// cublasLt; candle-kernels: cudart), as `lib<name>.so`.
const LINK_LIBS: &[&str] = &["cublas", "cublasLt", "curand", "nvrtc", "cudart"];

/// Marker written once the pip install has completed; holds the wheel list.
const MARKER: &str = ".cxr-cuda-toolchain";

/// A CUDA toolkit ready for cargo: its root, `nvcc`'s version, and the seconds its
/// installation took (0 for `--cuda-root`).
pub struct Toolkit {
    pub root: PathBuf,
    pub nvcc_version: String,
    pub install_seconds: f64,
}

/// The toolkit of `--cuda-root`, or the pinned PyPI one in `--toolchain-dir` (installed
/// on first use).
pub fn toolkit(a: &ToolkitArgs) -> Result<Toolkit> {
    let (cuda_root, toolchain_dir, python) = (
        a.cuda_root.as_deref(),
        a.toolchain_dir.as_deref(),
        &a.python,
    );
    let root = project_root();
    let (cuda_root, install_seconds) = match cuda_root {
        Some(dir) => {
            let dir = dir
                .canonicalize()
                .with_context(|| format!("--cuda-root {}", dir.display()))?;
            if !dir.join("bin/nvcc").is_file() {
                bail!(
                    "--cuda-root {}: no bin/nvcc there (give the toolkit's root, e.g. /usr/local/cuda)",
                    dir.display()
                );
            }
            (dir, 0.0)
        }
        None => {
            // Absolute: build scripts run in other folders and read these paths.
            let dir = std::path::absolute(
                toolchain_dir
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| root.join("target/cuda-toolchain")),
            )?;
            let t0 = Instant::now();
            let cuda_root = pip_toolchain(&dir, python)?;
            (cuda_root, t0.elapsed().as_secs_f64())
        }
    };
    let nvcc_version = nvcc_version(&cuda_root)?;
    Ok(Toolkit {
        root: cuda_root,
        nvcc_version,
        install_seconds,
    })
}

impl Toolkit {
    /// `cargo <args>` in the project root with this toolkit's `nvcc` first on PATH and
    /// the CUDA variables candle's build scripts read.
    pub fn cargo(&self, compute_cap: &str) -> Result<Process> {
        let path = std::env::join_paths(
            std::iter::once(self.root.join("bin")).chain(
                std::env::var_os("PATH")
                    .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
        )?;
        let mut cmd = Process::new(cargo());
        cmd.current_dir(project_root())
            .env("PATH", path)
            .env("CUDA_ROOT", &self.root)
            .env("CUDA_PATH", &self.root)
            .env("CUDA_HOME", &self.root)
            .env("CUDA_COMPUTE_CAP", compute_cap);
        Ok(cmd)
    }
}

pub fn cuda_build(a: &CudaBuildArgs) -> Result<()> {
    let started = Instant::now();
    let root = project_root();
    let kit = toolkit(&a.kit)?;
    let (cuda_root, toolchain_seconds, nvcc_version) = (
        kit.root.clone(),
        kit.install_seconds,
        kit.nvcc_version.clone(),
    );
    eprintln!(
        "==> CUDA root {} ({nvcc_version}), compute capability {}",
        cuda_root.display(),
        a.kit.compute_cap
    );

    let target_dir = std::path::absolute(a.target_dir.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("cuda")
    }))?;
    let mut args: Vec<String> = if a.tests || a.run_tests {
        let mut v: Vec<String> = ["test", "--workspace", "--features", "xtask/cuda"]
            .map(String::from)
            .to_vec();
        if a.tests {
            v.push("--no-run".into());
        }
        v
    } else {
        ["build", "--package", "xtask", "--features", "cuda"]
            .map(String::from)
            .to_vec()
    };
    if a.release {
        args.push("--release".into());
    }
    args.push("--target-dir".into());
    args.push(target_dir.display().to_string());
    eprintln!("==> cargo {}", args.join(" "));
    let t0 = Instant::now();
    let mut cmd = kit.cargo(&a.kit.compute_cap)?;
    if a.run_tests {
        // The test binaries load the CUDA libraries of this toolkit.
        let lib_path = std::env::join_paths(
            std::iter::once(lib_dir(&cuda_root)).chain(
                std::env::var_os("LD_LIBRARY_PATH")
                    .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                    .unwrap_or_default(),
            ),
        )?;
        cmd.env("LD_LIBRARY_PATH", lib_path);
    }
    let status = cmd
        .args(&args)
        .status()
        .context("running cargo for the CUDA build")?;
    if !status.success() {
        bail!("the CUDA build failed ({status}); see cargo's output above");
    }
    let build_seconds = t0.elapsed().as_secs_f64();

    let profile = if a.release { "release" } else { "debug" };
    let binary = target_dir.join(profile).join("xtask");
    let lib_dir = lib_dir(&cuda_root);
    let mut out = String::new();
    writeln!(
        out,
        "CUDA build done in {:.0} s (toolchain {:.0} s, cargo {:.0} s)",
        started.elapsed().as_secs_f64(),
        toolchain_seconds,
        build_seconds
    )?;
    if binary.is_file() {
        writeln!(out, "binary: {}", binary.display())?;
    }
    writeln!(
        out,
        "run it on a machine with an NVIDIA driver for {nvcc_version} or newer, with the CUDA \
         libraries on the loader path:\n  LD_LIBRARY_PATH={} {} train --device cuda ...",
        lib_dir.display(),
        binary.display()
    )?;
    print!("{out}");
    Ok(())
}

/// Installs the pinned wheels into `dir` (once) and prepares `dir/nvidia/cu13` as a
/// CUDA root; returns it.
fn pip_toolchain(dir: &Path, python: &str) -> Result<PathBuf> {
    let cuda_root = dir.join("nvidia/cu13");
    let wanted = CUDA_WHEELS.join("\n");
    let marker = dir.join(MARKER);
    let installed = std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == wanted);
    if !installed {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("removing the stale toolchain in {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        eprintln!(
            "==> {python} -m pip install --target {} (CUDA 13.0 toolchain from PyPI, about 1.2 GB)",
            dir.display()
        );
        let status = Process::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
            ])
            .arg(dir)
            .args(CUDA_WHEELS)
            .status()
            .with_context(|| {
                format!(
                    "running `{python} -m pip` (install Python 3 with pip, or pass --cuda-root)"
                )
            })?;
        if !status.success() {
            bail!(
                "pip could not install the CUDA wheels ({status}); it needs PyPI (or a wheel folder \
                 in PIP_FIND_LINKS). Alternatively pass --cuda-root to use an installed toolkit"
            );
        }
    }
    if !cuda_root.join("bin/nvcc").is_file() {
        bail!(
            "{}: the wheels did not provide bin/nvcc (delete {} and retry)",
            cuda_root.display(),
            dir.display()
        );
    }
    link_names(&cuda_root.join("lib"))?;
    driver_stub(&cuda_root)?;
    if !installed {
        std::fs::write(&marker, &wanted)
            .with_context(|| format!("writing {}", marker.display()))?;
    }
    Ok(cuda_root)
}

/// `lib<name>.so` → `lib<name>.so.<N>` for each library the linker is asked for (the
/// wheels ship only the versioned names).
fn link_names(lib: &Path) -> Result<()> {
    for name in LINK_LIBS {
        let link = lib.join(format!("lib{name}.so"));
        if link.exists() {
            continue;
        }
        let prefix = format!("lib{name}.so.");
        let mut versioned: Vec<String> = std::fs::read_dir(lib)
            .with_context(|| format!("listing {}", lib.display()))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|f| f.starts_with(&prefix))
            .collect();
        versioned.sort();
        let Some(target) = versioned.first() else {
            bail!("{}: no {prefix}* (incomplete toolchain?)", lib.display());
        };
        #[cfg(unix)]
        std::os::unix::fs::symlink(target, &link)
            .with_context(|| format!("linking {}", link.display()))?;
        #[cfg(not(unix))]
        std::fs::copy(lib.join(target), &link)
            .with_context(|| format!("copying {}", link.display()))?;
    }
    Ok(())
}

/// A link-time stand-in for the driver library, `lib/stubs/libcuda.so` with soname
/// `libcuda.so.1`: one empty function per `cu*` name in `cuda.h`. The binary records a
/// dependency on `libcuda.so.1`, which the NVIDIA driver supplies at run time; the stub
/// is never loaded. (Full CUDA installs ship the same kind of stub; the wheels do not.)
fn driver_stub(cuda_root: &Path) -> Result<()> {
    let stubs = cuda_root.join("lib/stubs");
    let lib = stubs.join("libcuda.so");
    if lib.is_file() {
        return Ok(());
    }
    let header = cuda_root.join("include/cuda.h");
    let text = std::fs::read_to_string(&header)
        .with_context(|| format!("reading {}", header.display()))?;
    let names = driver_symbols(&text);
    if names.len() < 100 {
        bail!(
            "{}: found only {} driver functions; not a CUDA 12+ cuda.h?",
            header.display(),
            names.len()
        );
    }
    std::fs::create_dir_all(&stubs).with_context(|| format!("creating {}", stubs.display()))?;
    let source = stubs.join("libcuda_stub.c");
    let mut c = String::from("/* generated by cargo xtask cuda-build from cuda.h */\n");
    for n in &names {
        writeln!(c, "void {n}(void) {{}}")?;
    }
    std::fs::write(&source, c).with_context(|| format!("writing {}", source.display()))?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Process::new(&cc)
        .args(["-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o"])
        .arg(&lib)
        .arg(&source)
        .status()
        .with_context(|| format!("running the C compiler `{cc}` (set CC)"))?;
    if !status.success() {
        bail!("{cc} could not build the libcuda stub ({status})");
    }
    Ok(())
}

/// Every identifier `cu[A-Z]…` in `cuda.h`: the driver API's functions, including the
/// versioned names (`cuMemAlloc_v2`) its macros map to. A few macro names come along;
/// an unused extra symbol in the stub is harmless.
fn driver_symbols(header: &str) -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    let bytes = header.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i + 2 < bytes.len() {
        let starts = (i == 0 || !ident(bytes[i - 1]))
            && bytes[i] == b'c'
            && bytes[i + 1] == b'u'
            && bytes[i + 2].is_ascii_uppercase();
        if starts {
            let mut j = i + 2;
            while j < bytes.len() && ident(bytes[j]) {
                j += 1;
            }
            names.insert(header[i..j].to_string());
            i = j;
        } else {
            i += 1;
        }
    }
    names.into_iter().collect()
}

fn lib_dir(cuda_root: &Path) -> PathBuf {
    let lib64 = cuda_root.join("lib64");
    if lib64.join("libcudart.so").exists() {
        lib64
    } else {
        cuda_root.join("lib")
    }
}

fn nvcc_version(cuda_root: &Path) -> Result<String> {
    let nvcc = cuda_root.join("bin/nvcc");
    let out = Process::new(&nvcc)
        .arg("--version")
        .output()
        .with_context(|| format!("running {}", nvcc.display()))?;
    if !out.status.success() {
        bail!("{} --version failed: {}", nvcc.display(), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .find_map(|l| l.split(", ").nth(1))
        .map(|r| r.replace("release", "CUDA"))
        .unwrap_or_else(|| "CUDA (unknown version)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_symbols_takes_cu_functions_only() {
        let h = "CUresult CUDAAPI cuInit(unsigned int Flags);\n\
                 #define cuMemAlloc cuMemAlloc_v2\n\
                 typedef struct CUctx_st *CUcontext; int accuInit; cuuint32_t x;\n";
        assert_eq!(
            driver_symbols(h),
            vec!["cuInit", "cuMemAlloc", "cuMemAlloc_v2"]
        );
    }

    #[test]
    fn wheels_are_pinned() {
        assert!(CUDA_WHEELS.iter().all(|w| w.contains("==")));
        assert!(
            CUDA_WHEELS
                .iter()
                .any(|w| w.starts_with("nvidia-cuda-nvcc=="))
        );
    }
}
