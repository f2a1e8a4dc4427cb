//! The report of one run folder: `report.md`, `report.html`, `figures/*.png` and
//! `predictions.parquet`.

use std::path::{Path, PathBuf};

use crate::doc::{Block, Doc, Tile, to_html, to_markdown};
use crate::figures::{self, pretty_point};
use crate::files::write_atomic;
use cxr_runfolder::{AugmentPreset, KeepEpoch, OptimizerKind, RunConfig, RunFolder, Schedule};
use cxr_runfolder::{FailureModes, GalleryKind, GalleryRow, Logit, RobustnessRow};

use crate::Result;

fn f4(v: f64) -> String {
    format!("{v:.4}")
}

fn pct(k: u64, n: u64) -> String {
    if n == 0 {
        "–".into()
    } else {
        format!("{:.1}%", 100.0 * k as f64 / n as f64)
    }
}

fn opt4(v: Option<f64>) -> String {
    v.map(f4).unwrap_or_else(|| "–".into())
}

fn ci(lo: f64, hi: f64) -> String {
    format!("{lo:.4} – {hi:.4}")
}

fn p_value(p: Option<f64>) -> String {
    match p {
        None => "–".into(),
        Some(p) if p < 1e-4 => format!("{p:.1e}"),
        Some(p) => format!("{p:.4}"),
    }
}

fn logit_cell(l: &Logit) -> String {
    match (l.coef, l.ci_low, l.ci_high) {
        (Some(c), Some(a), Some(b)) => {
            format!("{c:+.3} [{a:+.3}, {b:+.3}], p {}", p_value(l.p_value))
        }
        (Some(c), _, _) => format!("{c:+.3}, p {}", p_value(l.p_value)),
        _ => match &l.error {
            Some(e) => format!("not fitted: {e}"),
            None => "–".into(),
        },
    }
}

fn test_cell(t: Option<&cxr_runfolder::AssociationTest>) -> String {
    match t {
        None => "–".into(),
        Some(t) => match (&t.error, t.p_value) {
            (_, Some(p)) => p_value(Some(p)),
            (Some(e), None) => format!("n/a: {e}"),
            (None, None) => "–".into(),
        },
    }
}

fn opt_range(lo: Option<f64>, hi: Option<f64>) -> String {
    let f = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "?".into());
    format!("{} – {}", f(lo), f(hi))
}

fn label_name(l: u8) -> &'static str {
    if l == 1 { "pneumonia" } else { "normal" }
}

/// One sentence on how the run was trained, from `config.json`.
fn recipe_line(config: &RunConfig) -> String {
    let t = &config.train;
    let mut s = format!(
        "Recipe: {} px, batch {}, {} {} (weight decay {}), ",
        t.image_size,
        t.batch_size,
        match t.optimizer.kind {
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
        },
        t.optimizer.lr,
        t.optimizer.weight_decay,
    );
    if t.freeze_epochs > 0 {
        s.push_str(&format!(
            "{} frozen + {} unfrozen epochs (discriminative rates ×{}), ",
            t.freeze_epochs, t.epochs, t.lr_mult
        ));
    } else {
        s.push_str(&format!("{} epochs, ", t.epochs));
    }
    s.push_str(match t.schedule {
        Schedule::OneCycle { .. } => "one-cycle schedule, ",
        Schedule::Constant => "constant learning rate, ",
    });
    let mut regularised = String::new();
    if let Some(a) = t.mixup {
        regularised.push_str(&format!(", mixup α = {a}"));
    }
    if t.label_smoothing > 0.0 {
        regularised.push_str(&format!(", label smoothing ε = {}", t.label_smoothing));
    }
    if let Some(d) = t.ema {
        regularised.push_str(&format!(", weights averaged (EMA decay {d})"));
    }
    if let Some(a) = t.self_distillation {
        regularised.push_str(&format!(", self-distilled (PS-KD α_T = {a})"));
    }
    s.push_str(&format!(
        "augmentation {}{regularised}, seed {}; weights: {}.",
        match t.augment {
            AugmentPreset::None => "none",
            AugmentPreset::Light => "light",
            AugmentPreset::Strong => "strong",
        },
        t.seed,
        match config.pretrained {
            Some(true) => format!("pretrained ({})", t.weights),
            _ => "from scratch".to_string(),
        }
    ));
    s
}

