//! The run-folder readers behind `cargo xtask report` (`RunFolder::open`): the input
//! is split into `metrics.json`, `predictions.csv`, `history.csv` and `config.json`
//! at lines reading `--cxr-file--`; missing parts are written empty. Any content gives
//! a run folder or a `RunFolderError`, never a panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// Ceiling on live heap memory per fuzzing process: far above what any input of
/// libFuzzer's sizes may legitimately need, so reaching it means an unbounded allocation.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, 768 << 20);

const FILES: [&str; 4] = [
    "metrics.json",
    "predictions.csv",
    "history.csv",
    "config.json",
];
const SEPARATOR: &[u8] = b"\n--cxr-file--\n";

/// One scratch folder per fuzzing process, reused for every input.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("cxr-fuzz-run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while parts.len() + 1 < FILES.len() {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(i) => {
                parts.push(&rest[..i]);
                rest = &rest[i + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let parts = split(data);
    for (i, name) in FILES.iter().enumerate() {
        std::fs::write(dir.join(name), parts.get(i).copied().unwrap_or(b"")).expect("write");
    }
    if let Ok(run) = cxr_runfolder::RunFolder::open(dir) {
        // What the report renders from a run folder must not panic either.
        let _ = cxr_report::compare_runs(std::slice::from_ref(&run));
        for label in [0, 1] {
            let _ = run.top_failures("test", label, 0.5, 5);
        }
    }
});
