//! The report of an evaluation folder (`cxr evaluate`): `report.html` (self-contained),
//! `report.md` and `figures/*.png`, from the folder's `evaluation.json` alone.

use std::path::{Path, PathBuf};

use cxr_runfolder::{
    EstimateCi, EvaluatedPoint, Evaluation, HeterogeneityTest, MetadataJoin, ModelComparison,
    ProportionEstimate, SetPrevalence, SubgroupRow, SubgroupTable, names,
};

use crate::doc::{Doc, to_html, to_markdown};
use crate::figures::{
    self, ForestRow, PALETTE, ReliabilitySeries, RocCurve, RocMarker, fmt_p, pretty_point_name,
};
use crate::files::write_atomic;
use crate::{ReportError, Result};

/// What [`write_evaluate_report`] wrote.
#[derive(Debug, Clone)]
pub struct EvaluateReportFiles {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// `figures/*.png`, in report order.
    pub figures: Vec<PathBuf>,
}

/// Writes the report of the evaluation folder `dir` from its `evaluation.json`.
pub fn write_evaluate_report(dir: &Path) -> Result<EvaluateReportFiles> {
    let json = dir.join(names::EVALUATION);
    let ev = Evaluation::read(&json)?;
    let doc = evaluate_doc(&ev)?;
    let fig_dir = dir.join(names::FIGURES_DIR);
    std::fs::create_dir_all(&fig_dir).map_err(|source| ReportError::Io {
        path: fig_dir.clone(),
        source,
    })?;
    let mut figures = Vec::with_capacity(doc.figures.len());
    for f in &doc.figures {
        let path = fig_dir.join(format!("{}.png", f.name));
        write_atomic(&path, &f.png)?;
        figures.push(path);
    }
    let markdown = dir.join(names::REPORT_MD);
    write_atomic(&markdown, to_markdown(&doc).as_bytes())?;
    let html = dir.join(names::REPORT_HTML);
    write_atomic(&html, to_html(&doc, dir, &json)?.as_bytes())?;
    Ok(EvaluateReportFiles {
        markdown,
        html,
        figures,
    })
}

/// Shown for a missing figure.
const DASH: &str = "—";

fn f3(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        DASH.into()
    }
}

fn opt3(v: Option<f64>) -> String {
    v.map_or_else(|| DASH.into(), f3)
}

/// `a–b`, or `a to b` when a minus sign would run into the dash.
fn range(low: f64, high: f64) -> String {
    if low < 0.0 || high < 0.0 {
        format!("{} to {}", f3(low), f3(high))
    } else {
        format!("{}–{}", f3(low), f3(high))
    }
}

fn with_ci(e: f64, low: f64, high: f64) -> String {
    format!("{} [{}]", f3(e), range(low, high))
}

fn estimate_ci(e: &EstimateCi) -> String {
    with_ci(e.estimate, e.low, e.high)
}

fn missing(why: &str) -> String {
    format!("{DASH} ({why})")
}

/// `0.912 [0.880–0.940]`: the estimate with its Wilson interval.
fn wilson(p: Option<&ProportionEstimate>, why: &str) -> String {
    p.map_or_else(
        || missing(why),
        |p| with_ci(p.estimate, p.wilson_low, p.wilson_high),
    )
}

/// The bootstrap interval alone.
fn bootstrap(p: Option<&ProportionEstimate>) -> String {
    match p.map(|p| (p.bootstrap_low, p.bootstrap_high)) {
        None => DASH.into(),
        Some((Some(l), Some(h))) => range(l, h),
        Some(_) => missing("not resampled"),
    }
}

fn p_value(p: f64) -> String {
    fmt_p(Some(p))
}

fn pct(n: usize, of: usize) -> String {
    if of == 0 {
        DASH.into()
    } else {
        format!("{:.1}%", 100.0 * n as f64 / of as f64)
    }
}

