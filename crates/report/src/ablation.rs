//! The ablation table (`ablation.json`), alone (`cxr ablation` → `ablation.md`) and as
//! a section of the pipeline report.

use cxr_runfolder::Ablation;

use crate::doc::{Doc, to_markdown};

/// `p` as the table shows it: three decimals, or `< 0.001`.
fn p_value(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// Where the figures come from and what they are, in one sentence.
fn method(a: &Ablation) -> String {
    format!(
        "Each change measured on pairs of runs with the same seed, without and with it, \
         both scored on the same {} images of {}{}: the AUC of each, their difference \
         (with − without) and the paired DeLong test's two-sided p; medians over the \
         pairs of a change.",
        a.images,
        a.data,
        a.split
            .as_deref()
            .map(|s| format!(" (split {s})"))
            .unwrap_or_default()
    )
}

/// The table: one row per change.
fn table(d: &mut Doc, a: &Ablation) {
    let join = |f: &dyn Fn(&cxr_runfolder::AblationPair) -> String, pairs: &[_]| {
        let v: Vec<String> = pairs.iter().map(f).collect();
        v.join(" / ")
    };
    let rows = a
        .rows
        .iter()
        .map(|r| {
            vec![
                r.change.clone(),
                join(&|p| p.seed.to_string(), &r.pairs),
                format!("{:.4}", r.median_before),
                format!("{:.4}", r.median_after),
                format!("{:+.4}", r.median_difference),
                join(&|p| format!("{:+.4}", p.difference), &r.pairs),
                join(&|p| p_value(p.delong_p), &r.pairs),
            ]
        })
        .collect();
    d.table(
        &[
            "change",
            "seeds",
            "AUC without (median)",
            "with (median)",
            "Δ AUC (median)",
            "Δ AUC per seed",
            "paired DeLong p per seed",
        ],
        rows,
    );
}

/// `ablation.md`: the method and the table.
pub fn render_ablation_markdown(a: &Ablation) -> String {
    let mut d = Doc {
        title: "Ablation".into(),
        ..Doc::default()
    };
    d.p(method(a));
    table(&mut d, a);
    to_markdown(&d)
}

/// The pipeline report's section: the ablation given to the pipeline, said to be
/// measured elsewhere (the pipeline trains none of its pairs).
pub(crate) fn ablation_section(d: &mut Doc, a: &Ablation) {
    d.h(1, "Ablation behind the recipe");
    d.p(format!(
        "{} Measured by `cxr ablation` and given to this pipeline with `--ablation`; the \
         pipeline did not train these runs.",
        method(a)
    ));
    table(d, a);
}

#[cfg(test)]
mod tests {
    use cxr_runfolder::{AblationPair, AblationRow};

    use super::*;

    #[test]
    fn the_table_lists_each_pair_in_order() {
        let pair = |seed, d: f64, p| AblationPair {
            before: format!("b{seed}"),
            after: format!("a{seed}"),
            seed,
            auc_before: 0.97,
            auc_after: 0.97 + d,
            difference: d,
            difference_low: d - 0.01,
            difference_high: d + 0.01,
            delong_p: p,
            evaluation: format!("pairs/{seed:02}"),
        };
        let a = Ablation {
            data: "pneumoniamnist.npz".into(),
            split: Some("test".into()),
            images: 624,
            rows: vec![AblationRow {
                change: "best → last epoch".into(),
                pairs: vec![pair(0, 0.0094, 0.0004), pair(1, -0.002, 0.41)],
                median_before: 0.97,
                median_after: 0.9737,
                median_difference: 0.0037,
            }],
        };
        let md = render_ablation_markdown(&a);
        assert!(
            md.contains("624 images of pneumoniamnist.npz (split test)"),
            "{md}"
        );
        assert!(
            md.contains(
                "| best → last epoch | 0 / 1 | 0.9700 | 0.9737 | +0.0037 | +0.0094 / -0.0020 | < 0.001 / 0.410 |"
            ),
            "{md}"
        );
    }
}
