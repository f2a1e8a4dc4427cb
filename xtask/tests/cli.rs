//! `cargo xtask` as a developer meets it: its own commands' usage errors, and the user
//! commands forwarded to the cxr crate.

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env_remove("CXR_DATA_DIR")
        .env("CXR_LOG", "warn")
        .output()
        .unwrap()
}

use cxr_testkit::assert_exit as check;

#[test]
fn usage_errors_exit_2() {
    check(
        &xtask(&["ci", "--features", "tpu"]),
        2,
        &["--features", "tpu"],
    );
    // the user commands are the cxr crate's, with its flags
    check(&xtask(&["train", "--no-such-flag"]), 2, &["--no-such-flag"]);
}

#[test]
fn user_commands_are_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let out = xtask(&["report", "--run", dir.path().to_str().unwrap()]);
    check(&out, 1, &["metrics.json"]);
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
