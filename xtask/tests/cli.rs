//! The command line as a user meets it: exit codes and error messages for bad input,
//! and crash safety (kill, resume, divergence) of real training processes.

#[path = "cli/crash_safety.rs"]
mod crash_safety;

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env_remove("CXR_DATA_DIR")
        .env("CXR_LOG", "warn")
        .output()
        .unwrap()
}

/// Asserts the exit code and that stderr contains every needle.
fn check(out: &Output, code: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "`{n}` not in stderr: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    check(&xtask(&["train", "--no-such-flag"]), 2, &["--no-such-flag"]);
    check(&xtask(&["train", "--epochs", "many"]), 2, &["--epochs"]);
    check(&xtask(&["train", "--model", "vgg"]), 2, &["vgg"]);
    check(
        &xtask(&["train", "--precision", "int8"]),
        2,
        &["--precision", "int8"],
    );
    check(
        &xtask(&["ci", "--features", "tpu"]),
        2,
        &["--features", "tpu"],
    );
}

#[test]
fn cuda_build_with_a_bad_cuda_root_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let out = xtask(&["cuda-build", "--cuda-root", root]);
    check(&out, 1, &[root, "bin/nvcc"]);
    let missing = dir.path().join("no-such-toolkit");
    let out = xtask(&["cuda-build", "--cuda-root", missing.to_str().unwrap()]);
    check(&out, 1, &["no-such-toolkit"]);
}

#[test]
fn missing_data_file_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.npz");
    let out = xtask(&["train", "--offline", "--data", missing.to_str().unwrap()]);
    check(&out, 1, &["nope.npz"]);
}

#[test]
fn truncated_npz_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("pneumoniamnist.npz");
    std::fs::write(&bad, b"PK\x03\x04 this is not a whole zip file").unwrap();
    let out = xtask(&["train", "--offline", "--data", bad.to_str().unwrap()]);
    check(&out, 1, &["pneumoniamnist.npz"]);
}

#[test]
fn report_on_a_folder_without_a_run_exits_1_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = xtask(&["report", "--run", dir.path().to_str().unwrap()]);
    check(&out, 1, &["metrics.json"]);
}

#[test]
fn audit_on_a_folder_without_a_run_exits_1_naming_the_file() {
    check(&xtask(&["audit"]), 2, &["--run"]);
    let data = std::env::var_os("CXR_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
        });
    if !data.join("pneumoniamnist.npz").is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} not found (set CXR_DATA_DIR)",
            data.display()
        );
        eprintln!("skipped: no pneumoniamnist.npz in {}", data.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = xtask(&[
        "audit",
        "--offline",
        "--run",
        dir.path().to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    check(&out, 1, &["config.json"]);
}

fn offline_hub(args: &[&str], cache: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env_remove("CXR_DATA_DIR")
        .env("CXR_LOG", "warn")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", cache)
        .output()
        .unwrap()
}

/// An explicit hub id that cannot be fetched is an error that says what to do;
/// without `--weights` the run falls back to training from scratch, loudly (here it
/// then stops at the missing data file).
#[test]
fn unreachable_hub_weights_fail_when_explicit_and_fall_back_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.npz");
    let data = missing.to_str().unwrap();
    let out = offline_hub(
        &[
            "train",
            "--model",
            "resnet18",
            "--weights",
            "hub:timm/resnet18.a1_in1k",
            "--offline",
            "--data",
            data,
        ],
        dir.path(),
    );
    check(
        &out,
        1,
        &["--weights hub:timm/resnet18.a1_in1k", "--weights none"],
    );
    let out = offline_hub(
        &["train", "--model", "resnet18", "--offline", "--data", data],
        dir.path(),
    );
    check(
        &out,
        1,
        &["NO PRETRAINED WEIGHTS", "trained from scratch", "nope.npz"],
    );
    check(
        &xtask(&["train", "--weights", "none", "--offline", "--data", data]),
        1,
        &["only resnet18"],
    );
}
