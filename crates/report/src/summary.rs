use std::fmt::Write as _;

use crate::RunFolder;

/// One line of the pipeline's comparison table.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// Run folder name.
    pub run: String,
    /// Model name.
    pub model: String,
    /// Seed, if recorded in `config.json`.
    pub seed: Option<u64>,
    /// Input size, if recorded.
    pub image_size: Option<u64>,
    /// Validation AUC.
    pub val_auc: f64,
    /// Test AUC.
    pub test_auc: f64,
    /// Test accuracy.
    pub test_accuracy: f64,
    /// Test F1.
    pub test_f1: f64,
    /// Training seconds.
    pub seconds: Option<f64>,
}

/// One [`SummaryRow`] per run.
pub fn compare_runs(runs: &[RunFolder]) -> Vec<SummaryRow> {
    runs.iter()
        .map(|r| SummaryRow {
            run: r
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            model: r.model.clone(),
            seed: r.config["train"]["seed"].as_u64(),
            image_size: r.config["train"]["image_size"].as_u64(),
            val_auc: r.val.auc,
            test_auc: r.test.auc,
            test_accuracy: r.test.accuracy,
            test_f1: r.test.f1,
            seconds: r.train_seconds,
        })
        .collect()
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// `summary.csv`: `run,model,seed,image_size,val_auc,test_auc,test_accuracy,test_f1,seconds`.
pub fn render_summary_csv(rows: &[SummaryRow]) -> String {
    let mut s =
        String::from("run,model,seed,image_size,val_auc,test_auc,test_accuracy,test_f1,seconds\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{:.6},{:.6},{:.6},{:.6},{}",
            r.run,
            r.model,
            opt(r.seed),
            opt(r.image_size),
            r.val_auc,
            r.test_auc,
            r.test_accuracy,
            r.test_f1,
            opt(r.seconds.map(|s| format!("{s:.1}")))
        );
    }
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A Markdown table of the runs plus, per model, the median test AUC, accuracy and
/// F1 over its runs (seeds).
pub fn render_summary_markdown(rows: &[SummaryRow]) -> String {
    let mut s = String::from(
        "| run | model | seed | size | val AUC | test AUC | test acc | test F1 | seconds |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {} |",
            r.run,
            r.model,
            opt(r.seed),
            opt(r.image_size),
            r.val_auc,
            r.test_auc,
            r.test_accuracy,
            r.test_f1,
            opt(r.seconds.map(|s| format!("{s:.0}")))
        );
    }
    let mut models: Vec<&str> = rows.iter().map(|r| r.model.as_str()).collect();
    models.sort();
    models.dedup();
    for m in models {
        let of: Vec<&SummaryRow> = rows.iter().filter(|r| r.model == m).collect();
        let _ = writeln!(
            s,
            "\n**{m}**, median over {} run(s): test AUC {:.4}, accuracy {:.4}, F1 {:.4}",
            of.len(),
            median(of.iter().map(|r| r.test_auc).collect()),
            median(of.iter().map(|r| r.test_accuracy).collect()),
            median(of.iter().map(|r| r.test_f1).collect()),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