const NO_POSITIVES: &str = "no pneumonia images";
const NO_NEGATIVES: &str = "no normal images";
const NO_POSITIVE_CALLS: &str = "no image called pneumonia";
const NO_NEGATIVE_CALLS: &str = "no image called normal";
const ONE_CLASS: &str = "one class only";

fn evaluate_doc(ev: &Evaluation) -> Result<Doc> {
    let mut doc = Doc {
        title: format!("cxr evaluation — {} from {}", ev.network, ev.run),
        ..Doc::default()
    };
    header(&mut doc, ev);
    operating_points(&mut doc, ev);
    roc(&mut doc, ev)?;
    calibration(&mut doc, ev)?;
    prevalence(&mut doc, ev);
    metadata(&mut doc, ev.metadata.as_ref());
    subgroups(&mut doc, ev)?;
    comparison(&mut doc, ev.comparison.as_ref());
    doc.h(2, "Notes");
    if ev.notes.is_empty() {
        doc.p("Nothing to note: every figure could be computed.");
    } else {
        doc.list(ev.notes.clone());
    }
    doc.p(format!(
        "Device {}, {:.1} s, cxr {}; intervals from {} stratified bootstrap resamples (seed {}) \
         unless named otherwise.",
        ev.device, ev.seconds, ev.cxr_version, ev.resamples, ev.seed
    ));
    Ok(doc)
}

fn header(doc: &mut Doc, ev: &Evaluation) {
    let s = &ev.set;
    let split = s
        .split
        .as_ref()
        .map(|x| format!(", split {x}"))
        .unwrap_or_default();
    doc.p(format!(
        "**Run:** {} ({}){}.",
        ev.run,
        ev.network,
        if ev.card_derived {
            "; its model card was derived from the run's older files (config.json and \
             metrics.json)"
        } else {
            ""
        }
    ));
    doc.p(format!(
        "**Set:** {} ({}{split}): {} files, {} images scored, {} pneumonia ({}), {} files \
         unreadable.",
        s.source,
        s.kind,
        s.files,
        s.images,
        s.positives,
        pct(s.positives, s.images),
        s.unreadable
    ));
    doc.p(format!("**In one sentence:** {}", headline(ev)));
    doc.p(
        "Thresholds, the temperature and the operating points come from the run's own \
         validation split (its model card) and are applied here unchanged; only the \
         prevalence-adapted points below use this set's labelled prevalence.",
    );
    if !s.errors.is_empty() {
        doc.table(
            &["unreadable: reason", "files"],
            s.errors
                .iter()
                .map(|e| vec![e.reason.clone(), e.count.to_string()])
                .collect(),
        );
    }
}

fn headline(ev: &Evaluation) -> String {
    let auc = match &ev.auc {
        Some(a) => format!(
            "on this set the model's AUC is {} (95% DeLong interval)",
            estimate_ci(a)
        ),
        None => "on this set no AUC can be computed (one class only)".into(),
    };
    let name = &ev.default_operating_point;
    let point = match ev.operating_points.iter().find(|p| &p.name == name) {
        Some(p) => {
            let vs = |v: Option<f64>, whose: &str| match v {
                Some(v) => format!("against {}{whose}", f3(v)),
                None => "(no validation figure in the model card)".into(),
            };
            format!(
                "; at the card's default operating point ({}, threshold {}) sensitivity is {} \
                 {}, and specificity {} {}.",
                pretty_point_name(&p.name),
                f3(p.threshold),
                wilson(p.sensitivity.as_ref(), NO_POSITIVES),
                vs(p.val_sensitivity, " on the run's validation split"),
                wilson(p.specificity.as_ref(), NO_NEGATIVES),
                vs(p.val_specificity, ""),
            )
        }
        None => format!("; the card's default operating point {name} was not scored."),
    };
    let mut s = auc + &point;
    if let Some(first) = s.get(..1) {
        s = first.to_uppercase() + &s[1..];
    }
    s
}