/// An ensemble's members, each alone against the ensemble on the test split.
pub(crate) fn ensemble_section(d: &mut Doc, run: &RunFolder) {
    d.h(1, "Ensemble");
    d.p(format!(
        "The model is the mean of the logits of {} runs (equal weights: nothing about the \
         combination is fitted). Its temperature, operating points and scaling were fitted \
         on validation like any run's; the test split was scored once. Each member alone, \
         on the same test images, with the paired DeLong test of the ensemble's AUC gain:",
        run.members.len()
    ));
    let rows = run
        .members
        .iter()
        .map(|m| {
            vec![
                m.run.clone(),
                m.seed.to_string(),
                format!("{:.4}", m.val_auc),
                format!("{:.4}", m.test_auc),
                format!("{:+.4}", m.test_auc_gain),
                format!("{:.2}", m.delong_z),
                format!("{:.3}", m.delong_p),
            ]
        })
        .collect();
    d.table(
        &[
            "member",
            "seed",
            "val AUC",
            "test AUC",
            "ensemble gain",
            "DeLong z",
            "p",
        ],
        rows,
    );
}

/// Builds the document of one run; `figs` are the run's figures (consumed).
pub(crate) fn run_doc(run: &RunFolder, mut figs: Vec<figures::Figure>) -> Doc {
    let mut d = Doc {
        title: format!("cxr run report: {}", run.name()),
        ..Doc::default()
    };
    let mut head = format!("Model: {}", run.model);
    if let Some(e) = run.best_epoch {
        head.push_str(&match run.config.train.keep {
            KeepEpoch::Best => format!("; best epoch by validation AUC: {e}"),
            KeepEpoch::Last => format!("; weights of the last epoch, {e}"),
        });
    }
    if let Some(t) = run.train_seconds {
        head.push_str(&format!("; training time: {t:.1} s"));
    }
    head.push_str(&format!(
        "; {} test and {} validation predictions.",
        run.predictions.iter().filter(|p| p.split == "test").count(),
        run.predictions.iter().filter(|p| p.split == "val").count()
    ));
    d.p(head);
    let data = &run.config.data;
    if !data.sha256.is_empty() {
        d.p(format!(
            "Data: {} (sha256 {}).",
            if data.source.is_empty() {
                "?"
            } else {
                &data.source
            },
            data.sha256
        ));
    }
    d.p(recipe_line(&run.config));
    if let Some(reason) = &run.config.provenance.pretrained_fallback {
        d.p(format!("**Not pretrained:** {reason}."));
    }
    if let Some(x) = &data.excluded_duplicates {
        d.p(format!(
            "Trained with --exclude-duplicates: {} training images left out ({} duplicating a validation or test image, {} repeated copies within train).",
            x.train_removed, x.duplicating_val_or_test, x.repeated_within_train
        ));
    }

    summary_section(&mut d, run);

    if !run.members.is_empty() {
        ensemble_section(&mut d, run);
    }
    d.h(1, "Training");
    if !run.members.is_empty() {
        d.p("An ensemble trains no epochs of its own; each member's report has its training curves.");
    } else if run.history.is_empty() {
        d.not_computed("training curves (history.csv has no rows)");
    } else {
        d.figure_named(&mut figs, "training_curves");
        let rows = run
            .history
            .iter()
            .map(|h| {
                let mark = if Some(h.epoch) == run.best_epoch {
                    " (kept)"
                } else {
                    ""
                };
                vec![
                    format!("{}{mark}", h.epoch),
                    f4(h.train_loss),
                    f4(h.val_loss),
                    f4(h.val_auc),
                ]
            })
            .collect();
        d.table(&["epoch", "train loss", "val loss", "val AUC"], rows);
    }
    d.h(2, "Learning-rate finder");
    if run.lr_find.as_ref().is_some_and(|r| !r.is_empty()) {
        d.figure_named(&mut figs, "lr_find");
    } else {
        d.not_computed("learning-rate finder (no lr_find.csv in the run folder)");
    }

    d.h(1, "Decision thresholds");
    let t = &run.test;
    d.h(
        2,
        format!("Test confusion matrix (threshold {})", t.threshold),
    );
    d.table(
        &["true \\ predicted", "normal", "pneumonia", "error rate"],
        vec![
            vec![
                "normal".into(),
                t.tn.to_string(),
                t.fp.to_string(),
                format!("false-positive rate {}", pct(t.fp, t.fp + t.tn)),
            ],
            vec![
                "pneumonia".into(),
                t.fn_.to_string(),
                t.tp.to_string(),
                format!("false-negative rate {}", pct(t.fn_, t.fn_ + t.tp)),
            ],
        ],
    );
    d.figure_named(&mut figs, "confusion");
    d.h(2, "Operating points");
    if run.operating_points.is_empty() {
        d.not_computed("operating points (metrics.json has no operating_points)");
    } else {
        d.p("Thresholds chosen on the validation split, scored on the test split.");
        let rows = run
            .operating_points
            .iter()
            .map(|p| {
                vec![
                    pretty_point(p),
                    f4(p.threshold),
                    f4(p.recall),
                    f4(p.specificity),
                    f4(p.precision),
                    f4(p.accuracy),
                    f4(p.f1),
                    p.tp.to_string(),
                    p.fp.to_string(),
                    p.tn.to_string(),
                    p.fn_.to_string(),
                ]
            })
            .collect();
        d.table(
            &[
                "operating point",
                "threshold",
                "sensitivity",
                "specificity",
                "precision",
                "accuracy",
                "F1",
                "TP",
                "FP",
                "TN",
                "FN",
            ],
            rows,
        );
    }
    d.h(2, "ROC and precision–recall curves");
    if run.roc.is_none() && run.pr.is_none() {
        d.not_computed("ROC and PR curves (no roc.csv or pr.csv in the run folder)");
    }
    d.figure_named(&mut figs, "roc");
    d.figure_named(&mut figs, "pr");

    calibration_section(&mut d, run, &mut figs);
    gallery_section(&mut d, run);
    failure_modes_section(&mut d, run.audit.failure_modes.as_ref(), &mut figs);
    data_audit_section(&mut d, run);
    robustness_section(&mut d, run.audit.robustness.as_deref(), &mut figs);
    provenance_section(&mut d, run);
    d
}

