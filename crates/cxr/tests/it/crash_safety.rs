//! Crash safety through the real command line: a training run SIGKILLed mid-epoch and
//! again mid-checkpoint-write, then resumed, ends with the same weights, bit for bit,
//! as an uninterrupted run; a diverging run leaves its checkpoint and a report saying
//! what happened. Tiny synthetic data, one thread: a few seconds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// cxr-train's crash-safety hook: a run stops and waits to be killed at the point
/// this variable names (`step:<epoch>:<step>`, `checkpoint:<epoch>`) ...
const TEST_HANG_ENV: &str = "CXR_TEST_HANG_AT";
/// ... after writing this marker into the run folder.
const TEST_HANG_MARKER: &str = ".cxr-test-hang";

/// A MedMNIST-layout npz: 24 train, 8 val and 8 test 28×28 images, both classes in
/// each split.
pub fn tiny_npz(path: &Path) {
    cxr_testkit::write_tiny_npz(path, &[("train", 24), ("val", 8), ("test", 8)]);
}

/// `cxr train` on `data` into `out` (3 epochs of 6 steps, seed 7, one thread).
fn train_cmd(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cxr"));
    c.args(["train", "--offline", "--epochs", "3", "--batch-size", "4"])
        .args(["--seed", "7", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("CXR_DATA_DIR")
        .env_remove(TEST_HANG_ENV)
        .env("RAYON_NUM_THREADS", "1")
        .env("CXR_LOG", "warn");
    c
}

fn output(mut c: Command) -> Output {
    let out = c.output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn run_ok(c: Command) {
    let out = output(c);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `c` with the test hang point `point`, waits until the run reaches it (its
/// marker file appears) and SIGKILLs it there.
fn kill_at(c: Command, out: &Path, point: &str) {
    let mut child = hang_at(c, out, point);
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert!(!status.success());
    std::fs::remove_file(out.join(TEST_HANG_MARKER)).unwrap();
}

/// Starts `c` with the test hang point `point` and returns once the run waits there.
fn hang_at(mut c: Command, out: &Path, point: &str) -> Child {
    let marker = out.join(TEST_HANG_MARKER);
    let _ = std::fs::remove_file(&marker);
    c.env(TEST_HANG_ENV, point)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child: Child = c.spawn().unwrap();
    let start = Instant::now();
    while !marker.is_file() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before reaching {point}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{point} not reached in 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), point);
    child
}

fn epochs_in_checkpoint(out: &Path) -> usize {
    cxr_train::load_checkpoint(&out.join("checkpoint.safetensors"))
        .unwrap()
        .meta
        .epoch
}

fn read(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn killed_mid_epoch_and_mid_checkpoint_then_resumed_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny.npz");
    tiny_npz(&data);

    let reference = dir.path().join("reference");
    run_ok(train_cmd(&data, &reference, &[]));

    let run = dir.path().join("killed");
    // 1. SIGKILL in the middle of epoch 2 (before its 3rd of 6 steps).
    kill_at(train_cmd(&data, &run, &[]), &run, "step:2:3");
    assert_eq!(epochs_in_checkpoint(&run), 1);
    assert!(!run.join("model.safetensors").exists());
    // 2. Resume, and SIGKILL half-way through writing epoch 2's checkpoint: the
    //    temporary file is half-written, the checkpoint of epoch 1 is intact.
    kill_at(train_cmd(&data, &run, &["--resume"]), &run, "checkpoint:2");
    assert_eq!(epochs_in_checkpoint(&run), 1);
    let partial: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.starts_with(".checkpoint.safetensors.tmp-").then_some(n)
        })
        .collect();
    assert_eq!(partial.len(), 1, "{partial:?}");
    // 3. Resume to the end.
    run_ok(train_cmd(&data, &run, &["--resume"]));
    assert_eq!(epochs_in_checkpoint(&run), 3);

    for file in ["model.safetensors", "best.safetensors"] {
        assert!(
            read(reference.join(file)) == read(run.join(file)),
            "{file} differs between the resumed and the uninterrupted run"
        );
    }
    for file in ["history.csv", "predictions.csv"] {
        assert_eq!(
            String::from_utf8(read(reference.join(file))).unwrap(),
            String::from_utf8(read(run.join(file))).unwrap(),
            "{file}"
        );
    }
    // Nothing of the killed processes is left behind: no temporary file, no lock.
    for e in std::fs::read_dir(&run).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.contains(".tmp-") && n != ".cxr.lock", "left behind: {n}");
    }
}