fn operating_points(doc: &mut Doc, ev: &Evaluation) {
    doc.h(2, "Operating points (the model card's, unchanged)");
    let points = &ev.operating_points;
    if points.is_empty() {
        doc.not_computed("the model card holds no operating points");
        return;
    }
    let pname = |p: &EvaluatedPoint| {
        let mut s = pretty_point_name(&p.name);
        if p.name == ev.default_operating_point {
            s.push_str(" (default)");
        }
        s
    };
    doc.table(
        &["point", "threshold", "source", "TP", "FP", "TN", "FN"],
        points
            .iter()
            .map(|p| {
                vec![
                    pname(p),
                    format!("{:.4}", p.threshold),
                    p.source.clone(),
                    p.tp.to_string(),
                    p.fp.to_string(),
                    p.tn.to_string(),
                    p.fn_.to_string(),
                ]
            })
            .collect(),
    );
    doc.p(
        "Sensitivity and specificity on this set (95% Wilson interval, and the stratified \
         bootstrap interval beside it) against the run's validation split:",
    );
    doc.table(
        &[
            "point",
            "sensitivity [Wilson]",
            "bootstrap",
            "validation",
            "specificity [Wilson]",
            "bootstrap",
            "validation",
        ],
        points
            .iter()
            .map(|p| {
                vec![
                    pname(p),
                    wilson(p.sensitivity.as_ref(), NO_POSITIVES),
                    bootstrap(p.sensitivity.as_ref()),
                    opt3(p.val_sensitivity),
                    wilson(p.specificity.as_ref(), NO_NEGATIVES),
                    bootstrap(p.specificity.as_ref()),
                    opt3(p.val_specificity),
                ]
            })
            .collect(),
    );
    doc.p("Predictive values, accuracy and F1 on this set (PPV and NPV depend on its prevalence):");
    doc.table(
        &[
            "point",
            "PPV [Wilson]",
            "bootstrap",
            "NPV [Wilson]",
            "bootstrap",
            "accuracy [Wilson]",
            "bootstrap",
            "F1 [bootstrap]",
        ],
        points
            .iter()
            .map(|p| {
                vec![
                    pname(p),
                    wilson(p.ppv.as_ref(), NO_POSITIVE_CALLS),
                    bootstrap(p.ppv.as_ref()),
                    wilson(p.npv.as_ref(), NO_NEGATIVE_CALLS),
                    bootstrap(p.npv.as_ref()),
                    wilson(Some(&p.accuracy), ""),
                    bootstrap(Some(&p.accuracy)),
                    p.f1.as_ref()
                        .map_or_else(|| missing(ONE_CLASS), estimate_ci),
                ]
            })
            .collect(),
    );
}

fn roc(doc: &mut Doc, ev: &Evaluation) -> Result<()> {
    doc.h(2, "ROC curve");
    if let Some(m) = &ev.metrics {
        let extra = [
            m.average_precision
                .map(|v| format!("average precision {}", f3(v))),
            m.brier.map(|v| format!("Brier score {}", f3(v))),
            m.log_loss.map(|v| format!("log loss {}", f3(v))),
        ];
        let extra: Vec<String> = extra.into_iter().flatten().collect();
        doc.p(format!(
            "At the run's own threshold {}: accuracy {}, precision {}, recall {}, specificity \
             {}, F1 {}{}.",
            f3(m.threshold),
            f3(m.accuracy),
            f3(m.precision),
            f3(m.recall),
            f3(m.specificity),
            f3(m.f1),
            if extra.is_empty() {
                String::new()
            } else {
                format!("; {}", extra.join(", "))
            }
        ));
    }
    if ev.roc.is_empty() {
        doc.not_computed("no ROC curve: the set has one class only");
        return Ok(());
    }
    let auc = ev
        .auc
        .as_ref()
        .map(|a| format!("AUC {}", estimate_ci(a)))
        .unwrap_or_else(|| "AUC —".into());
    let curves = [RocCurve {
        label: format!("this set, {auc}"),
        points: ev.roc.iter().map(|p| (p.fpr, p.tpr)).collect(),
        colour: PALETTE[0],
        width: 3,
        dashed: false,
    }];
    let markers: Vec<RocMarker> = ev
        .operating_points
        .iter()
        .filter_map(|p| {
            let (se, sp) = (p.sensitivity?.estimate, p.specificity?.estimate);
            Some(RocMarker {
                label: format!(
                    "{} t={:.3}: sens {:.3}, spec {:.3}",
                    pretty_point_name(&p.name),
                    p.threshold,
                    se,
                    sp
                ),
                at: (1.0 - sp, se),
                from: p
                    .val_sensitivity
                    .zip(p.val_specificity)
                    .map(|(vse, vsp)| (1.0 - vsp, vse)),
            })
        })
        .collect();
    let caption = format!(
        "ROC curve on this set, {auc} (95% DeLong interval); filled markers: the model card's \
         operating points scored here; hollow circles joined to them: the same thresholds on \
         the run's validation split"
    );
    doc.figure(figures::roc_figure(
        "roc",
        caption,
        "ROC curve on this set",
        &curves,
        &markers,
    )?);
    Ok(())
}