fn summary_section(d: &mut Doc, run: &RunFolder) {
    let (v, t) = (&run.val, &run.test);
    d.h(1, "Summary");
    let b = run.bootstrap.as_ref();
    let bci = |f: fn(&cxr_runfolder::BootstrapCi) -> cxr_runfolder::Interval| {
        b.map(|b| {
            let i = f(b);
            ci(i.low, i.high)
        })
        .unwrap_or_else(|| "–".into())
    };
    let auc_ci = match (t.auc_ci_low, t.auc_ci_high) {
        (Some(l), Some(h)) => ci(l, h),
        _ => "–".into(),
    };
    let rows = vec![
        vec!["ROC AUC".into(), f4(v.auc), f4(t.auc), auc_ci],
        vec![
            "average precision".into(),
            opt4(v.average_precision),
            opt4(t.average_precision),
            "–".into(),
        ],
        vec![
            format!("accuracy (threshold {})", t.threshold),
            f4(v.accuracy),
            f4(t.accuracy),
            bci(|b| b.accuracy),
        ],
        vec![
            "sensitivity (recall)".into(),
            f4(v.recall),
            f4(t.recall),
            bci(|b| b.sensitivity),
        ],
        vec![
            "specificity".into(),
            f4(v.specificity),
            f4(t.specificity),
            bci(|b| b.specificity),
        ],
        vec![
            "precision".into(),
            f4(v.precision),
            f4(t.precision),
            "–".into(),
        ],
        vec!["F1".into(), f4(v.f1), f4(t.f1), bci(|b| b.f1)],
        vec![
            "Brier score".into(),
            opt4(v.brier),
            opt4(t.brier),
            "–".into(),
        ],
        vec![
            "log loss".into(),
            opt4(v.log_loss),
            opt4(t.log_loss),
            "–".into(),
        ],
        vec![
            "ECE (15 bins)".into(),
            opt4(v.ece),
            opt4(t.ece),
            bci(|b| b.ece),
        ],
    ];
    d.table(&["metric", "validation", "test", "test 95% CI"], rows);
    let mut note = String::from("Intervals: AUC by DeLong's method");
    match b {
        Some(b) => note.push_str(&format!(
            "; accuracy, sensitivity, specificity, F1 and ECE by a stratified bootstrap of the test split ({} resamples, {:.0}% level, threshold {}).",
            b.resamples,
            100.0 * b.confidence,
            b.threshold
        )),
        None => note.push_str("; no bootstrap intervals in metrics.json."),
    }
    d.p(note);
}

