//! What keeps a run's work when it goes wrong: the divergence checks of the training
//! steps, the partial record of a diverged run, and the test-only hook that holds a run
//! at a chosen point so a test can kill it there (`CXR_TEST_HANG_AT`).
//!
//! # Divergence checks without a host sync per step
//!
//! Every step's mean loss and the sum of each parameter's gradient (non-finite when any
//! element is NaN or ±inf) stay on the device as one small tensor ([`PendingChecks`]);
//! the host reads all the pending steps with one copy every `sync_every` steps and at the
//! last step of the epoch, and checks them in step order exactly as a per-step check
//! would: the first step whose loss is non-finite or above [`EXPLODED_LOSS`], or whose
//! gradient is non-finite, is reported with its epoch, step and parameter name, and the
//! losses before it are the ones summed into the epoch's training loss. The values read
//! are the same `f32`s a per-step read sees, summed in the same order, so the run's
//! results do not depend on `sync_every`.
//!
//! The read comes before the optimizer update of the step that fills the window. With
//! `sync_every` 1 (the CPU default) no update is applied after a bad step, as before
//! windows existed. With a longer window (the GPU default) the steps after a bad one
//! still run, on weights that may be garbage; that is harmless because nothing a run
//! keeps is written inside an epoch: `best.safetensors` and `checkpoint.safetensors` are
//! written only after the epoch's last window has been read clean (and the weights
//! checked finite), and a divergence stops the run without writing weights. So the
//! guarantees are the per-step check's: the run stops reporting the first bad step, and
//! the last good checkpoint (the last completed epoch's) is kept. A step that fails
//! with an error inside a window first has the window read, so that an earlier
//! divergence is reported rather than its consequence.

use std::path::Path;
use std::sync::OnceLock;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use cxr_runfolder::{Divergence, EpochRecord, LastGood, RunConfig, RunStatus, names};
use tracing::warn;

use crate::{Result, TrainError};

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

/// The divergence checks of training steps the host has not read yet (see the module
/// documentation): per step, its loss and its gradients' sums as one `f32` tensor on the
/// device.
#[derive(Debug, Default)]
pub(crate) struct PendingChecks {
    steps: Vec<PendingStep>,
}

#[derive(Debug)]
struct PendingStep {
    /// 0-based step within the epoch.
    step: usize,
    /// Images in the step's batch (the weight of its loss in the epoch's mean).
    images: usize,
    /// Positions in the parameter list of the gradients whose sums follow the loss.
    grads: Vec<usize>,
    /// `[1 + grads.len()]`: the loss, then one sum per gradient.
    values: Tensor,
}

/// The first bad step found by [`PendingChecks::read`]: 1-based step, what happened.
pub(crate) type BadStep = (usize, String);

impl PendingChecks {
    /// Records step `step` (0-based) of `images` images: its mean `loss` and, when
    /// given, the sums of `params`' gradients in `grads` (parameters without one are
    /// skipped). Queues device work only; nothing is copied to the host.
    pub(crate) fn push(
        &mut self,
        step: usize,
        images: usize,
        loss: &Tensor,
        grads: Option<&GradStore>,
        params: &[(String, Var)],
    ) -> Result<()> {
        let mut parts = vec![loss.to_dtype(DType::F32)?.reshape(1)?];
        let mut with_grad = Vec::new();
        if let Some(grads) = grads {
            for (i, (_, var)) in params.iter().enumerate() {
                if let Some(g) = grads.get(var.as_tensor()) {
                    // A sum is non-finite when any term is NaN or ±inf (or it overflows,
                    // which for a gradient is divergence too).
                    parts.push(g.sum_all()?.to_dtype(DType::F32)?.reshape(1)?);
                    with_grad.push(i);
                }
            }
        }
        self.steps.push(PendingStep {
            step,
            images,
            grads: with_grad,
            // Detached: a pending step must not keep its autograd graph (every
            // activation of the step) alive until the read.
            values: Tensor::cat(&parts, 0)?.detach(),
        });
        Ok(())
    }

    /// Steps recorded and not read yet.
    pub(crate) fn len(&self) -> usize {
        self.steps.len()
    }

    /// Reads every pending step with one device-to-host copy and checks them in step
    /// order: `good(loss, images)` for each step up to the first bad one, which is
    /// returned. Nothing is pending afterwards.
    pub(crate) fn read(
        &mut self,
        params: &[(String, Var)],
        mut good: impl FnMut(f64, usize),
    ) -> Result<Option<BadStep>> {
        let steps = std::mem::take(&mut self.steps);
        if steps.is_empty() {
            return Ok(None);
        }
        let parts: Vec<&Tensor> = steps.iter().map(|s| &s.values).collect();
        let values = Tensor::cat(&parts, 0)?.to_vec1::<f32>()?;
        let mut at = 0;
        for s in &steps {
            let loss = values[at] as f64;
            let sums = &values[at + 1..at + 1 + s.grads.len()];
            at += 1 + s.grads.len();
            if let Some(what) = bad_loss(loss) {
                return Ok(Some((s.step + 1, what)));
            }
            if let Some((&i, _)) = s.grads.iter().zip(sums).find(|(_, v)| !v.is_finite()) {
                let name = &params[i].0;
                return Ok(Some((
                    s.step + 1,
                    format!("the gradient of `{name}` is not finite"),
                )));
            }
            good(loss, s.images);
        }
        Ok(None)
    }
}