fn calibration(doc: &mut Doc, ev: &Evaluation) -> Result<()> {
    doc.h(2, "Calibration");
    let Some(c) = &ev.calibration else {
        doc.not_computed("calibration needs both classes in the set");
        return Ok(());
    };
    doc.p(format!(
        "Probabilities before and after the model card's temperature T = {} (fitted on the \
         run's validation split):",
        f3(c.temperature)
    ));
    doc.table(
        &["", "σ(logit)", "σ(logit / T)"],
        vec![
            vec![
                "ECE, top-label (15 bins)".into(),
                f3(c.ece_before),
                f3(c.ece_after),
            ],
            vec!["Brier score".into(), f3(c.brier_before), f3(c.brier_after)],
        ],
    );
    let caption = format!(
        "Reliability diagram on this set (15 bins) before and after the card's temperature \
         T = {}; ECE {} → {}; images per bin underneath",
        f3(c.temperature),
        f3(c.ece_before),
        f3(c.ece_after)
    );
    let series = [
        ReliabilitySeries {
            label: format!("before, ECE {}", f3(c.ece_before)),
            colour: PALETTE[1],
            bins: c.bins_before.clone(),
        },
        ReliabilitySeries {
            label: format!("after (T = {}), ECE {}", f3(c.temperature), f3(c.ece_after)),
            colour: PALETTE[0],
            bins: c.bins_after.clone(),
        },
    ];
    doc.figure(figures::reliability_figure(
        "reliability",
        caption,
        "Reliability diagram (this set)",
        &series,
    )?);
    Ok(())
}