#[test]
fn diverging_run_keeps_its_checkpoint_and_reports_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny.npz");
    tiny_npz(&data);
    let run = dir.path().join("diverged");
    let out = output(train_cmd(&data, &run, &["--lr", "1e6"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("diverged at epoch"), "{stderr}");
    assert!(stderr.contains("step"), "{stderr}");

    let record: serde_json::Value =
        serde_json::from_slice(&read(run.join("divergence.json"))).unwrap();
    let config: serde_json::Value = serde_json::from_slice(&read(run.join("config.json"))).unwrap();
    assert_eq!(config["status"], "diverged");
    assert!(
        config["error"]
            .as_str()
            .unwrap()
            .contains("diverged at epoch")
    );
    let epoch = record["epoch"].as_u64().unwrap() as usize;
    // The last good checkpoint is the one of the last completed epoch, when there is one.
    match record["last_good_checkpoint"]["epoch"].as_u64() {
        Some(e) => {
            assert_eq!(e as usize, epoch - 1);
            assert_eq!(epochs_in_checkpoint(&run), epoch - 1);
        }
        None => {
            assert_eq!(epoch, 1);
            assert!(!run.join("checkpoint.safetensors").exists());
        }
    }
    assert!(!run.join("model.safetensors").exists());
    let md = String::from_utf8(read(run.join("report.md"))).unwrap();
    assert!(md.contains("training diverged"), "{md}");
    assert!(md.contains(&format!("epoch {epoch}, step")), "{md}");

    // `report --run` on the partial folder rebuilds that report rather than failing.
    std::fs::remove_file(run.join("report.md")).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_cxr"));
    c.args(["report", "--run"]).arg(&run).env("CXR_LOG", "warn");
    let out = output(c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("did not finish"), "{stderr}");
    let md = String::from_utf8(read(run.join("report.md"))).unwrap();
    assert!(md.contains("training diverged"), "{md}");
}

#[test]
fn a_second_run_into_a_folder_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny.npz");
    tiny_npz(&data);
    let run = dir.path().join("busy");
    let mut first = hang_at(train_cmd(&data, &run, &[]), &run, "step:1:2");
    let second = output(train_cmd(&data, &run, &[]));
    let resumed = output(train_cmd(&data, &run, &["--resume"]));
    first.kill().unwrap();
    first.wait().unwrap();
    for out in [second, resumed] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("in use by another cxr run"), "{stderr}");
        assert!(stderr.contains(&first.id().to_string()), "{stderr}");
    }
}

#[test]
fn bad_setting_values_exit_1_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny.npz");
    tiny_npz(&data);
    let run = dir.path().join("run");
    for (flags, needles) in [
        (&["--lr=-1"][..], &["`lr`", "-1"][..]),
        (&["--lr", "-1"], &["`lr`", "-1"]),
        (&["--lr", "NaN"], &["`lr`", "NaN"]),
        (&["--lr", "inf"], &["`lr`", "inf"]),
        (&["--image-size", "3"], &["`image-size`", "8..=1024"]),
        (&["--limit", "0"], &["`limit`"]),
        (&["--device", "gpu"], &["device `gpu`"]),
        (
            &["--precision", "bf16"],
            &["`precision`", "--precision f32"],
        ),
    ] {
        let out = output(train_cmd(&data, &run, flags));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{flags:?}: `{n}` not in {stderr}");
        }
        assert!(!run.join("checkpoint.safetensors").exists());
    }
    // `--resume` needs `--out`: a usage error.
    let mut c = Command::new(env!("CARGO_BIN_EXE_cxr"));
    c.args(["train", "--resume"]);
    let out = output(c);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--out"));
}