/// Whether every element of `tensors` is finite, with one device-to-host copy (sums,
/// as for the gradients).
pub(crate) fn all_finite<'t>(tensors: impl IntoIterator<Item = &'t Tensor>) -> Result<bool> {
    let sums = tensors
        .into_iter()
        .map(|t| t.abs()?.sum_all()?.to_dtype(DType::F32)?.reshape(1))
        .collect::<candle_core::Result<Vec<_>>>()?;
    if sums.is_empty() {
        return Ok(true);
    }
    Ok(Tensor::cat(&sums, 0)?
        .to_vec1::<f32>()?
        .iter()
        .all(|v| v.is_finite()))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Steps queued with their losses and gradients are read back in order: the good
    /// steps' losses (exact `f32` values) until the first bad step, which is named by
    /// step and parameter; a parameter without a gradient is skipped; nothing is left
    /// pending after a read.
    #[test]
    fn pending_checks_report_the_first_bad_step_of_a_window() {
        let dev = Device::Cpu;
        let params: Vec<(String, Var)> = ["a", "b", "c"]
            .iter()
            .map(|n| (n.to_string(), Var::new(&[0f32, 0.0], &dev).unwrap()))
            .collect();
        let grads = |b: f32| {
            let mut g = GradStore::default();
            g.insert(
                params[0].1.as_tensor(),
                Tensor::new(&[1f32, -1.0], &dev).unwrap(),
            );
            g.insert(
                params[1].1.as_tensor(),
                Tensor::new(&[b, 2.0], &dev).unwrap(),
            );
            g
        };
        let scalar = |v: f32| Tensor::new(v, &dev).unwrap();
        let mut checks = PendingChecks::default();
        let push = |checks: &mut PendingChecks, step, loss, b| {
            checks
                .push(step, 4, &scalar(loss), Some(&grads(b)), &params)
                .unwrap()
        };
        push(&mut checks, 0, 0.7, 1.0);
        push(&mut checks, 1, 0.1 + 0.2, 3.0);
        push(&mut checks, 2, 0.5, f32::NAN);
        push(&mut checks, 3, f32::NAN, f32::INFINITY);
        assert_eq!(checks.len(), 4);
        // A step's record holds no autograd graph, even of a loss that has one.
        let tracked = params[0].1.as_tensor().sum_all().unwrap();
        checks.push(9, 1, &tracked, None, &params).unwrap();
        assert!(!checks.steps[4].values.track_op());
        checks.steps.pop();
        let mut good = Vec::new();
        let bad = checks.read(&params, |l, n| good.push((l, n))).unwrap();
        assert_eq!(good, vec![(0.7f32 as f64, 4), ((0.1f32 + 0.2) as f64, 4)]);
        assert_eq!(bad, Some((3, "the gradient of `b` is not finite".into())));
        assert_eq!(checks.len(), 0);

        // The loss is checked before the gradients; an exploded loss is bad too; no
        // gradients at all (f16) checks the loss alone.
        push(&mut checks, 4, f32::INFINITY, f32::NAN);
        let bad = checks.read(&params, |_, _| {}).unwrap().unwrap();
        assert_eq!(bad, (5, "the training loss is not finite".into()));
        checks.push(5, 2, &scalar(0.4), None, &params).unwrap();
        checks.push(6, 2, &scalar(2e4), None, &params).unwrap();
        let mut n = 0;
        let bad = checks.read(&params, |_, k| n += k).unwrap().unwrap();
        assert_eq!(n, 2);
        assert_eq!(bad.0, 7);
        assert!(bad.1.contains("exploded"), "{}", bad.1);
        assert_eq!(
            checks
                .read(&params, |_, _| panic!("nothing pending"))
                .unwrap(),
            None
        );
    }

    #[test]
    fn all_finite_sees_any_nan_or_infinity() {
        let dev = Device::Cpu;
        let t = |v: &[f32]| Tensor::new(v, &dev).unwrap();
        let (a, b) = (t(&[1.0, -2.0]), t(&[3.0]));
        assert!(all_finite([&a, &b]).unwrap());
        assert!(all_finite(std::iter::empty()).unwrap());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert!(!all_finite([&a, &t(&[0.0, bad])]).unwrap());
        }
    }

    #[test]
    fn finite_small_losses_pass_and_others_are_named() {
        assert_eq!(bad_loss(0.69), None);
        assert_eq!(bad_loss(EXPLODED_LOSS), None);
        assert!(bad_loss(f64::NAN).unwrap().contains("not finite"));
        assert!(bad_loss(f64::INFINITY).unwrap().contains("not finite"));
        assert!(bad_loss(2.5e29).unwrap().contains("exploded to 2.500e29"));
    }
}