fn prevalence(doc: &mut Doc, ev: &Evaluation) {
    doc.h(2, "Prevalence shift");
    let p: &SetPrevalence = &ev.prevalence;
    let mut rows = vec![
        vec!["this set (from its labels)".into(), f3(p.true_prevalence)],
        vec![
            "training split (model card)".into(),
            p.train_prevalence
                .map_or_else(|| missing("not in the model card"), f3),
        ],
        vec![
            "validation split (model card)".into(),
            p.val_prevalence
                .map_or_else(|| missing("not in the model card"), f3),
        ],
    ];
    match &p.site_check {
        Some(c) => {
            rows.push(vec![
                "label-free estimate (site check of cxr predict)".into(),
                format!(
                    "{} ({:.0}% bootstrap interval, {} resamples)",
                    with_ci(c.estimate, c.ci_low, c.ci_high),
                    c.level * 100.0,
                    c.resamples
                ),
            ]);
            rows.push(vec![
                "estimate − truth".into(),
                match p.estimate_error {
                    Some(e) => format!("{e:+.3}"),
                    None => DASH.into(),
                },
            ]);
            rows.push(vec![
                "truth inside the interval".into(),
                match p.truth_in_interval {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => DASH.into(),
                },
            ]);
            rows.push(vec![
                "label-shift test".into(),
                match &c.label_shift_test {
                    Some(t) => format!(
                        "KS distance {}, {} ({} resamples): {}",
                        f3(t.statistic),
                        p_value(t.p_value),
                        t.resamples,
                        if t.rejected {
                            "rejected — more than prevalence differs"
                        } else {
                            "not rejected"
                        }
                    ),
                    None => missing("no validation logits in the model card"),
                },
            ]);
        }
        None => rows.push(vec![
            "label-free estimate".into(),
            missing("the model card lacks what the site check needs"),
        ]),
    }
    doc.table(&["prevalence", "value"], rows);
    if let Some(c) = &p.site_check {
        doc.p(format!("**Site check:** {}", c.verdict));
        doc.p(format!("Method: {}.", c.method));
    }
    doc.h(3, "Operating points adapted to this set's prevalence");
    if p.adapted_points.is_empty() {
        doc.not_computed("no adapted operating points (see the notes)");
        return;
    }
    doc.p(
        "Each threshold moved to this set's true prevalence (Saerens et al. 2002, on \
         calibrated probabilities) and scored here; each cell reads unchanged → adapted \
         [95% Wilson interval of the adapted figure].",
    );
    let arrow = |a: Option<&ProportionEstimate>, b: Option<&ProportionEstimate>, why: &str| {
        format!(
            "{} → {}",
            a.map_or_else(|| DASH.into(), |a| f3(a.estimate)),
            wilson(b, why)
        )
    };
    doc.table(
        &[
            "point",
            "threshold",
            "sensitivity",
            "specificity",
            "PPV",
            "NPV",
        ],
        p.adapted_points
            .iter()
            .map(|a| {
                let u = ev.operating_points.iter().find(|u| u.name == a.name);
                vec![
                    pretty_point_name(&a.name),
                    format!(
                        "{} → {}",
                        u.map_or_else(|| DASH.into(), |u| f3(u.threshold)),
                        f3(a.threshold)
                    ),
                    arrow(
                        u.and_then(|u| u.sensitivity.as_ref()),
                        a.sensitivity.as_ref(),
                        NO_POSITIVES,
                    ),
                    arrow(
                        u.and_then(|u| u.specificity.as_ref()),
                        a.specificity.as_ref(),
                        NO_NEGATIVES,
                    ),
                    arrow(
                        u.and_then(|u| u.ppv.as_ref()),
                        a.ppv.as_ref(),
                        NO_POSITIVE_CALLS,
                    ),
                    arrow(
                        u.and_then(|u| u.npv.as_ref()),
                        a.npv.as_ref(),
                        NO_NEGATIVE_CALLS,
                    ),
                ]
            })
            .collect(),
    );
}

fn examples(count: usize, listed: &[String]) -> String {
    if count == 0 {
        return String::new();
    }
    let mut s = listed.join(", ");
    if count > listed.len() {
        s.push_str(&format!(", … ({} more)", count - listed.len()));
    }
    s
}

fn metadata(doc: &mut Doc, m: Option<&MetadataJoin>) {
    doc.h(2, "Metadata join");
    let Some(m) = m else {
        doc.not_computed("no metadata table given");
        return;
    };
    let key = match m.key.as_str() {
        "path" => "the image's path relative to the set",
        "file" => "the image's file name",
        "index" => "the image's position in the npz split",
        other => other,
    };
    doc.p(format!(
        "Table {} ({} rows; columns {}): its column {} matched against {key}.",
        m.table,
        m.rows,
        m.columns.join(", "),
        m.join_on
    ));
    doc.table(
        &["", "count", "examples (keys)"],
        vec![
            vec![
                "images with a row".into(),
                m.matched.to_string(),
                String::new(),
            ],
            vec![
                "rows without an image".into(),
                m.rows_without_image.to_string(),
                examples(m.rows_without_image, &m.rows_without_image_examples),
            ],
            vec![
                "images without a row".into(),
                m.images_without_row.to_string(),
                examples(m.images_without_row, &m.images_without_row_examples),
            ],
        ],
    );
    if m.images_without_row > 0 {
        doc.p(
            "Images without a row stay in every whole-set figure and fall in each subgroup \
             table's (missing) group.",
        );
    }
}

