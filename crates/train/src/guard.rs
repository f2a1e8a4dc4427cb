//! What keeps a run's work when it goes wrong: the partial record of a diverged run,
//! and the test-only hook that holds a run at a chosen point so a test can kill it
//! there (`CXR_TEST_HANG_AT`).

use std::path::Path;
use std::sync::OnceLock;

use cxr_runfolder::{Divergence, EpochRecord, LastGood, RunConfig, RunStatus, names};
use tracing::warn;

use crate::TrainError;

/// Environment variable naming a point where a run stops and waits forever, for
/// crash-safety tests that SIGKILL it there. Points: `step:<epoch>:<step>` (before
/// that training step, both 1-based) and `checkpoint:<epoch>` (half-way through
/// writing the temporary file of that epoch's checkpoint). On reaching the point the
/// run writes `<run folder>/.cxr-test-hang` (holding the point) and sleeps. Not for
/// users: unset, it costs one environment read per run.
pub(crate) const TEST_HANG_ENV: &str = "CXR_TEST_HANG_AT";

/// Name of the marker file written at a hang point.
pub(crate) const TEST_HANG_MARKER: &str = ".cxr-test-hang";

fn hang_point() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| std::env::var(TEST_HANG_ENV).ok().filter(|s| !s.is_empty()))
        .as_deref()
}

/// If [`TEST_HANG_ENV`] names `point()`, marks `dir` and blocks forever (the test
/// kills the process). `point` is only built when the variable is set.
pub(crate) fn test_hang(dir: &Path, point: impl FnOnce() -> String) {
    let Some(want) = hang_point() else {
        return;
    };
    let here = point();
    if here != want {
        return;
    }
    warn!("{TEST_HANG_ENV}={want}: waiting here to be killed");
    let _ = std::fs::write(dir.join(TEST_HANG_MARKER), here.as_bytes());
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// A batch's mean training loss above this stops the run as diverged even though it
/// is finite. Binary cross-entropy starts near ln 2 ≈ 0.69 and a mean of 10⁴ needs
/// logits ~10⁴ on the wrong side for the whole batch: no training run that is still
/// learning gets there, while an absurd learning rate (Adam moves every weight by
/// about `lr` per step) gets there in one step and would otherwise finish with a dead,
/// constant-output network reported as a result.
pub const EXPLODED_LOSS: f64 = 1e4;

/// Why a batch's training loss stops the run, if it does.
pub(crate) fn bad_loss(loss: f64) -> Option<String> {
    if !loss.is_finite() {
        Some("the training loss is not finite".into())
    } else if loss > EXPLODED_LOSS {
        Some(format!(
            "the training loss exploded to {loss:.3e} (above {EXPLODED_LOSS:e})"
        ))
    } else {
        None
    }
}

/// Records a divergence in the run folder before the error is returned: `config.json`
/// gets status `diverged` and the error, `divergence.json` says where it happened, what
/// the last good checkpoint is, and the history so far, and `history.csv` holds the
/// completed epochs. The checkpoint itself is left as it was (it is only written after
/// an epoch whose weights are finite). Failures to write these files are logged; the
/// divergence error is returned either way.
pub(crate) fn record_divergence(
    dir: &Path,
    config: &mut RunConfig,
    history: &[EpochRecord],
    err: TrainError,
) -> TrainError {
    let TrainError::Diverged { epoch, step, what } = &err else {
        return err;
    };
    let message = err.to_string();
    let last_good = history
        .last()
        .filter(|_| dir.join(names::CHECKPOINT).is_file())
        .map(|r| LastGood {
            file: names::CHECKPOINT.into(),
            epoch: r.epoch,
        });
    let record = Divergence {
        epoch: *epoch,
        step: *step,
        what: what.clone(),
        error: message.clone(),
        last_good_checkpoint: last_good,
        config: Some(config.train.clone()),
        history: history.to_vec(),
    };
    config.status = RunStatus::Diverged;
    config.error = Some(message);
    for result in [
        record.write(dir),
        config.write(&dir.join(names::CONFIG)),
        cxr_runfolder::write_history(dir, history),
    ] {
        if let Err(e) = result {
            warn!("could not record the divergence: {e}");
        }
    }
    err
}

/// The name of the first parameter whose gradient holds a NaN or an infinity, if any
/// (one device-to-host copy for all of them). Parameters without a gradient are
/// skipped.
pub(crate) fn non_finite_gradient(
    grads: &candle_core::backprop::GradStore,
    params: &[(String, candle_core::Var)],
) -> crate::Result<Option<String>> {
    let mut names = Vec::with_capacity(params.len());
    let mut sums = Vec::with_capacity(params.len());
    for (name, var) in params {
        if let Some(g) = grads.get(var.as_tensor()) {
            // A sum is non-finite when any term is NaN or ±inf (or it overflows, which
            // for a gradient is divergence too).
            sums.push(g.sum_all()?.to_dtype(candle_core::DType::F32)?);
            names.push(name);
        }
    }
    if sums.is_empty() {
        return Ok(None);
    }
    let values = candle_core::Tensor::stack(&sums, 0)?.to_vec1::<f32>()?;
    Ok(names
        .into_iter()
        .zip(values)
        .find(|(_, v)| !v.is_finite())
        .map(|(n, _)| n.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_small_losses_pass_and_others_are_named() {
        assert_eq!(bad_loss(0.69), None);
        assert_eq!(bad_loss(EXPLODED_LOSS), None);
        assert!(bad_loss(f64::NAN).unwrap().contains("not finite"));
        assert!(bad_loss(f64::INFINITY).unwrap().contains("not finite"));
        assert!(bad_loss(2.5e29).unwrap().contains("exploded to 2.500e29"));
    }
}
