use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cxr_runfolder::{Ablation, Csv, ModelKind, RunFolder, names};

use crate::doc::{Block, Doc, to_html, to_markdown};
use crate::figures;
use crate::files::{format_err, read, write_atomic};

use crate::Result;

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
    /// Whether training started from pretrained weights (`config.json`'s
    /// `pretrained`; `None` for runs that predate it).
    pub pretrained: Option<bool>,
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
            run: r.name(),
            model: r.model.clone(),
            seed: Some(r.config.train.seed),
            image_size: Some(r.config.train.image_size as u64),
            pretrained: r.config.pretrained,
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

/// `summary.csv`: `run,model,seed,image_size,pretrained,val_auc,test_auc,test_accuracy,test_f1,seconds`.
pub fn render_summary_csv(rows: &[SummaryRow]) -> String {
    let mut s = format!("{SUMMARY_CSV_HEADER}\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{:.6},{:.6},{:.6},{:.6},{}",
            r.run,
            r.model,
            opt(r.seed),
            opt(r.image_size),
            opt(r.pretrained),
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
        "| run | model | seed | size | pretrained | val AUC | test AUC | test acc | test F1 | seconds |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {} |",
            r.run,
            r.model,
            opt(r.seed),
            opt(r.image_size),
            opt(r.pretrained),
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

/// Header of `summary.csv`.
pub const SUMMARY_CSV_HEADER: &str =
    "run,model,seed,image_size,pretrained,val_auc,test_auc,test_accuracy,test_f1,seconds";

/// The header pipelines wrote before the `pretrained` column existed (still read).
const SUMMARY_CSV_HEADER_V1: &str =
    "run,model,seed,image_size,val_auc,test_auc,test_accuracy,test_f1,seconds";

/// The headline run's test accuracy at its Youden threshold moved to the test split's
/// prevalence, with that threshold and prevalence, from the pipeline's
/// [`names::HEADLINE_EVALUATION`] folder (`None` when the pipeline has none, or it
/// evaluated another run).
fn headline_adapted_accuracy(dir: &Path, r: &RunFolder) -> Result<Option<(f64, f64, f64)>> {
    let file = dir.join(names::HEADLINE_EVALUATION).join(names::EVALUATION);
    if !file.is_file() {
        return Ok(None);
    }
    let e = cxr_runfolder::Evaluation::read(&file)?;
    if Path::new(&e.run).file_name() != r.dir.file_name() {
        return Ok(None);
    }
    Ok(e.prevalence
        .adapted_points
        .iter()
        .find(|p| p.name == "youden")
        .map(|p| {
            (
                p.accuracy.estimate,
                p.threshold,
                e.prevalence.true_prevalence,
            )
        }))
}

/// Opens the run folders a pipeline folder's `summary.csv` lists, in its order.
pub fn open_pipeline(dir: &Path) -> Result<Vec<RunFolder>> {
    let path = dir.join("summary.csv");
    let text = read(&path)?;
    let csv = Csv::parse(&path, &text, &[SUMMARY_CSV_HEADER, SUMMARY_CSV_HEADER_V1])?;
    let mut runs = Vec::with_capacity(csv.rows.len());
    for (line, f) in &csv.rows {
        let name = csv.text(f, "run")?;
        if name.is_empty() || name.contains(['/', '\\']) || name == ".." {
            return Err(format_err(
                &path,
                format!("line {line}: `run` is not a folder name: `{name}`"),
            ));
        }
        runs.push(RunFolder::open(&dir.join(name))?);
    }
    if runs.is_empty() {
        return Err(format_err(&path, "no runs listed"));
    }
    Ok(runs)
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

fn pipeline_doc(dir: &Path, runs: &[RunFolder]) -> Result<Doc> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string());
    let mut d = Doc {
        title: format!("cxr pipeline report: {name}"),
        ..Doc::default()
    };
    let mut models: Vec<&str> = runs.iter().map(|r| r.model.as_str()).collect();
    models.sort();
    models.dedup();
    d.p(format!(
        "{} run(s) of {} model(s): {}. Each run has its own report (links at the end).",
        runs.len(),
        models.len(),
        models.join(", ")
    ));

    d.h(1, "Runs");
    let rows = runs
        .iter()
        .map(|r| {
            let t = &r.test;
            let auc = match (t.auc_ci_low, t.auc_ci_high) {
                (Some(l), Some(h)) => format!("{:.4} [{l:.4}, {h:.4}]", t.auc),
                _ => format!("{:.4}", t.auc),
            };
            vec![
                r.name(),
                r.model.clone(),
                r.config.train.seed.to_string(),
                format!("{:.4}", r.val.auc),
                auc,
                format!("{:.4}", t.accuracy),
                format!("{:.4}", t.recall),
                format!("{:.4}", t.specificity),
                format!("{:.4}", t.f1),
                r.calibration
                    .as_ref()
                    .map(|c| format!("{:.4} → {:.4}", c.ece_before, c.ece_after))
                    .unwrap_or_else(|| "–".into()),
                opt(r.train_seconds.map(|s| format!("{s:.0}"))),
            ]
        })
        .collect();
    d.table(
        &[
            "run",
            "model",
            "seed",
            "val AUC",
            "test AUC [95% CI]",
            "test accuracy",
            "sensitivity",
            "specificity",
            "F1",
            "ECE before → after T",
            "train s",
        ],
        rows,
    );
    d.h(2, "Per model, over seeds");
    let rows = models
        .iter()
        .map(|m| {
            let of: Vec<&RunFolder> = runs.iter().filter(|r| r.model == *m).collect();
            let stat = |f: fn(&RunFolder) -> f64| {
                let (mean, sd) = mean_sd(&of.iter().map(|r| f(r)).collect::<Vec<_>>());
                format!("{mean:.4} ± {sd:.4}")
            };
            vec![
                m.to_string(),
                of.len().to_string(),
                stat(|r| r.test.auc),
                stat(|r| r.test.accuracy),
                stat(|r| r.test.recall),
                stat(|r| r.test.specificity),
                stat(|r| r.test.f1),
            ]
        })
        .collect();
    d.table(
        &[
            "model",
            "runs",
            "test AUC",
            "accuracy",
            "sensitivity",
            "specificity",
            "F1",
        ],
        rows,
    );
    d.p("Mean ± sample standard deviation over the model's runs (seeds).");
    let entries: Vec<figures::ComparisonEntry> = runs
        .iter()
        .map(|r| figures::ComparisonEntry {
            run: r.name(),
            model: r.model.clone(),
            auc: r.test.auc,
            ci: r.test.auc_ci_low.zip(r.test.auc_ci_high),
        })
        .collect();
    d.figure(figures::model_comparison(&entries)?);
    if runs.iter().any(|r| r.roc.is_some()) {
        d.figure(figures::roc_overlay(runs)?);
    }

    // The headline: an ensemble the pipeline built, else its first ResNet18 run (a fixed
    // rule: nothing here is picked by test scores).
    let headline = runs.iter().find(|r| !r.members.is_empty()).or_else(|| {
        runs.iter()
            .find(|r| r.config.train.model == ModelKind::Resnet18)
    });
    if let Some(r) = headline {
        d.h(1, format!("Headline model: {}", r.name()));
        let at = |name: &str| {
            r.operating_points
                .iter()
                .find(|p| p.name == name)
                .map(|p| format!("{:.4} (threshold {:.3})", p.accuracy, p.threshold))
                .unwrap_or_else(|| "–".into())
        };
        let adapted = headline_adapted_accuracy(dir, r)?
            .map(|(acc, t, prevalence)| {
                format!(
                    ", {acc:.4} at the Youden threshold moved to the test split's prevalence \
                     {prevalence:.3} by Bayes' rule on the calibrated scale (threshold {t:.3}; \
                     `cxr evaluate` in {}/, the one figure that uses a property of the test \
                     labels)",
                    names::HEADLINE_EVALUATION
                )
            })
            .unwrap_or_default();
        d.p(format!(
            "{}: test AUC {:.4}; test accuracy {} at the validation-chosen Youden point, \
             {:.4} at 0.5{adapted}. Every choice (the kept epoch, the temperature, the \
             operating points) was made on validation; the test split was scored once per \
             run, for the figures. The ablation behind the recipe is in cxr's \
             docs/headline.md and, when the pipeline was given one, below.",
            r.model,
            r.test.auc,
            at("youden"),
            r.test.accuracy
        ));
        if !r.members.is_empty() {
            crate::markdown::ensemble_section(&mut d, r);
        }
    }

    let ablation_file = dir.join(names::ABLATION);
    if ablation_file.is_file() {
        crate::ablation::ablation_section(&mut d, &Ablation::read(&ablation_file)?);
    }

    d.h(1, "Hypotheses across runs");
    let mut ids: Vec<(String, String)> = Vec::new();
    for r in runs {
        if let Some(fm) = &r.audit.failure_modes {
            for h in &fm.hypotheses {
                if !ids.iter().any(|(i, _)| *i == h.id) {
                    ids.push((h.id.clone(), h.statement.clone()));
                }
            }
        }
    }
    if ids.is_empty() {
        d.not_computed("failure modes (no run has audit/failure_modes.json)");
    } else {
        let mut header = vec!["hypothesis".to_string()];
        header.extend(runs.iter().map(|r| r.name()));
        let rows = ids
            .iter()
            .map(|(id, statement)| {
                let mut row = vec![statement.clone()];
                row.extend(runs.iter().map(|r| {
                    r.audit
                        .failure_modes
                        .as_ref()
                        .and_then(|fm| fm.hypotheses.iter().find(|h| h.id == *id))
                        .map(|h| h.verdict_text())
                        .unwrap_or_else(|| "–".into())
                }));
                row
            })
            .collect();
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        d.table(&header, rows);
        for r in runs {
            if let Some(fm) = &r.audit.failure_modes {
                d.h(2, r.name());
                for h in &fm.hypotheses {
                    d.blocks.push(Block::Verdict {
                        verdict: h.verdict_text(),
                        statement: h.statement.clone(),
                        summary: h.summary.clone(),
                    });
                }
            }
        }
    }

    d.h(1, "Robustness across runs");
    let with: Vec<&RunFolder> = runs
        .iter()
        .filter(|r| r.audit.robustness.as_ref().is_some_and(|v| !v.is_empty()))
        .collect();
    if with.is_empty() {
        d.not_computed("robustness sweep (no run has audit/robustness.csv)");
    } else {
        let mut kinds: Vec<String> = Vec::new();
        for r in &with {
            for row in r.audit.robustness.iter().flatten() {
                if !kinds.contains(&row.corruption) {
                    kinds.push(row.corruption.clone());
                }
            }
        }
        let mut header = vec!["corruption (highest severity)".to_string()];
        header.extend(with.iter().map(|r| format!("{} AUC", r.name())));
        let rows = kinds
            .iter()
            .map(|k| {
                let mut row = vec![k.clone()];
                row.extend(with.iter().map(|r| {
                    r.audit
                        .robustness
                        .iter()
                        .flatten()
                        .filter(|x| x.corruption == *k)
                        .max_by_key(|x| x.severity)
                        .map(|x| match x.auc {
                            Some(a) => format!("{a:.4} (severity {})", x.severity),
                            None => format!("– (severity {})", x.severity),
                        })
                        .unwrap_or_else(|| "–".into())
                }));
                row
            })
            .collect();
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        d.table(&header, rows);
    }

    d.h(1, "Run reports");
    d.blocks.push(Block::Links(
        runs.iter()
            .map(|r| (r.name(), format!("{}/report.html", r.name())))
            .collect(),
    ));
    Ok(d)
}

/// The files [`write_pipeline_report`] wrote.
#[derive(Debug, Clone)]
pub struct PipelineReportFiles {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html` (self-contained; links to each run's own report).
    pub html: PathBuf,
    /// `figures/*.png`.
    pub figures: Vec<PathBuf>,
}

/// Writes the pipeline folder's `report.md`, `report.html` and `figures/`
/// comparing `runs` (each run folder's own report is written by
/// [`write_report`](crate::write_report)).
pub fn write_pipeline_report(dir: &Path, runs: &[RunFolder]) -> Result<PipelineReportFiles> {
    if runs.is_empty() {
        return Err(format_err(dir, "no runs to compare"));
    }
    let doc = pipeline_doc(dir, runs)?;
    let fig_dir = dir.join("figures");
    std::fs::create_dir_all(&fig_dir).map_err(|source| crate::ReportError::Io {
        path: fig_dir.clone(),
        source,
    })?;
    let mut figures = Vec::new();
    for f in &doc.figures {
        let p = fig_dir.join(format!("{}.png", f.name));
        write_atomic(&p, &f.png)?;
        figures.push(p);
    }
    let markdown = dir.join("report.md");
    write_atomic(&markdown, to_markdown(&doc).as_bytes())?;
    let html = dir.join("report.html");
    write_atomic(
        &html,
        to_html(&doc, dir, &dir.join("summary.csv"))?.as_bytes(),
    )?;
    Ok(PipelineReportFiles {
        markdown,
        html,
        figures,
    })
}