fn heterogeneity(name: &str, what: &str, t: Option<&HeterogeneityTest>, why: &str) -> String {
    match t {
        Some(t) => format!(
            "{name}: {what} = {:.2} (df {}), {}",
            t.statistic,
            t.df,
            p_value(t.p_value)
        ),
        None => format!("{name}: {DASH} ({why})"),
    }
}

/// A file stem for a column's figure: `subgroups_<k>_<column as [a-z0-9_]>`.
fn figure_stem(k: usize, column: &str) -> String {
    let slug: String = column
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("subgroups_{k}_{slug}")
}

fn subgroup_cells(t: &SubgroupRow, min: usize) -> Vec<String> {
    if t.too_small {
        return vec![
            t.group.clone(),
            t.n.to_string(),
            DASH.into(),
            format!("too small (n < {min})"),
            DASH.into(),
            DASH.into(),
            t.note.clone(),
        ];
    }
    let auc = match (t.auc, t.auc_low, t.auc_high) {
        (Some(a), Some(l), Some(h)) => with_ci(a, l, h),
        (Some(a), _, _) => f3(a),
        (None, ..) => DASH.into(),
    };
    vec![
        t.group.clone(),
        t.n.to_string(),
        format!("{} ({}/{})", f3(t.prevalence), t.positives, t.n),
        auc,
        t.sensitivity
            .as_ref()
            .map_or_else(|| DASH.into(), |p| wilson(Some(p), "")),
        t.specificity
            .as_ref()
            .map_or_else(|| DASH.into(), |p| wilson(Some(p), "")),
        t.note.clone(),
    ]
}

fn subgroups(doc: &mut Doc, ev: &Evaluation) -> Result<()> {
    doc.h(2, "Subgroups");
    if ev.subgroups.is_empty() {
        doc.not_computed("no subgroup column (--group-by with a metadata table)");
        return Ok(());
    }
    doc.p(format!(
        "Groups with fewer than {} images are too small: their figures are not reported. AUC \
         intervals are DeLong's, sensitivity and specificity intervals Wilson's (95%).",
        ev.min_group_size
    ));
    for (k, t) in ev.subgroups.iter().enumerate() {
        subgroup_table(doc, ev, k + 1, t)?;
    }
    Ok(())
}

fn subgroup_table(doc: &mut Doc, ev: &Evaluation, k: usize, t: &SubgroupTable) -> Result<()> {
    let min = ev.min_group_size;
    doc.h(3, format!("By {}", t.column));
    doc.p(format!(
        "{}; sensitivity and specificity at {} (threshold {}).",
        if t.kind == "quantile" {
            "A numeric column cut into quantile bins"
        } else {
            "A categorical column"
        },
        pretty_point_name(&t.operating_point),
        f3(t.threshold)
    ));
    doc.table(
        &[
            "group",
            "n",
            "prevalence",
            "AUC [DeLong]",
            "sensitivity [Wilson]",
            "specificity [Wilson]",
            "note",
        ],
        t.groups.iter().map(|g| subgroup_cells(g, min)).collect(),
    );
    doc.p(format!(
        "**Heterogeneity across groups** — {}; {}; {}.",
        heterogeneity(
            "AUC",
            "Cochran's Q",
            t.auc_heterogeneity.as_ref(),
            "fewer than two groups with an AUC"
        ),
        heterogeneity(
            "sensitivity",
            "χ²",
            t.sensitivity_heterogeneity.as_ref(),
            "fewer than two groups with pneumonia images"
        ),
        heterogeneity(
            "specificity",
            "χ²",
            t.specificity_heterogeneity.as_ref(),
            "fewer than two groups with normal images"
        ),
    ));
    let rows: Vec<ForestRow> = t
        .groups
        .iter()
        .map(|g| ForestRow {
            label: format!("{} (n = {})", g.group, g.n),
            value: if g.too_small {
                None
            } else {
                g.auc.map(|a| (a, g.auc_low.zip(g.auc_high)))
            },
            missing: if g.too_small {
                format!("too small (n < {min})")
            } else if g.note.is_empty() {
                "no AUC".into()
            } else {
                format!("no AUC: {}", g.note)
            },
        })
        .collect();
    let reference = ev.auc.map(|a| a.estimate);
    let caption = format!(
        "AUC by {} with 95% DeLong intervals{}",
        t.column,
        reference
            .map(|a| format!("; dashed line: the whole set's AUC {}", f3(a)))
            .unwrap_or_default()
    );
    doc.figure(figures::forest(
        &figure_stem(k, &t.column),
        caption,
        &format!("AUC by {}", t.column),
        "ROC AUC",
        &rows,
        reference,
    )?);
    Ok(())
}