fn calibration_section(d: &mut Doc, run: &RunFolder, figs: &mut Vec<figures::Figure>) {
    d.h(1, "Calibration");
    match &run.calibration {
        None => d.not_computed("calibration (metrics.json has no calibration object)"),
        Some(c) => {
            d.p(format!(
                "Temperature scaling: logits divided by T = {:.4}, fitted on the validation split; figures on the test split.",
                c.temperature
            ));
            let pair = |a: f64, b: f64| vec![f4(a), f4(b), format!("{:+.4}", b - a)];
            let mut rows = Vec::new();
            let mut row = |name: &str, a: f64, b: f64| {
                let mut r = vec![name.to_string()];
                r.extend(pair(a, b));
                rows.push(r);
            };
            row("ECE (top label, 15 bins)", c.ece_before, c.ece_after);
            if let (Some(a), Some(b)) = (c.ece_pos_before, c.ece_pos_after) {
                row("ECE (positive class)", a, b);
            }
            row("Brier score", c.brier_before, c.brier_after);
            row("log loss", c.log_loss_before, c.log_loss_after);
            d.table(&["test", "before", "after", "change"], rows);
        }
    }
    if run.reliability.is_some() {
        d.figure_named(figs, "reliability");
    } else {
        d.not_computed("reliability diagram (no reliability.csv in the run folder)");
    }
}

fn tile(g: &GalleryRow, threshold: f64) -> Tile {
    let mut images = vec![("image".to_string(), g.image.clone())];
    if let Some(p) = &g.gradcam {
        images.push(("Grad-CAM".into(), p.clone()));
    }
    if let Some(p) = &g.occlusion {
        images.push(("occlusion".into(), p.clone()));
    }
    Tile {
        lines: vec![
            format!(
                "{} #{}: {} image {}",
                g.kind.as_str(),
                g.rank,
                g.split,
                g.index
            ),
            format!(
                "true: {}; predicted: {}",
                label_name(g.label),
                label_name(g.pred.unwrap_or(u8::from(g.prob >= threshold)))
            ),
            format!("P(pneumonia) = {:.4}", g.prob),
            format!("loss = {:.3}", g.loss),
        ],
        images,
    }
}

fn gallery_section(d: &mut Doc, run: &RunFolder) {
    d.h(1, "Failure gallery");
    match &run.audit.gallery {
        Some(rows) => {
            let colormap = run
                .audit
                .meta
                .as_ref()
                .and_then(|m| m.overlay.as_ref())
                .map(|o| format!(" (colormap {})", o.colormap))
                .unwrap_or_default();
            d.p(format!("Each tile: the test image (upscaled), its Grad-CAM map (last convolutional block) and its occlusion-sensitivity map{colormap}. In both maps HOT means strong evidence for the class the model predicted for that image (for images called normal, Grad-CAM of the negated logit); the colour scale is not inverted. Tiles without overlays were beyond the audit's explanation limit."));
            let threshold = run.test.threshold;
            for kind in GalleryKind::ALL {
                let tiles: Vec<Tile> = rows
                    .iter()
                    .filter(|g| g.kind == kind)
                    .map(|g| tile(g, threshold))
                    .collect();
                d.h(2, format!("{} ({})", kind.title(), tiles.len()));
                if tiles.is_empty() {
                    d.p("None.");
                } else {
                    d.blocks.push(Block::Gallery(tiles));
                }
            }
        }
        None => {
            d.not_computed("failure gallery images, Grad-CAM and occlusion maps (no audit/gallery.csv; run `cargo xtask audit --run DIR`)");
            let t = run.test.threshold;
            for (label, title) in [
                (
                    0u8,
                    "Highest-loss false positives (normal called pneumonia)",
                ),
                (1, "Highest-loss false negatives (pneumonia missed)"),
            ] {
                let rows = run.top_failures("test", label, t, 10);
                d.h(2, format!("{title}: {} shown", rows.len()));
                if rows.is_empty() {
                    d.p("None.");
                    continue;
                }
                d.table(
                    &["test index", "P(pneumonia)", "loss"],
                    rows.iter()
                        .map(|r| vec![r.index.to_string(), f4(r.prob), format!("{:.3}", r.loss())])
                        .collect(),
                );
            }
        }
    }
}

