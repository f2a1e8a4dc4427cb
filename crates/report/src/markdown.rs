use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::{ReportError, Result, RunFolder, SplitMetrics};

fn metrics_row(s: &mut String, name: &str, m: &SplitMetrics) {
    let _ = writeln!(
        s,
        "| {name} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} |",
        m.auc, m.accuracy, m.precision, m.recall, m.specificity, m.f1, m.threshold
    );
}

fn rate(a: u64, b: u64) -> String {
    if a + b == 0 {
        "–".into()
    } else {
        format!("{:.1}%", 100.0 * a as f64 / (a + b) as f64)
    }
}

/// Renders `report.md` for a run folder: metrics per split, the test confusion
/// matrix with rates, the training history with the best epoch marked, and the
/// highest-loss false positives and false negatives of the test split.
pub fn render_markdown(run: &RunFolder) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# cxr run report: {}\n", run.dir.display());
    let _ = writeln!(s, "Model: `{}`", run.model);
    if let Some(e) = run.best_epoch {
        let _ = writeln!(s, "; best epoch by validation AUC: {e}");
    }
    if let Some(t) = run.train_seconds {
        let _ = writeln!(s, "; training time: {t:.1} s");
    }
    if let Some(sha) = run.config["data"]["sha256"].as_str() {
        let _ = writeln!(
            s,
            "\nData: `{}` (sha256 `{sha}`)",
            run.config["data"]["source"].as_str().unwrap_or("?")
        );
    }
    let _ = writeln!(s, "\n## Metrics\n");
    let _ = writeln!(
        s,
        "| split | AUC | accuracy | precision | recall | specificity | F1 | threshold |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    metrics_row(&mut s, "val", &run.val);
    metrics_row(&mut s, "test", &run.test);

    let t = &run.test;
    let _ = writeln!(
        s,
        "\n## Test confusion matrix (threshold {})\n",
        t.threshold
    );
    let _ = writeln!(s, "| true \\ predicted | normal | pneumonia | rate |");
    let _ = writeln!(s, "|---|---|---|---|");
    let _ = writeln!(
        s,
        "| normal | {} | {} | false-positive rate {} |",
        t.tn,
        t.fp,
        rate(t.fp, t.tn)
    );
    let _ = writeln!(
        s,
        "| pneumonia | {} | {} | false-negative rate {} |",
        t.fn_,
        t.tp,
        rate(t.fn_, t.tp)
    );

    let _ = writeln!(s, "\n## Training history\n");
    let _ = writeln!(s, "| epoch | train loss | val loss | val AUC |");
    let _ = writeln!(s, "|---|---|---|---|");
    for h in &run.history {
        let mark = if Some(h.epoch) == run.best_epoch {
            " (best)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "| {}{mark} | {:.4} | {:.4} | {:.4} |",
            h.epoch, h.train_loss, h.val_loss, h.val_auc
        );
    }

    let _ = writeln!(s, "\n## Failure cases (test split, highest loss first)\n");
    for (label, title) in [
        (0u8, "False positives (normal called pneumonia)"),
        (1, "False negatives (pneumonia missed)"),
    ] {
        let rows = run.top_failures("test", label, t.threshold, 10);
        let _ = writeln!(s, "### {title}: {} shown\n", rows.len());
        if rows.is_empty() {
            let _ = writeln!(s, "None.\n");
            continue;
        }
        let _ = writeln!(s, "| test index | P(pneumonia) | loss |");
        let _ = writeln!(s, "|---|---|---|");
        for r in rows {
            let _ = writeln!(s, "| {} | {:.4} | {:.3} |", r.index, r.prob, r.loss());
        }
        let _ = writeln!(s);
    }
    s
}

/// Reads the run folder at `dir` and writes `report.md` into it atomically.
pub fn write_report(dir: &Path) -> Result<std::path::PathBuf> {
    let run = RunFolder::open(dir)?;
    let text = render_markdown(&run);
    let path = dir.join("report.md");
    let tmp = dir.join(format!(".report.md.tmp-{}", std::process::id()));
    let io = |source| ReportError::Io {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })?;
    Ok(path)
}
