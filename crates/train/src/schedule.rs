//! Learning-rate and momentum schedules.

/// fastai's `sched_cos`: cosine interpolation from `start` (at `pos` 0) to `end` (at 1).
fn cos_anneal(start: f64, end: f64, pos: f64) -> f64 {
    start + (1.0 + (std::f64::consts::PI * (1.0 - pos)).cos()) * (end - start) / 2.0
}

/// The one-cycle policy (Smith 2018) as fastai's `fit_one_cycle` and PyTorch's
/// `OneCycleLR(anneal_strategy="cos")` compute it: over the first `pct_start` of the
/// steps the learning rate rises from `lr_max / div` to `lr_max` along a cosine and
/// β₁ falls from 0.95 to 0.85; over the rest the rate falls to `lr_max / div_final`
/// and β₁ rises back to 0.95.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneCycle {
    /// Peak learning rate.
    pub lr_max: f64,
    /// Fraction of the steps spent warming up, in (0, 1).
    pub pct_start: f64,
    /// Initial rate = `lr_max / div`.
    pub div: f64,
    /// Final rate = `lr_max / div_final`.
    pub div_final: f64,
    /// Number of optimizer steps the cycle spans.
    pub total_steps: usize,
}

/// β₁ at the ends of the cycle and at its peak learning rate.
pub const ONE_CYCLE_MOMS: (f64, f64) = (0.95, 0.85);

impl OneCycle {
    /// Position in [0, 1] of `step` (0-based), fastai's `pct_train`.
    fn pos(&self, step: usize) -> f64 {
        if self.total_steps == 0 {
            return 0.0;
        }
        (step as f64 / self.total_steps as f64).clamp(0.0, 1.0)
    }

    /// The learning rate for optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        let p = self.pos(step);
        if p < self.pct_start {
            cos_anneal(self.lr_max / self.div, self.lr_max, p / self.pct_start)
        } else {
            let q = (p - self.pct_start) / (1.0 - self.pct_start);
            cos_anneal(self.lr_max, self.lr_max / self.div_final, q)
        }
    }

    /// Adam's β₁ for optimizer step `step` (0-based), cycled against the rate.
    pub fn beta1(&self, step: usize) -> f64 {
        let (hi, lo) = ONE_CYCLE_MOMS;
        let p = self.pos(step);
        if p < self.pct_start {
            cos_anneal(hi, lo, p / self.pct_start)
        } else {
            cos_anneal(lo, hi, (p - self.pct_start) / (1.0 - self.pct_start))
        }
    }
}

/// Learning rates of fastai's `slice(lo, hi)` over `n` layer groups: geometric steps
/// from `lo` to `hi` (`[hi]` for one group).
pub fn even_mults(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![hi],
        _ => {
            let step = (hi / lo).powf(1.0 / (n - 1) as f64);
            (0..n).map(|i| lo * step.powi(i as i32)).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values worked out by hand from the cosine formula.
    #[test]
    fn one_cycle_endpoints_and_peak() {
        let s = OneCycle {
            lr_max: 1e-3,
            pct_start: 0.25,
            div: 25.0,
            div_final: 1e4,
            total_steps: 100,
        };
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 + 1e-9 * b.abs();
        assert!(close(s.lr(0), 4e-5), "{}", s.lr(0));
        assert!(close(s.lr(25), 1e-3), "{}", s.lr(25));
        // halfway through the warm-up the cosine is at the midpoint
        let mid = OneCycle {
            total_steps: 8,
            pct_start: 0.5,
            ..s
        };
        assert!(close(mid.lr(2), (4e-5 + 1e-3) / 2.0), "{}", mid.lr(2));
        assert!(close(mid.beta1(2), 0.9), "{}", mid.beta1(2));
        assert!(close(s.lr(100), 1e-7), "{}", s.lr(100));
        assert!(close(s.beta1(0), 0.95) && close(s.beta1(25), 0.85));
        // rises, then falls
        let lrs: Vec<f64> = (0..=100).map(|i| s.lr(i)).collect();
        assert!(lrs[..=25].windows(2).all(|w| w[1] >= w[0]));
        assert!(lrs[25..].windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn even_mults_are_geometric() {
        let v = even_mults(1e-5, 1e-3, 3);
        assert_eq!(v.len(), 3);
        assert!((v[0] - 1e-5).abs() < 1e-18);
        assert!((v[1] - 1e-4).abs() < 1e-15);
        assert!((v[2] - 1e-3).abs() < 1e-15);
        assert_eq!(even_mults(1.0, 2.0, 1), vec![2.0]);
    }
}
