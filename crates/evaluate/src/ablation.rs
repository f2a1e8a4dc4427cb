//! `cxr ablation`: what each change of a recipe did, measured on pairs of runs.

use std::path::{Path, PathBuf};

use cxr_runfolder::{Ablation, AblationPair, AblationRow, RunConfig, names};
use tracing::info;

use crate::{EvaluateError, EvaluateOptions, Result, evaluate};

/// One pair of an ablation: the same recipe without and with one change.
#[derive(Debug, Clone, PartialEq)]
pub struct AblationInput {
    /// The change, in words; pairs with the same words form one row.
    pub change: String,
    /// The run folder without the change.
    pub before: PathBuf,
    /// The run folder with it.
    pub after: PathBuf,
}

/// Scores both runs of every pair on the same images of `data` (`opts.split`, test by
/// default) with the paired DeLong test of their AUC difference, one evaluation folder
/// per pair under `out/pairs/`, and writes `out/ablation.json`: rows in the order their
/// change first appears, each with its pairs and the medians over them. `opts.out` and
/// `opts.compare` are set per pair.
///
/// `previous`, an earlier ablation of the same images (the same `data` as given and the
/// same split), is extended: its rows come first, unchanged, and the new pairs' folders
/// are numbered after its own. A change it already has is refused.
pub fn ablation(
    pairs: &[AblationInput],
    data: &Path,
    opts: &EvaluateOptions,
    out: &Path,
    previous: Option<&Ablation>,
) -> Result<Ablation> {
    if pairs.is_empty() {
        return Err(EvaluateError::setting("pair", "no pair of runs was given"));
    }
    if let Some(prev) = previous {
        if prev.data != data.display().to_string() {
            return Err(EvaluateError::setting(
                "extend",
                format!(
                    "the earlier ablation scored {}, not {}",
                    prev.data,
                    data.display()
                ),
            ));
        }
        if let Some(p) = pairs
            .iter()
            .find(|p| prev.rows.iter().any(|r| r.change == p.change))
        {
            return Err(EvaluateError::setting(
                "extend",
                format!("the earlier ablation already has the change {:?}", p.change),
            ));
        }
    }
    let numbered = previous.map_or(0, |p| p.rows.iter().map(|r| r.pairs.len()).sum());
    let file = out.join(names::ABLATION);
    if file.exists() {
        return Err(EvaluateError::setting(
            "out",
            format!(
                "{} already holds an ablation; choose another folder",
                out.display()
            ),
        ));
    }
    let mut rows: Vec<(String, Vec<AblationPair>)> = Vec::new();
    let mut images = 0;
    let mut split = None;
    for (i, p) in pairs.iter().enumerate() {
        let rel = format!("pairs/{:02}", numbered + i + 1);
        let pair_opts = EvaluateOptions {
            out: Some(out.join(&rel)),
            compare: Some(p.before.clone()),
            ..opts.clone()
        };
        let outcome = evaluate(&p.after, data, &pair_opts)?;
        let c = outcome.evaluation.comparison.ok_or_else(|| {
            EvaluateError::setting(
                "pair",
                format!(
                    "{} against {}: the set has one class only, so there is no AUC to compare",
                    p.after.display(),
                    p.before.display()
                ),
            )
        })?;
        images = c.n;
        split = outcome.evaluation.set.split.clone();
        if let Some(prev) = previous
            && (prev.split != split || prev.images != images)
        {
            return Err(EvaluateError::setting(
                "extend",
                format!(
                    "the earlier ablation scored {} images of split {:?}, this one {} of {:?}",
                    prev.images, prev.split, images, split
                ),
            ));
        }
        let seed = RunConfig::read(&p.after.join(names::CONFIG))?.train.seed;
        info!(
            change = p.change.as_str(),
            seed,
            before = format!("{:.4}", c.auc_b),
            after = format!("{:.4}", c.auc_a),
            p = format!("{:.3}", c.delong_p),
            "ablation pair scored"
        );
        let pair = AblationPair {
            before: p.before.display().to_string(),
            after: p.after.display().to_string(),
            seed,
            auc_before: c.auc_b,
            auc_after: c.auc_a,
            difference: c.auc_difference,
            difference_low: c.auc_difference_low,
            difference_high: c.auc_difference_high,
            delong_p: c.delong_p,
            evaluation: rel,
        };
        match rows.iter_mut().find(|(change, _)| *change == p.change) {
            Some((_, v)) => v.push(pair),
            None => rows.push((p.change.clone(), vec![pair])),
        }
    }
    let ablation = Ablation {
        data: data.display().to_string(),
        split,
        images,
        rows: previous
            .iter()
            .flat_map(|p| p.rows.iter().cloned())
            .chain(rows.into_iter().map(|(change, pairs)| {
                let of = |f: fn(&AblationPair) -> f64| median(pairs.iter().map(f).collect());
                AblationRow {
                    median_before: of(|p| p.auc_before),
                    median_after: of(|p| p.auc_after),
                    median_difference: of(|p| p.difference),
                    change,
                    pairs,
                }
            }))
            .collect(),
    };
    ablation.write(&file)?;
    Ok(ablation)
}

/// The median (the mean of the middle two for an even count); `values` is not empty.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![0.5]), 0.5);
    }
}
