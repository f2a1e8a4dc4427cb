//! The learning-rate range test (Smith 2015; fastai's `lr_find`).

use serde::Serialize;

use crate::{Result, TrainError};

/// Settings of a range test: the rate grows exponentially from `start_lr` to `end_lr`
/// over `num_it` optimizer steps, and the test stops early once the smoothed loss
/// exceeds `stop_factor` × its minimum (fastai's defaults: 1e-7, 10, 100, 4).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LrFindSettings {
    /// First learning rate.
    pub start_lr: f64,
    /// Last learning rate.
    pub end_lr: f64,
    /// Steps at most.
    pub num_it: usize,
    /// Stop when the smoothed loss exceeds this multiple of the best smoothed loss.
    pub stop_factor: f64,
    /// Exponential smoothing of the loss (debiased), fastai's 0.98.
    pub beta: f64,
}

impl Default for LrFindSettings {
    fn default() -> Self {
        Self {
            start_lr: 1e-7,
            end_lr: 10.0,
            num_it: 100,
            stop_factor: 4.0,
            beta: 0.98,
        }
    }
}

/// One step of the test (a row of `lr_find.csv`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LrFindPoint {
    /// 1-based step.
    pub step: usize,
    /// The learning rate of the step.
    pub lr: f64,
    /// The batch loss before the step.
    pub loss: f64,
    /// Debiased exponential moving average of the loss.
    pub smoothed_loss: f64,
}

/// The curve and the rates it suggests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LrFindResult {
    /// The settings used.
    pub settings: LrFindSettings,
    /// Every step run.
    pub points: Vec<LrFindPoint>,
    /// True when the loss blew up before `num_it` steps.
    pub stopped_early: bool,
    /// One tenth of the rate with the lowest smoothed loss (fastai's `minimum`).
    pub suggested_min_div_10: f64,
    /// The rate where the smoothed loss falls fastest per unit of log-rate (fastai's
    /// `steep`).
    pub suggested_steepest: f64,
}

impl LrFindResult {
    /// `lr_find.csv`: `step,lr,loss,smoothed_loss`.
    pub fn csv(&self) -> String {
        let mut s = String::from("step,lr,loss,smoothed_loss\n");
        for p in &self.points {
            s.push_str(&format!(
                "{},{:e},{},{}\n",
                p.step, p.lr, p.loss, p.smoothed_loss
            ));
        }
        s
    }
}

/// Runs the test: `step(lr)` performs one optimizer step at rate `lr` on the next
/// batch and returns that batch's loss (a non-finite loss ends the test).
pub fn lr_range_test(
    settings: LrFindSettings,
    mut step: impl FnMut(f64) -> Result<f64>,
) -> Result<LrFindResult> {
    let s = settings;
    if !(s.start_lr > 0.0 && s.end_lr > s.start_lr && s.num_it >= 2) {
        return Err(TrainError::Config {
            field: "lr-find".into(),
            reason: format!(
                "needs 0 < start_lr < end_lr and at least 2 steps, got {} .. {} over {}",
                s.start_lr, s.end_lr, s.num_it
            ),
        });
    }
    let mut points = Vec::with_capacity(s.num_it);
    let mut avg = 0.0f64;
    let mut best = f64::INFINITY;
    let mut stopped_early = false;
    for i in 0..s.num_it {
        let lr = s.start_lr * (s.end_lr / s.start_lr).powf(i as f64 / (s.num_it - 1) as f64);
        let loss = step(lr)?;
        if !loss.is_finite() {
            stopped_early = true;
            break;
        }
        avg = s.beta * avg + (1.0 - s.beta) * loss;
        let smoothed = avg / (1.0 - s.beta.powi(i as i32 + 1));
        points.push(LrFindPoint {
            step: i + 1,
            lr,
            loss,
            smoothed_loss: smoothed,
        });
        best = best.min(smoothed);
        if smoothed > s.stop_factor * best {
            stopped_early = i + 1 < s.num_it;
            break;
        }
    }
    if points.len() < 2 {
        return Err(TrainError::Diverged {
            epoch: 0,
            step: points.len() + 1,
            what: "the learning-rate range test's loss at its first steps".into(),
        });
    }
    let (i_min, _) = points
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.smoothed_loss.total_cmp(&b.1.smoothed_loss))
        .unwrap_or((0, &points[0]));
    let slopes: Vec<(usize, f64)> = points
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            (
                i + 1,
                (w[1].smoothed_loss - w[0].smoothed_loss) / (w[1].lr.ln() - w[0].lr.ln()),
            )
        })
        .collect();
    let steep = slopes
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(i_min, |&(i, _)| i);
    Ok(LrFindResult {
        settings,
        suggested_min_div_10: points[i_min].lr / 10.0,
        suggested_steepest: points[steep].lr,
        points,
        stopped_early,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loss that falls with log-rate until 1e-2, then blows up: the minimum sits at
    /// 1e-2 (± the smoothing lag) and the test stops early.
    #[test]
    fn finds_the_valley_and_stops_on_blow_up() {
        let loss_at = |lr: f64| {
            let x = lr.log10() + 2.0; // 0 at 1e-2
            if x < 0.0 {
                1.0 + 0.1 * x.abs()
            } else {
                1.0 + 5.0 * x * x
            }
        };
        let r = lr_range_test(LrFindSettings::default(), |lr| Ok(loss_at(lr))).unwrap();
        assert!(r.stopped_early, "{} steps", r.points.len());
        assert!(r.points.len() < 100);
        let best = r.suggested_min_div_10 * 10.0;
        assert!((1e-3..=1e-1).contains(&best), "minimum at {best}");
        assert!(r.suggested_steepest < best, "{}", r.suggested_steepest);
        assert!(r.csv().starts_with("step,lr,loss,smoothed_loss\n1,1e-7,"));
        // rates grow geometrically
        let ratio = r.points[1].lr / r.points[0].lr;
        assert!((ratio - (1e8f64).powf(1.0 / 99.0)).abs() < 1e-9);
    }

    #[test]
    fn rejects_bad_settings_and_immediate_divergence() {
        let bad = LrFindSettings {
            start_lr: 1.0,
            end_lr: 0.1,
            ..Default::default()
        };
        assert!(lr_range_test(bad, |_| Ok(1.0)).is_err());
        assert!(lr_range_test(LrFindSettings::default(), |_| Ok(f64::NAN)).is_err());
    }
}