fn failure_modes_section(d: &mut Doc, fm: Option<&FailureModes>, figs: &mut Vec<figures::Figure>) {
    d.h(1, "Measured failure modes");
    let Some(fm) = fm else {
        d.not_computed(
            "failure modes (no audit/failure_modes.json; run `cargo xtask audit --run DIR`)",
        );
        return;
    };
    if let (Some(n), Some(fp), Some(fn_)) = (fm.n_test, fm.false_positives, fm.false_negatives) {
        d.p(format!(
            "{n} test images at threshold {}: {fp} false positives, {fn_} false negatives.",
            fm.threshold
        ));
    }
    d.h(2, "The study's hypotheses");
    if fm.hypotheses.is_empty() {
        d.p("No hypotheses recorded.");
    }
    if let Some(rule) = &fm.decision_rule {
        d.p(format!("Decision rule: {rule}."));
    }
    for h in &fm.hypotheses {
        d.blocks.push(Block::Verdict {
            verdict: h.verdict_text(),
            statement: h.statement.clone(),
            summary: format!(
                "{} (measure: {}; expected direction: {})",
                h.summary, h.measure, h.direction
            ),
        });
    }
    d.h(
        2,
        format!("Error rates by quartile (threshold {})", fm.threshold),
    );
    d.figure_named(figs, "failure_modes");
    let mut rows = Vec::new();
    for m in &fm.measures {
        for q in &m.quartiles {
            rows.push(vec![
                m.measure.clone(),
                format!("Q{}", q.q),
                opt_range(q.lower, q.upper),
                q.normals.to_string(),
                q.fp.to_string(),
                q.fp_rate
                    .map(|r| format!("{:.1}%", 100.0 * r))
                    .unwrap_or("–".into()),
                q.pneumonia.to_string(),
                q.r#fn.to_string(),
                q.fn_rate
                    .map(|r| format!("{:.1}%", 100.0 * r))
                    .unwrap_or("–".into()),
            ]);
        }
    }
    d.table(
        &[
            "measure",
            "quartile",
            "range",
            "normals",
            "FP",
            "FP rate",
            "pneumonia",
            "FN",
            "FN rate",
        ],
        rows,
    );
    d.h(2, "Tests of association");
    let test_name = fm
        .measures
        .first()
        .map(|m| m.fp_test.test.replace('_', " "))
        .unwrap_or_default();
    d.p(format!("p-values of the {test_name} over the four quartiles and, where recorded, of Fisher's exact test (bottom vs top quartile). Logistic regressions: change in log-odds of the error per standard deviation of the measure, with 95% intervals (FP among normals, FN among pneumonia)."));
    let rows = fm
        .measures
        .iter()
        .map(|m| {
            vec![
                m.measure.clone(),
                test_cell(Some(&m.fp_test)),
                test_cell(m.fp_fisher.as_ref()),
                logit_cell(&m.logit_fp),
                test_cell(Some(&m.fn_test)),
                test_cell(m.fn_fisher.as_ref()),
                logit_cell(&m.logit_fn),
            ]
        })
        .collect();
    d.table(
        &[
            "measure",
            "FP trend p",
            "FP Fisher p",
            "logit FP (per SD)",
            "FN trend p",
            "FN Fisher p",
            "logit FN (per SD)",
        ],
        rows,
    );
    if let Some(note) = &fm.measures_note {
        d.p(format!("Measures: {note}."));
    }
}

