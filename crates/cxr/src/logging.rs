//! Logging and progress for the `cxr` and `cargo xtask` programs.

use std::io::IsTerminal;

use tracing_indicatif::IndicatifLayer;
use tracing_indicatif::filter::{IndicatifFilter, hide_indicatif_span_fields};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::DefaultFields;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Logs to stderr through `tracing`: the level from `CXR_LOG`, else `RUST_LOG`, else
/// `debug` with `verbose` and `info` without. On a terminal (and outside CI) with
/// colour, and with progress bars for the spans that ask for one
/// (`indicatif.pb_show`), drawn so that log lines and bars do not overwrite each
/// other; in pipes and CI plain lines without escape codes and no bars.
pub fn init_tracing(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("CXR_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default));
    let interactive = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(interactive);
    if interactive {
        let bars = IndicatifLayer::new()
            .with_span_field_formatter(hide_indicatif_span_fields(DefaultFields::new()));
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt.with_writer(bars.get_stderr_writer()))
            .with(bars.with_filter(IndicatifFilter::new(false)))
            .try_init();
    } else {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt.with_writer(std::io::stderr))
            .try_init();
    }
}

/// glibc's malloc settings for tensor work: every freed multi-megabyte buffer would
/// otherwise go back to the kernel and come back as fresh zeroed pages at the next
/// op (measured on ResNet18 at 64 px: 412k page faults per three steps, 0.8 s of
/// system time; with these, 129k and 0.3 s; see docs/performance.md). And candle's
/// spin limit for its own worker threads: by default a worker spins for 25 000 pauses
/// (about a millisecond) after each of candle's parallel element-wise ops, taking a
/// core from the rayon tasks of the custom ops that follow (seed-CNN step 6–10 %
/// slower on 2 cores). The variables are read once, at process start or at the
/// first op, so the process re-executes itself with them (same pid: `exec` replaces
/// the image). Set `CXR_MALLOC_TUNING=0` to opt out; a value already in the
/// environment is kept.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_process() {
    use std::os::unix::process::CommandExt;
    const VARS: [(&str, &str); 4] = [
        ("MALLOC_MMAP_THRESHOLD_", "33554432"),
        ("MALLOC_TRIM_THRESHOLD_", "4294967296"),
        ("MALLOC_TOP_PAD_", "268435456"),
        ("CANDLE_BARRIER_POOL_SPIN_LIMIT", "200"),
    ];
    if std::env::var_os("CXR_MALLOC_TUNING").is_some() {
        return; // opted out, or already re-executed
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env("CXR_MALLOC_TUNING", "1");
    for (k, v) in VARS {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    // Only returns on failure; then run untuned.
    let err = cmd.exec();
    eprintln!("note: running without malloc tuning ({err})");
}

/// Elsewhere the process runs as started.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_process() {}