fn comparison(doc: &mut Doc, c: Option<&ModelComparison>) {
    doc.h(2, "Comparison with a second model");
    let Some(c) = c else {
        doc.not_computed("no second model given (--compare)");
        return;
    };
    doc.table(
        &["", "A (evaluated)", "B (compared)"],
        vec![
            vec!["run".into(), c.run_a.clone(), c.run_b.clone()],
            vec!["network".into(), c.network_a.clone(), c.network_b.clone()],
            vec!["AUC".into(), f3(c.auc_a), f3(c.auc_b)],
            vec![
                "operating point".into(),
                format!(
                    "{} (threshold {})",
                    pretty_point_name(&c.operating_point_a),
                    f3(c.threshold_a)
                ),
                format!(
                    "{} (threshold {})",
                    pretty_point_name(&c.operating_point_b),
                    f3(c.threshold_b)
                ),
            ],
            vec![
                "accuracy at its point".into(),
                f3(c.accuracy_a),
                f3(c.accuracy_b),
            ],
        ],
    );
    doc.p(format!(
        "**AUC difference** (A − B) on the {} images both scored: {} (95% DeLong interval); \
         paired DeLong test z = {:.2}, {}.",
        c.n,
        with_ci(
            c.auc_difference,
            c.auc_difference_low,
            c.auc_difference_high
        ),
        c.delong_z,
        p_value(c.delong_p)
    ));
    let test = if c.mcnemar_exact {
        "exact binomial test".to_string()
    } else {
        format!("χ² with continuity correction = {:.2}", c.mcnemar_statistic)
    };
    doc.p(format!(
        "**Discordant images:** only A correct {}, only B correct {}; McNemar's test ({test}): \
         {}.",
        c.only_a_correct,
        c.only_b_correct,
        p_value(c.mcnemar_p)
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_intervals_read_plainly() {
        assert_eq!(with_ci(0.9123, 0.88, 0.94), "0.912 [0.880–0.940]");
        assert_eq!(with_ci(0.012, -0.01, 0.034), "0.012 [-0.010 to 0.034]");
        assert_eq!(p_value(0.0004), "p < 0.001");
        assert_eq!(p_value(0.0421), "p = 0.042");
        assert_eq!(f3(f64::NAN), DASH);
        assert_eq!(wilson(None, "no positives"), "— (no positives)");
    }

    #[test]
    fn figure_stems_are_file_safe() {
        assert_eq!(
            figure_stem(2, "Patient Sex/ID"),
            "subgroups_2_patient_sex_id"
        );
    }

    #[test]
    fn listed_examples_say_how_many_are_left_out() {
        let listed = vec!["a".to_string(), "b".to_string()];
        assert_eq!(examples(5, &listed), "a, b, … (3 more)");
        assert_eq!(examples(2, &listed), "a, b");
        assert_eq!(examples(0, &[]), "");
    }
}