fn data_audit_section(d: &mut Doc, run: &RunFolder) {
    d.h(1, "Data audit");
    let Some(a) = &run.audit.data_audit else {
        d.not_computed("data audit (no audit/data_audit.json; run `cargo xtask audit --run DIR`)");
        return;
    };
    d.h(2, "Class balance");
    d.table(
        &["split", "images", "normal", "pneumonia", "prevalence"],
        a.splits
            .iter()
            .map(|s| {
                vec![
                    s.split.clone(),
                    s.n.to_string(),
                    s.normal.to_string(),
                    s.pneumonia.to_string(),
                    s.prevalence
                        .map(|p| format!("{:.1}%", 100.0 * p))
                        .unwrap_or_else(|| "–".into()),
                ]
            })
            .collect(),
    );
    // Pairwise prevalence differences: as recorded, else from the class balance.
    let pairs: Vec<(String, String, f64)> = match &a.prevalence_shift {
        Some(v) => v
            .iter()
            .filter_map(|s| s.difference.map(|d| (s.a.clone(), s.b.clone(), d)))
            .collect(),
        None => {
            let mut v = Vec::new();
            for (i, x) in a.splits.iter().enumerate() {
                for y in &a.splits[i + 1..] {
                    if let (Some(px), Some(py)) = (x.prevalence, y.prevalence) {
                        v.push((x.split.clone(), y.split.clone(), py - px));
                    }
                }
            }
            v
        }
    };
    if !pairs.is_empty() {
        d.table(
            &["splits", "prevalence difference (b − a)"],
            pairs
                .iter()
                .map(|(x, y, dd)| {
                    vec![
                        format!("{x} → {y}"),
                        format!("{:+.1} percentage points", 100.0 * dd),
                    ]
                })
                .collect(),
        );
    }
    if let Some((x, y, dd)) = pairs.iter().max_by(|p, q| p.2.abs().total_cmp(&q.2.abs())) {
        d.p(format!(
            "Prevalence shift: the largest difference in pneumonia prevalence between two splits is {:.1} percentage points ({x} vs {y}).",
            100.0 * dd.abs()
        ));
    }
    d.h(2, "Duplicates");
    let Some(dup) = &a.duplicates else {
        d.not_computed("duplicate search (the audit ran without it)");
        return;
    };
    let mut rows: Vec<Vec<String>> = dup
        .exact_within
        .iter()
        .map(|(s, k)| vec!["exact, within split".into(), s.clone(), k.to_string()])
        .collect();
    for r in &mut rows {
        r.push("–".into());
    }
    rows.extend(dup.near_within.iter().map(|(s, k)| {
        vec![
            "near, within split".into(),
            s.clone(),
            k.to_string(),
            "–".into(),
        ]
    }));
    let across = |kind: &str, p: &cxr_runfolder::PairCount| {
        vec![
            kind.to_string(),
            format!("{} – {}", p.a, p.b),
            p.pairs.to_string(),
            match (p.images_a, p.images_b) {
                (Some(x), Some(y)) => format!("{x} in {}, {y} in {}", p.a, p.b),
                _ => "–".into(),
            },
        ]
    };
    rows.extend(
        dup.exact_across
            .iter()
            .map(|p| across("exact, across splits", p)),
    );
    rows.extend(
        dup.near_across
            .iter()
            .map(|p| across("near, across splits", p)),
    );
    d.table(
        &["kind", "split(s)", "pairs", "distinct images involved"],
        rows,
    );
    d.p(format!(
        "Method: {}. Images excluded because of duplicates: {}.",
        dup.method, a.excluded
    ));
}

fn robustness_section(
    d: &mut Doc,
    rows: Option<&[RobustnessRow]>,
    figs: &mut Vec<figures::Figure>,
) {
    d.h(1, "Robustness");
    let Some(rows) = rows.filter(|r| !r.is_empty()) else {
        d.not_computed(
            "robustness sweep (no audit/robustness.csv; run `cargo xtask audit --run DIR`)",
        );
        return;
    };
    d.figure_named(figs, "robustness");
    let clean = rows
        .iter()
        .find(|r| r.corruption == "none")
        .and_then(|r| r.auc);
    d.table(
        &[
            "corruption",
            "severity",
            "parameter",
            "AUC",
            "ΔAUC vs clean",
            "sensitivity",
            "specificity",
            "accuracy",
        ],
        rows.iter()
            .map(|r| {
                vec![
                    r.corruption.clone(),
                    r.severity.to_string(),
                    r.parameter
                        .map(|p| format!("{p}"))
                        .unwrap_or_else(|| "–".into()),
                    opt4(r.auc),
                    match (r.auc, clean) {
                        (Some(a), Some(c)) => format!("{:+.4}", a - c),
                        _ => "–".into(),
                    },
                    opt4(r.sensitivity),
                    opt4(r.specificity),
                    opt4(r.accuracy),
                ]
            })
            .collect(),
    );
}

fn provenance_section(d: &mut Doc, run: &RunFolder) {
    d.h(1, "Provenance");
    let c = &run.config;
    let mut rows = Vec::new();
    for (k, v) in [
        ("git commit", c.provenance.git_commit.as_deref()),
        ("command", c.provenance.command.as_deref()),
        ("device", Some(c.device_resolved.as_str())),
        ("cxr version", Some(c.cxr_version.as_str())),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            rows.push(vec![k.to_string(), v.to_string()]);
        }
    }
    // Every setting, as `config.json` records it.
    if let Ok(serde_json::Value::Object(obj)) = serde_json::to_value(&c.train) {
        for (k, v) in obj {
            rows.push(vec![format!("train.{k}"), v.to_string()]);
        }
    }
    if let Some(m) = &run.audit.meta
        && let Some(sec) = m.seconds
    {
        let stages: Vec<String> = m
            .stage_seconds
            .iter()
            .map(|(k, v)| format!("{k} {v:.1} s"))
            .collect();
        rows.push(vec![
            "audit time".into(),
            if stages.is_empty() {
                format!("{sec:.1} s")
            } else {
                format!("{sec:.1} s ({})", stages.join(", "))
            },
        ]);
    }
    if rows.is_empty() {
        d.p("config.json records no provenance.");
    } else {
        d.table(&["setting", "value"], rows);
    }
}

/// Renders `report.md` for a run folder (drawing its figures, which the Markdown
/// links as `figures/<name>.png`).
pub fn render_markdown(run: &RunFolder) -> Result<String> {
    let figs = figures::run_figures(run)?;
    Ok(to_markdown(&run_doc(run, figs)))
}

/// The files [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html` (self-contained).
    pub html: PathBuf,
    /// `figures/*.png`.
    pub figures: Vec<PathBuf>,
    /// `predictions.parquet`.
    pub parquet: PathBuf,
}

/// Reads the run folder at `dir` and writes, atomically, `figures/*.png`,
/// `report.md`, `report.html` and `predictions.parquet` into it. Never trains.
pub fn write_report(dir: &Path) -> Result<ReportFiles> {
    let run = RunFolder::open(dir)?;
    let figs = figures::run_figures(&run)?;
    let fig_dir = dir.join("figures");
    std::fs::create_dir_all(&fig_dir).map_err(|source| crate::ReportError::Io {
        path: fig_dir.clone(),
        source,
    })?;
    let mut fig_paths = Vec::new();
    for f in &figs {
        let p = fig_dir.join(format!("{}.png", f.name));
        write_atomic(&p, &f.png)?;
        fig_paths.push(p);
    }
    let doc = run_doc(&run, figs);
    let markdown = dir.join("report.md");
    write_atomic(&markdown, to_markdown(&doc).as_bytes())?;
    let html = dir.join("report.html");
    let text = to_html(&doc, dir, &dir.join("audit").join("gallery.csv"))?;
    write_atomic(&html, text.as_bytes())?;
    let parquet = dir.join("predictions.parquet");
    crate::parquet_io::write_predictions_parquet(&parquet, &run.predictions)?;
    tracing::info!(
        "report of {} written: {} figures, report.md, report.html, predictions.parquet",
        dir.display(),
        fig_paths.len()
    );
    Ok(ReportFiles {
        markdown,
        html,
        figures: fig_paths,
        parquet,
    })
}
