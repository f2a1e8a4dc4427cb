//! PNG figures drawn with `plotters` into an RGB buffer and encoded with `image`.
//!
//! Text uses DejaVu Sans compiled into the crate (registered with plotters' `ab_glyph`
//! font table), so figures render identically on a machine without fonts or
//! fontconfig.

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{ReportError, Result};
use cxr_runfolder::{
    CurvePoint, EpochRow, FailureModes, LrFindRow, OperatingPoint, ReliabilityPoint,
    ReliabilityRow, RobustnessRow, RunFolder,
};

/// DejaVu Sans 2.37 (Bitstream Vera licence, see `assets/fonts/LICENSE-DejaVu.txt`).
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// Okabe–Ito colour-blind-safe palette.
pub(crate) const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(230, 159, 0),   // orange
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(120, 120, 120), // grey
];
const GREY: RGBColor = RGBColor(150, 150, 150);

/// A rendered figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File stem, e.g. `roc` (written as `figures/roc.png`).
    pub name: String,
    /// A one-line caption for the report.
    pub caption: String,
    /// PNG bytes.
    pub png: Vec<u8>,
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn font_ready() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(ReportError::Figure {
            figure: "(font)".into(),
            reason: "the embedded DejaVu Sans font could not be parsed".into(),
        })
    }
}

/// Draws a `w`×`h` figure with `draw` and encodes it as PNG.
fn render(
    name: &str,
    caption: String,
    (w, h): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<Figure> {
    font_ready()?;
    let err = |reason: String| ReportError::Figure {
        figure: name.to_string(),
        reason,
    };
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        draw(&root).map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))?;
    }
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &buf,
        w,
        h,
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|e| err(e.to_string()))?;
    Ok(Figure {
        name: name.to_string(),
        caption,
        png,
    })
}

fn font(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

fn line(c: RGBColor, width: u32) -> ShapeStyle {
    c.stroke_width(width)
}

fn legend_line(c: RGBColor, width: u32) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(width))
}

fn legend_dot(c: RGBColor) -> impl Fn((i32, i32)) -> Circle<(i32, i32), i32> {
    move |(x, y)| Circle::new((x + 12, y), 5, c.filled())
}

/// Tick label for integer positions only (epochs, severities), blank elsewhere.
fn int_label(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-6 {
        format!("{x:.0}")
    } else {
        String::new()
    }
}

fn pad_range(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    let span = (hi - lo).abs().max(1e-9);
    (lo - span * frac, hi + span * frac)
}

/// Train/val loss and val AUC per epoch, the best epoch marked.
pub fn training_curves(history: &[EpochRow], best_epoch: Option<usize>) -> Result<Figure> {
    let caption = "Training curves: mean binary cross-entropy per epoch (left) and validation ROC AUC (right)".to_string();
    render("training_curves", caption, (1200, 480), |root| {
        let (l, r) = root.split_horizontally(600);
        let last = history.iter().map(|h| h.epoch).max().unwrap_or(1).max(2) as f64;
        let xr = 0.5..last + 0.5;
        let ticks = (last as usize).min(15);
        let losses = history.iter().flat_map(|h| [h.train_loss, h.val_loss]);
        let (lo, hi) = losses.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo > hi {
            (0.0, 1.0)
        } else {
            pad_range(lo, hi, 0.08)
        };
        let mut c = ChartBuilder::on(&l)
            .caption("Loss", font(22))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d(xr.clone(), lo.max(0.0)..hi)?;
        c.configure_mesh()
            .x_desc("epoch")
            .y_desc("loss (BCE, nats)")
            .label_style(font(15))
            .axis_desc_style(font(17))
            .x_labels(ticks)
            .x_label_formatter(&int_label)
            .light_line_style(WHITE)
            .draw()?;
        if let Some(b) = best_epoch {
            c.draw_series(DashedLineSeries::new(
                [(b as f64, lo.max(0.0)), (b as f64, hi)],
                6,
                4,
                line(GREY, 1),
            ))?
            .label(format!("kept epoch ({b})"))
            .legend(legend_line(GREY, 1));
        }
        for (i, (name, f)) in [
            (
                "train",
                (|h: &EpochRow| h.train_loss) as fn(&EpochRow) -> f64,
            ),
            ("validation", |h: &EpochRow| h.val_loss),
        ]
        .into_iter()
        .enumerate()
        {
            let col = PALETTE[i];
            let pts: Vec<(f64, f64)> = history.iter().map(|h| (h.epoch as f64, f(h))).collect();
            c.draw_series(LineSeries::new(pts.clone(), line(col, 2)))?
                .label(name)
                .legend(legend_line(col, 2));
            c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, col.filled())))?;
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(font(15))
            .draw()?;

        let aucs: Vec<f64> = history.iter().map(|h| h.val_auc).collect();
        let (alo, ahi) = aucs
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let (alo, ahi) = if alo > ahi {
            (0.5, 1.0)
        } else {
            pad_range(alo, ahi, 0.1)
        };
        let mut c = ChartBuilder::on(&r)
            .caption("Validation ROC AUC", font(22))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(70)
            .build_cartesian_2d(xr, alo.max(0.0)..ahi.min(1.0))?;
        c.configure_mesh()
            .x_desc("epoch")
            .y_desc("ROC AUC")
            .label_style(font(15))
            .axis_desc_style(font(17))
            .x_labels(ticks)
            .x_label_formatter(&int_label)
            .y_label_formatter(&|y| format!("{y:.3}"))
            .light_line_style(WHITE)
            .draw()?;
        let pts: Vec<(f64, f64)> = history
            .iter()
            .map(|h| (h.epoch as f64, h.val_auc))
            .collect();
        c.draw_series(LineSeries::new(pts.clone(), line(PALETTE[2], 2)))?;
        c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, PALETTE[2].filled())))?;
        if let Some(b) = best_epoch
            && let Some(h) = history.iter().find(|h| h.epoch == b)
        {
            c.draw_series([Circle::new(
                (b as f64, h.val_auc),
                7,
                PALETTE[3].stroke_width(2),
            )])?
            .label(format!("best: epoch {b}, AUC {:.4}", h.val_auc))
            .legend(legend_dot(PALETTE[3]));
            c.configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font(font(15))
                .draw()?;
        }
        Ok(())
    })
}

/// One confusion matrix to draw: a name, a threshold and the four counts.
#[derive(Debug, Clone)]
pub struct ConfusionPanel {
    /// Title, e.g. `default 0.5`.
    pub title: String,
    /// Threshold.
    pub threshold: f64,
    /// True negatives, false positives, false negatives, true positives.
    pub counts: [u64; 4],
}

impl ConfusionPanel {
    /// The test confusion matrix at the run's threshold followed by every operating
    /// point (the default point is skipped when it repeats the run's threshold).
    pub fn from_run(run: &RunFolder) -> Vec<Self> {
        let t = &run.test;
        let mut out = vec![Self {
            title: format!("test, threshold {}", trim(t.threshold)),
            threshold: t.threshold,
            counts: [t.tn, t.fp, t.fn_, t.tp],
        }];
        for p in &run.operating_points {
            if p.name.starts_with("default") && (p.threshold - t.threshold).abs() < 1e-12 {
                continue;
            }
            out.push(Self {
                title: format!("{} ({:.3})", pretty_point(p), p.threshold),
                threshold: p.threshold,
                counts: [p.tn, p.fp, p.fn_, p.tp],
            });
        }
        out
    }
}

fn trim(t: f64) -> String {
    let s = format!("{t:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A readable name for an operating point (`sensitivity_0.95` → `sensitivity ≥ 0.95`).
pub fn pretty_point(p: &OperatingPoint) -> String {
    pretty_point_name(&p.name)
}

/// [`pretty_point`] of a point's name.
pub(crate) fn pretty_point_name(name: &str) -> String {
    if let Some(s) = name.strip_prefix("sensitivity_") {
        format!("sensitivity ≥ {s}")
    } else if let Some(s) = name.strip_prefix("default_") {
        format!("default {s}")
    } else if name == "youden" {
        "Youden J".to_string()
    } else {
        name.replace('_', " ")
    }
}

/// Test confusion matrices with counts and row rates, one panel per threshold.
pub fn confusion(panels: &[ConfusionPanel]) -> Result<Figure> {
    let n = panels.len().max(1) as u32;
    let caption = "Test confusion matrices: counts and share of each true class (row), one panel per decision threshold".to_string();
    render("confusion", caption, (470 * n, 450), |root| {
        let areas = root.split_evenly((1, n as usize));
        for (p, area) in panels.iter().zip(areas.iter()) {
            let mut c = ChartBuilder::on(area)
                .caption(&p.title, font(19))
                .margin(14)
                .x_label_area_size(60)
                .y_label_area_size(110)
                .build_cartesian_2d(0f64..2f64, 0f64..2f64)?;
            c.configure_mesh()
                .disable_mesh()
                .x_labels(0)
                .y_labels(0)
                .x_desc("predicted")
                .y_desc("true")
                .axis_desc_style(font(17))
                .draw()?;
            let [tn, fp, fn_, tp] = p.counts;
            // (col, row-from-top, count, row total, correct?)
            let cells = [
                (0, 0, tn, tn + fp, true),
                (1, 0, fp, tn + fp, false),
                (0, 1, fn_, fn_ + tp, false),
                (1, 1, tp, fn_ + tp, true),
            ];
            for (col, row, k, tot, correct) in cells {
                let rate = if tot == 0 { 0.0 } else { k as f64 / tot as f64 };
                let base = if correct { PALETTE[0] } else { PALETTE[3] };
                let x0 = col as f64;
                let y1 = 2.0 - row as f64;
                c.draw_series([Rectangle::new(
                    [(x0, y1 - 1.0), (x0 + 1.0, y1)],
                    base.mix(0.12 + 0.78 * rate).filled(),
                )])?;
                c.draw_series([Rectangle::new(
                    [(x0, y1 - 1.0), (x0 + 1.0, y1)],
                    BLACK.stroke_width(1),
                )])?;
                let ink = if rate > 0.55 { WHITE } else { BLACK };
                let center = Pos::new(HPos::Center, VPos::Center);
                c.draw_series([
                    Text::new(
                        k.to_string(),
                        (x0 + 0.5, y1 - 0.38),
                        font(30).color(&ink).pos(center),
                    ),
                    Text::new(
                        if tot == 0 {
                            "–".to_string()
                        } else {
                            format!("{:.1}% of row", 100.0 * rate)
                        },
                        (x0 + 0.5, y1 - 0.66),
                        font(16).color(&ink).pos(center),
                    ),
                ])?;
            }
            // Class names on the axes (drawn in chart coordinates just outside the
            // plotting range; plotters does not clip them).
            for (i, name) in ["normal", "pneumonia"].into_iter().enumerate() {
                c.draw_series([Text::new(
                    name,
                    (i as f64 + 0.5, -0.14),
                    font(16).pos(Pos::new(HPos::Center, VPos::Top)),
                )])?;
                c.draw_series([Text::new(
                    name,
                    (-0.04, 1.5 - i as f64),
                    font(16).pos(Pos::new(HPos::Right, VPos::Center)),
                )])?;
            }
        }
        Ok(())
    })
}

fn split_points<'a>(points: &'a [CurvePoint], split: &str) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter(|p| p.split == split)
        .map(|p: &'a CurvePoint| (p.x, p.y))
        .collect()
}

const MARKERS: [RGBColor; 4] = [PALETTE[3], PALETTE[2], PALETTE[4], PALETTE[1]];

fn draw_marker<DB: DrawingBackend>(
    c: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    i: usize,
    at: (f64, f64),
    label: String,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let col = MARKERS[i % MARKERS.len()];
    match i % 3 {
        0 => {
            c.draw_series([Circle::new(at, 7, col.filled())])?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 12, y), 6, col.filled()));
        }
        1 => {
            c.draw_series([TriangleMarker::new(at, 9, col.filled())])?
                .label(label)
                .legend(move |(x, y)| TriangleMarker::new((x + 12, y), 8, col.filled()));
        }
        _ => {
            c.draw_series([Cross::new(at, 7, col.stroke_width(3))])?
                .label(label)
                .legend(move |(x, y)| Cross::new((x + 12, y), 6, col.stroke_width(3)));
        }
    }
    Ok(())
}

/// One curve of a ROC figure.
pub(crate) struct RocCurve {
    /// Legend label.
    pub label: String,
    /// (false-positive rate, true-positive rate).
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub colour: RGBColor,
    /// Stroke width.
    pub width: u32,
    /// Dashed (a reference split) rather than solid.
    pub dashed: bool,
}

/// An operating point marked on a ROC figure.
pub(crate) struct RocMarker {
    /// Legend label.
    pub label: String,
    /// (false-positive rate, true-positive rate).
    pub at: (f64, f64),
    /// Where the same threshold lay on another split (drawn hollow, joined to `at`).
    pub from: Option<(f64, f64)>,
}

/// ROC axes with the chance diagonal, `curves` and the operating points `markers`.
pub(crate) fn roc_figure(
    name: &str,
    caption: String,
    title: &str,
    curves: &[RocCurve],
    markers: &[RocMarker],
) -> Result<Figure> {
    render(name, caption, (760, 680), |root| {
        let mut c = ChartBuilder::on(root)
            .caption(title, font(24))
            .margin(16)
            .x_label_area_size(55)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..1f64, 0f64..1.0001f64)?;
        c.configure_mesh()
            .x_desc("false positive rate (1 − specificity)")
            .y_desc("true positive rate (sensitivity)")
            .label_style(font(15))
            .axis_desc_style(font(17))
            .light_line_style(WHITE)
            .draw()?;
        c.draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            6,
            5,
            line(GREY, 1),
        ))?
        .label("chance (AUC 0.5)")
        .legend(legend_line(GREY, 1));
        for curve in curves.iter().filter(|c| !c.points.is_empty()) {
            let style = line(curve.colour, curve.width);
            let drawn = if curve.dashed {
                c.draw_series(DashedLineSeries::new(curve.points.clone(), 8, 4, style))?
            } else {
                c.draw_series(LineSeries::new(curve.points.clone(), style))?
            };
            drawn
                .label(curve.label.clone())
                .legend(legend_line(curve.colour, curve.width));
        }
        if markers.iter().any(|m| m.from.is_some()) {
            c.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                .label("hollow: the same threshold on validation")
                .legend(|(x, y)| Circle::new((x + 12, y), 5, GREY.stroke_width(2)));
        }
        for (i, m) in markers.iter().enumerate() {
            if let Some(from) = m.from {
                let col = MARKERS[i % MARKERS.len()];
                c.draw_series(DashedLineSeries::new([from, m.at], 4, 3, line(col, 1)))?;
                c.draw_series([Circle::new(from, 6, col.stroke_width(2))])?;
            }
            draw_marker(&mut c, i, m.at, m.label.clone())?;
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.92))
            .border_style(BLACK)
            .label_font(font(14))
            .draw()?;
        Ok(())
    })
}

/// ROC curves (test solid, validation dashed) with the test AUC and its interval, and
/// the operating points marked on the test curve.
pub fn roc(run: &RunFolder, points: &[CurvePoint]) -> Result<Figure> {
    let t = &run.test;
    let ci = match (t.auc_ci_low, t.auc_ci_high) {
        (Some(l), Some(h)) => format!(" [95% CI {l:.3}–{h:.3}]"),
        _ => String::new(),
    };
    let caption = format!(
        "ROC curve, test AUC {:.4}{ci}; markers: operating points chosen on validation, scored on test",
        t.auc
    );
    let curves = [
        RocCurve {
            label: format!("validation, AUC {:.4}", run.val.auc),
            points: split_points(points, "val"),
            colour: PALETTE[5],
            width: 2,
            dashed: true,
        },
        RocCurve {
            label: format!("test, AUC {:.4}{ci}", t.auc),
            points: split_points(points, "test"),
            colour: PALETTE[0],
            width: 3,
            dashed: false,
        },
    ];
    let markers: Vec<RocMarker> = run
        .operating_points
        .iter()
        .map(|p| RocMarker {
            label: format!(
                "{} t={:.3}: sens {:.3}, spec {:.3}",
                pretty_point(p),
                p.threshold,
                p.recall,
                p.specificity
            ),
            at: (1.0 - p.specificity, p.recall),
            from: None,
        })
        .collect();
    roc_figure("roc", caption, "ROC curve", &curves, &markers)
}

/// Precision–recall curves with the average precision, the prevalence baseline and
/// the operating points.
pub fn pr(run: &RunFolder, points: &[CurvePoint]) -> Result<Figure> {
    let t = &run.test;
    let prevalence = (t.tp + t.fn_) as f64 / (t.tp + t.fn_ + t.tn + t.fp).max(1) as f64;
    let ap = |s: &cxr_runfolder::SplitMetrics| {
        s.average_precision
            .map(|a| format!(", AP {a:.4}"))
            .unwrap_or_default()
    };
    let caption = format!(
        "Precision–recall curve{}; dotted line: test prevalence {:.3} (a classifier without skill)",
        ap(t).replacen(", ", ", test ", 1),
        prevalence
    );
    render("pr", caption, (760, 680), |root| {
        let ymin = (prevalence - 0.1).clamp(0.0, 0.9);
        let mut c = ChartBuilder::on(root)
            .caption("Precision–recall curve", font(24))
            .margin(16)
            .x_label_area_size(55)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..1.0001f64, ymin..1.0001f64)?;
        c.configure_mesh()
            .x_desc("recall (sensitivity)")
            .y_desc("precision (positive predictive value)")
            .label_style(font(15))
            .axis_desc_style(font(17))
            .light_line_style(WHITE)
            .draw()?;
        c.draw_series(DashedLineSeries::new(
            [(0.0, prevalence), (1.0, prevalence)],
            3,
            4,
            line(GREY, 2),
        ))?
        .label(format!("prevalence {prevalence:.3}"))
        .legend(legend_line(GREY, 2));
        let val = split_points(points, "val");
        if !val.is_empty() {
            c.draw_series(DashedLineSeries::new(val, 8, 4, line(PALETTE[5], 2)))?
                .label(format!("validation{}", ap(&run.val)))
                .legend(legend_line(PALETTE[5], 2));
        }
        c.draw_series(LineSeries::new(
            split_points(points, "test"),
            line(PALETTE[0], 3),
        ))?
        .label(format!("test{}", ap(t)))
        .legend(legend_line(PALETTE[0], 3));
        for (i, p) in run.operating_points.iter().enumerate() {
            draw_marker(
                &mut c,
                i,
                (p.recall, p.precision.max(ymin)),
                format!(
                    "{} t={:.3}: recall {:.3}, precision {:.3}",
                    pretty_point(p),
                    p.threshold,
                    p.recall,
                    p.precision
                ),
            )?;
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.92))
            .border_style(BLACK)
            .label_font(font(14))
            .draw()?;
        Ok(())
    })
}

/// One series of a reliability diagram.
pub(crate) struct ReliabilitySeries {
    /// Legend label.
    pub label: String,
    /// Colour.
    pub colour: RGBColor,
    /// The bins (empty bins are skipped).
    pub bins: Vec<ReliabilityPoint>,
}

/// Reliability diagram of `series` over the diagonal, with the images per bin of each
/// series side by side underneath (log scale).
pub(crate) fn reliability_figure(
    name: &str,
    caption: String,
    title: &str,
    series: &[ReliabilitySeries],
) -> Result<Figure> {
    render(name, caption, (760, 820), |root| {
        let (top, bottom) = root.split_vertically(600);
        let mut c = ChartBuilder::on(&top)
            .caption(title, font(24))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..1f64, 0f64..1.0001f64)?;
        c.configure_mesh()
            .y_desc("observed fraction of pneumonia")
            .label_style(font(15))
            .axis_desc_style(font(17))
            .light_line_style(WHITE)
            .draw()?;
        c.draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            6,
            5,
            line(GREY, 1),
        ))?
        .label("perfect calibration")
        .legend(legend_line(GREY, 1));
        let filled = |s: &ReliabilitySeries| -> Vec<ReliabilityPoint> {
            s.bins.iter().filter(|b| b.count > 0).copied().collect()
        };
        for s in series {
            let pts: Vec<(f64, f64)> = filled(s)
                .iter()
                .map(|b| (b.confidence, b.accuracy))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let col = s.colour;
            c.draw_series(LineSeries::new(pts.clone(), line(col, 2)))?
                .label(s.label.clone())
                .legend(legend_line(col, 2));
            c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, col.filled())))?;
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.92))
            .border_style(BLACK)
            .label_font(font(15))
            .draw()?;

        let max = series
            .iter()
            .flat_map(|s| s.bins.iter().map(|b| b.count))
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let mut h = ChartBuilder::on(&bottom)
            .margin_left(16)
            .margin_right(16)
            .margin_bottom(8)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..1f64, (0.8f64..max * 1.5).log_scale())?;
        h.configure_mesh()
            .x_desc("mean predicted P(pneumonia) in bin")
            .y_desc("images")
            .label_style(font(14))
            .axis_desc_style(font(17))
            .y_labels(3)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE)
            .draw()?;
        let k = series.len().max(1) as f64;
        for (i, s) in series.iter().enumerate() {
            let col = s.colour;
            h.draw_series(filled(s).into_iter().map(|b| {
                let w = (b.upper - b.lower) / k;
                let x0 = b.lower + i as f64 * w;
                Rectangle::new(
                    [(x0, 0.8), (x0 + w * 0.9, b.count as f64)],
                    col.mix(0.8).filled(),
                )
            }))?;
        }
        Ok(())
    })
}

/// Reliability diagram of the test split before and after temperature scaling, with
/// the number of predictions per bin underneath.
pub fn reliability(run: &RunFolder, rows: &[ReliabilityRow]) -> Result<Figure> {
    let cal = run.calibration.as_ref();
    let caption = match cal {
        Some(c) => format!(
            "Reliability diagram (test, 15 bins): before and after temperature scaling (T = {:.3}, fitted on validation); ECE {:.4} → {:.4}",
            c.temperature, c.ece_before, c.ece_after
        ),
        None => "Reliability diagram (test, 15 bins)".to_string(),
    };
    let bins = |split: &str| -> Vec<ReliabilityPoint> {
        rows.iter()
            .filter(|r| r.split == split)
            .map(|r| ReliabilityPoint {
                lower: r.lower,
                upper: r.upper,
                count: r.count as u64,
                confidence: r.confidence,
                accuracy: r.accuracy,
            })
            .collect()
    };
    let series = [
        ReliabilitySeries {
            label: match cal {
                Some(c) => format!("before scaling, ECE {:.4}", c.ece_before),
                None => "test".to_string(),
            },
            colour: PALETTE[1],
            bins: bins("test"),
        },
        ReliabilitySeries {
            label: match cal {
                Some(c) => format!(
                    "after scaling (T = {:.3}), ECE {:.4}",
                    c.temperature, c.ece_after
                ),
                None => "test, calibrated".to_string(),
            },
            colour: PALETTE[0],
            bins: bins("test_calibrated"),
        },
    ];
    reliability_figure(
        "reliability",
        caption,
        "Reliability diagram (test)",
        &series,
    )
}

/// The learning-rate finder's loss against the learning rate (log scale).
pub fn lr_find(rows: &[LrFindRow]) -> Result<Figure> {
    let caption =
        "Learning-rate finder: training loss while the learning rate grows exponentially".into();
    render("lr_find", caption, (900, 560), |root| {
        let (lrlo, lrhi) = rows
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), r| (a.min(r.lr), b.max(r.lr)));
        let finite: Vec<f64> = rows
            .iter()
            .flat_map(|r| [r.loss, r.smoothed_loss])
            .filter(|v| v.is_finite())
            .collect();
        let lo = finite.iter().copied().fold(f64::MAX, f64::min);
        // Clip the divergent tail so the useful range stays visible.
        let first = rows
            .first()
            .map(|r| r.smoothed_loss)
            .filter(|v| v.is_finite())
            .unwrap_or(lo + 1.0);
        let hi = finite
            .iter()
            .copied()
            .fold(f64::MIN, f64::max)
            .min(first * 1.5 + 0.1);
        let (lo, hi) = if lo < hi {
            pad_range(lo, hi, 0.05)
        } else {
            (0.0, 1.0)
        };
        let (lrlo, lrhi) = if lrlo < lrhi {
            (lrlo, lrhi)
        } else {
            (1e-6, 1.0)
        };
        let mut c = ChartBuilder::on(root)
            .caption("Learning-rate finder", font(24))
            .margin(16)
            .x_label_area_size(55)
            .y_label_area_size(70)
            .build_cartesian_2d((lrlo..lrhi).log_scale(), lo..hi)?;
        c.configure_mesh()
            .x_desc("learning rate (log scale)")
            .y_desc("training loss (BCE)")
            .label_style(font(15))
            .axis_desc_style(font(17))
            .x_label_formatter(&|v| format!("{v:.0e}"))
            .light_line_style(WHITE)
            .draw()?;
        let clip = |v: f64| v.clamp(lo, hi);
        c.draw_series(LineSeries::new(
            rows.iter().map(|r| (r.lr, clip(r.loss))),
            line(PALETTE[5], 1),
        ))?
        .label("loss per step")
        .legend(legend_line(PALETTE[5], 1));
        c.draw_series(LineSeries::new(
            rows.iter().map(|r| (r.lr, clip(r.smoothed_loss))),
            line(PALETTE[0], 3),
        ))?
        .label("smoothed loss")
        .legend(legend_line(PALETTE[0], 3));
        if let Some(best) = rows
            .iter()
            .filter(|r| r.smoothed_loss.is_finite())
            .min_by(|a, b| a.smoothed_loss.total_cmp(&b.smoothed_loss))
        {
            c.draw_series([Circle::new(
                (best.lr, best.smoothed_loss),
                7,
                PALETTE[3].filled(),
            )])?
            .label(format!("minimum smoothed loss at lr {:.1e}", best.lr))
            .legend(legend_dot(PALETTE[3]));
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.92))
            .border_style(BLACK)
            .label_font(font(15))
            .draw()?;
        Ok(())
    })
}

/// AUC, sensitivity and specificity against severity, one line per corruption; the
/// uncorrupted result is severity 0 of every line.
pub fn robustness(rows: &[RobustnessRow]) -> Result<Figure> {
    let caption = "Robustness: test metrics under graded corruptions (severity 0 = clean test set); sensitivity and specificity at the run's threshold".into();
    render("robustness", caption, (1350, 500), |root| {
        let clean = rows.iter().find(|r| r.corruption == "none");
        let mut kinds: Vec<&str> = Vec::new();
        for r in rows {
            if r.corruption != "none" && !kinds.contains(&r.corruption.as_str()) {
                kinds.push(&r.corruption);
            }
        }
        let max_sev = rows.iter().map(|r| r.severity).max().unwrap_or(5).max(1) as f64;
        let panels = root.split_evenly((1, 3));
        type Get = fn(&RobustnessRow) -> Option<f64>;
        let metrics: [(&str, Get); 3] = [
            ("ROC AUC", |r| r.auc),
            ("sensitivity", |r| r.sensitivity),
            ("specificity", |r| r.specificity),
        ];
        for (pi, ((name, get), area)) in metrics.iter().zip(panels.iter()).enumerate() {
            let lo = rows.iter().filter_map(get).fold(1.0f64, f64::min);
            let lo = ((lo - 0.05).max(0.0) * 10.0).floor() / 10.0;
            let mut c = ChartBuilder::on(area)
                .caption(*name, font(21))
                .margin(12)
                .x_label_area_size(48)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.2f64..max_sev + 0.2, lo..1.0001f64)?;
            c.configure_mesh()
                .x_desc("corruption severity")
                .y_desc(*name)
                .label_style(font(14))
                .axis_desc_style(font(16))
                .x_labels(max_sev as usize + 1)
                .x_label_formatter(&int_label)
                .light_line_style(WHITE)
                .draw()?;
            for (i, kind) in kinds.iter().enumerate() {
                let col = PALETTE[i % PALETTE.len()];
                let mut pts: Vec<(f64, f64)> =
                    clean.and_then(get).map(|v| (0.0, v)).into_iter().collect();
                let mut own: Vec<&RobustnessRow> =
                    rows.iter().filter(|r| r.corruption == *kind).collect();
                own.sort_by_key(|r| r.severity);
                pts.extend(
                    own.iter()
                        .filter_map(|r| get(r).map(|v| (r.severity as f64, v))),
                );
                let s = c.draw_series(LineSeries::new(pts.clone(), line(col, 2)))?;
                if pi == 0 {
                    s.label(kind.replace('_', " ")).legend(legend_line(col, 2));
                }
                c.draw_series(pts.iter().map(|&p| Circle::new(p, 3, col.filled())))?;
            }
            if pi == 0 {
                c.configure_series_labels()
                    .position(SeriesLabelPosition::LowerLeft)
                    .background_style(WHITE.mix(0.92))
                    .border_style(BLACK)
                    .label_font(font(14))
                    .draw()?;
            }
        }
        Ok(())
    })
}

pub(crate) fn fmt_p(p: Option<f64>) -> String {
    match p {
        None => "p n/a".into(),
        Some(p) if p < 0.001 => "p < 0.001".into(),
        Some(p) => format!("p = {p:.3}"),
    }
}

/// FP rate among normals and FN rate among pneumonia by quartile of each measure.
pub fn failure_modes(fm: &FailureModes) -> Result<Figure> {
    let n = fm.measures.len().max(1);
    let cols = n.min(3);
    let rows_n = n.div_ceil(cols);
    let caption = format!(
        "Error rates by quartile of each image measure (Q1 = lowest quarter of test images; threshold {}): false-positive rate among normals and false-negative rate among pneumonia; p-values of the tests of association",
        trim(fm.threshold)
    );
    render(
        "failure_modes",
        caption,
        (480 * cols as u32, 400 * rows_n as u32 + 40),
        |root| {
            // One legend for all panels, in a band above them.
            let (band, panels) = root.split_vertically(40);
            let mut x = 20;
            for (name, col) in [
                ("false-positive rate among normals", PALETTE[3]),
                ("false-negative rate among pneumonia", PALETTE[0]),
            ] {
                band.draw(&Rectangle::new([(x, 12), (x + 22, 28)], col.filled()))?;
                band.draw(&Text::new(
                    name,
                    (x + 30, 20),
                    font(16).pos(Pos::new(HPos::Left, VPos::Center)),
                ))?;
                x += 40 + 9 * name.len() as i32;
            }
            let areas = panels.split_evenly((rows_n, cols));
            let top = fm
                .measures
                .iter()
                .flat_map(|m| m.quartiles.iter())
                .flat_map(|q| [q.fp_rate.unwrap_or(0.0), q.fn_rate.unwrap_or(0.0)])
                .fold(0.05f64, f64::max);
            // Headroom above the bars for their k/n labels.
            let top = (top * 100.0 + 12.0).min(112.0);
            for (m, area) in fm.measures.iter().zip(areas.iter()) {
                let title = format!(
                    "{} (FP {}, FN {})",
                    m.measure.replace('_', " "),
                    fmt_p(m.fp_test.p_value),
                    fmt_p(m.fn_test.p_value)
                );
                let mut c = ChartBuilder::on(area)
                    .caption(title, font(17))
                    .margin(10)
                    .x_label_area_size(45)
                    .y_label_area_size(55)
                    .build_cartesian_2d(0.5f64..4.5f64, 0f64..top)?;
                c.configure_mesh()
                    .disable_x_mesh()
                    .x_labels(4)
                    .x_label_formatter(&|x| {
                        if (x - x.round()).abs() < 1e-6 && (1.0..=4.0).contains(x) {
                            format!("Q{:.0}", x)
                        } else {
                            String::new()
                        }
                    })
                    .x_desc(format!("quartile of {}", m.measure.replace('_', " ")))
                    .y_desc("error rate (%)")
                    .y_label_formatter(&|y| {
                        if *y <= 100.0 + 1e-9 {
                            format!("{y:.0}")
                        } else {
                            String::new()
                        }
                    })
                    .label_style(font(14))
                    .axis_desc_style(font(15))
                    .light_line_style(WHITE)
                    .draw()?;
                for (k, col) in [PALETTE[3], PALETTE[0]].into_iter().enumerate() {
                    c.draw_series(m.quartiles.iter().filter_map(|q| {
                        let r = if k == 0 { q.fp_rate } else { q.fn_rate }?;
                        let x0 = q.q as f64 - 0.38 + k as f64 * 0.38;
                        Some(Rectangle::new(
                            [(x0, 0.0), (x0 + 0.36, 100.0 * r)],
                            col.filled(),
                        ))
                    }))?;

                    c.draw_series(m.quartiles.iter().filter_map(|q| {
                        let (r, k_, n_) = if k == 0 {
                            (q.fp_rate, q.fp, q.normals)
                        } else {
                            (q.fn_rate, q.r#fn, q.pneumonia)
                        };
                        let r = r?;
                        let x = q.q as f64 - 0.2 + k as f64 * 0.38;
                        Some(Text::new(
                            format!("{k_}/{n_}"),
                            (x, 100.0 * r),
                            font(12).pos(Pos::new(HPos::Center, VPos::Bottom)),
                        ))
                    }))?;
                }
            }
            Ok(())
        },
    )
}

/// One run's entry in the model comparison.
#[derive(Debug, Clone)]
pub struct ComparisonEntry {
    /// Run folder name.
    pub run: String,
    /// Model name.
    pub model: String,
    /// Test AUC.
    pub auc: f64,
    /// 95 % interval, when recorded.
    pub ci: Option<(f64, f64)>,
}

/// Test AUC with its 95 % DeLong interval per run, coloured by model.
pub fn model_comparison(entries: &[ComparisonEntry]) -> Result<Figure> {
    let caption = "Model comparison: test ROC AUC with 95% DeLong intervals, one point per run (model and seed)".to_string();
    let n = entries.len().max(1);
    render(
        "model_comparison",
        caption,
        ((140 * n as u32).max(700), 560),
        |root| {
            let lo = entries
                .iter()
                .map(|e| e.ci.map_or(e.auc, |c| c.0))
                .fold(1.0f64, f64::min);
            let hi = entries
                .iter()
                .map(|e| e.ci.map_or(e.auc, |c| c.1))
                .fold(0.0f64, f64::max);
            let (lo, hi) = pad_range(lo.min(hi), hi.max(lo), 0.15);
            let mut models: Vec<&str> = entries.iter().map(|e| e.model.as_str()).collect();
            models.sort();
            models.dedup();
            let names: Vec<String> = entries.iter().map(|e| e.run.clone()).collect();
            let mut c = ChartBuilder::on(root)
                .caption("Test ROC AUC by run", font(24))
                .margin(16)
                .x_label_area_size(60)
                .y_label_area_size(70)
                .build_cartesian_2d((0..n as i32 - 1).into_segmented(), lo.max(0.0)..hi.min(1.0))?;
            c.configure_mesh()
                .disable_x_mesh()
                .x_desc("run")
                .y_desc("test ROC AUC")
                .label_style(font(14))
                .axis_desc_style(font(17))
                .x_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                        names.get(*i as usize).cloned().unwrap_or_default()
                    }
                    SegmentValue::Last => String::new(),
                })
                .y_label_formatter(&|y| format!("{y:.3}"))
                .light_line_style(WHITE)
                .draw()?;
            let mut labelled = Vec::new();
            for (i, e) in entries.iter().enumerate() {
                let mi = models.iter().position(|m| *m == e.model).unwrap_or(0);
                let col = PALETTE[mi % PALETTE.len()];
                let x = SegmentValue::CenterOf(i as i32);
                if let Some((l, h)) = e.ci {
                    c.draw_series([PathElement::new(
                        vec![(x.clone(), l), (x.clone(), h)],
                        col.stroke_width(2),
                    )])?;
                    c.draw_series([l, h].map(|y| {
                        EmptyElement::at((x.clone(), y))
                            + PathElement::new(vec![(-8, 0), (8, 0)], col.stroke_width(2))
                    }))?;
                }
                let s = c.draw_series([Circle::new((x.clone(), e.auc), 6, col.filled())])?;
                if !labelled.contains(&mi) {
                    labelled.push(mi);
                    s.label(e.model.clone()).legend(legend_dot(col));
                }
                c.draw_series([EmptyElement::at((x, e.auc))
                    + Text::new(
                        format!("{:.4}", e.auc),
                        (14, 0),
                        font(14).pos(Pos::new(HPos::Left, VPos::Center)),
                    )])?;
            }
            c.configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.92))
                .border_style(BLACK)
                .label_font(font(15))
                .draw()?;
            Ok(())
        },
    )
}

/// The test ROC curves of several runs in one plot.
pub fn roc_overlay(runs: &[RunFolder]) -> Result<Figure> {
    let caption = "Test ROC curves of every run".to_string();
    render("roc_runs", caption, (760, 680), |root| {
        let mut c = ChartBuilder::on(root)
            .caption("Test ROC curves", font(24))
            .margin(16)
            .x_label_area_size(55)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..1f64, 0f64..1.0001f64)?;
        c.configure_mesh()
            .x_desc("false positive rate (1 − specificity)")
            .y_desc("true positive rate (sensitivity)")
            .label_style(font(15))
            .axis_desc_style(font(17))
            .light_line_style(WHITE)
            .draw()?;
        c.draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            6,
            5,
            line(GREY, 1),
        ))?;
        for (i, r) in runs.iter().enumerate() {
            let Some(points) = &r.roc else { continue };
            let col = PALETTE[i % PALETTE.len()];
            c.draw_series(LineSeries::new(split_points(points, "test"), line(col, 2)))?
                .label(format!("{}: AUC {:.4}", r.name(), r.test.auc))
                .legend(legend_line(col, 2));
        }
        c.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.92))
            .border_style(BLACK)
            .label_font(font(14))
            .draw()?;
        Ok(())
    })
}

/// Every figure of one run that its files allow, in report order.
pub fn run_figures(run: &RunFolder) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    if !run.history.is_empty() {
        out.push(training_curves(&run.history, run.best_epoch)?);
    }
    out.push(confusion(&ConfusionPanel::from_run(run))?);
    if let Some(p) = &run.roc {
        out.push(roc(run, p)?);
    }
    if let Some(p) = &run.pr {
        out.push(pr(run, p)?);
    }
    if let Some(r) = &run.reliability {
        out.push(reliability(run, r)?);
    }
    if let Some(r) = &run.lr_find
        && !r.is_empty()
    {
        out.push(lr_find(r)?);
    }
    if let Some(r) = &run.audit.robustness
        && !r.is_empty()
    {
        out.push(robustness(r)?);
    }
    if let Some(fm) = &run.audit.failure_modes
        && !fm.measures.is_empty()
    {
        out.push(failure_modes(fm)?);
    }
    Ok(out)
}

/// Histogram of predicted probabilities (20 bins over [0, 1]) with the decision
/// threshold marked: the distribution a prediction report shows.
pub fn probability_histogram(probs: &[f64], threshold: f64) -> Result<Figure> {
    const BINS: usize = 20;
    let mut counts = [0usize; BINS];
    for &p in probs {
        let b = ((p.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1);
        counts[b] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let caption = format!(
        "Predicted P(pneumonia) of {} images (20 bins); dashed line: the decision threshold {threshold:.3}",
        probs.len()
    );
    render("probabilities", caption, (900, 420), |root| {
        let mut c = ChartBuilder::on(root)
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0f64..1.0f64, 0.0f64..top)?;
        c.configure_mesh()
            .x_desc("P(pneumonia)")
            .y_desc("images")
            .label_style(font(14))
            .axis_desc_style(font(16))
            .light_line_style(WHITE)
            .draw()?;
        c.draw_series(counts.iter().enumerate().map(|(i, &n)| {
            let x0 = i as f64 / BINS as f64;
            Rectangle::new(
                [(x0, 0.0), (x0 + 1.0 / BINS as f64, n as f64)],
                PALETTE[0].mix(0.8).filled(),
            )
        }))?;
        c.draw_series(DashedLineSeries::new(
            vec![(threshold, 0.0), (threshold, top)],
            6,
            4,
            line(BLACK, 2),
        ))?;
        Ok(())
    })
}

/// One row of a forest plot.
pub(crate) struct ForestRow {
    /// The row's label (left of the axis).
    pub label: String,
    /// Estimate and its interval; `None` draws `missing` instead.
    pub value: Option<(f64, Option<(f64, f64)>)>,
    /// What to show when there is no value (e.g. `too small (n < 30)`).
    pub missing: String,
}

/// A forest plot: one row per group with its estimate and interval, top to bottom,
/// the values written at the right, and a dashed vertical line at `reference` (say
/// what it is in the caption).
pub(crate) fn forest(
    name: &str,
    caption: String,
    title: &str,
    x_desc: &str,
    rows: &[ForestRow],
    reference: Option<f64>,
) -> Result<Figure> {
    let n = rows.len().max(1);
    let ends = rows
        .iter()
        .filter_map(|r| r.value)
        .flat_map(|(e, ci)| {
            let (l, h) = ci.unwrap_or((e, e));
            [e, l, h]
        })
        .chain(reference)
        .filter(|v| v.is_finite());
    let (lo, hi) = ends.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo > hi {
        (0.5, 1.0)
    } else {
        let (l, h) = pad_range(lo, hi, 0.08);
        (
            (l.max(0.0) * 20.0).floor() / 20.0,
            (h.min(1.0) * 20.0).ceil() / 20.0,
        )
    };
    let (lo, hi) = if hi - lo < 0.05 {
        ((hi - 0.05).max(0.0), (lo + 0.05).min(1.0))
    } else {
        (lo, hi)
    };
    render(name, caption, (1000, 130 + 44 * n as u32), |root| {
        let mut c = ChartBuilder::on(root)
            .caption(title, font(22))
            .margin(14)
            .margin_right(200)
            .x_label_area_size(50)
            .y_label_area_size(230)
            .build_cartesian_2d(lo..hi, -0.6f64..n as f64 - 0.4)?;
        c.configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc(x_desc)
            .label_style(font(14))
            .axis_desc_style(font(16))
            .x_label_formatter(&|x| format!("{x:.2}"))
            .light_line_style(WHITE)
            .draw()?;
        if let Some(r) = reference.filter(|r| (lo..=hi).contains(r)) {
            c.draw_series(DashedLineSeries::new(
                [(r, -0.6), (r, n as f64 - 0.4)],
                6,
                4,
                line(GREY, 2),
            ))?;
        }
        let left = Pos::new(HPos::Left, VPos::Center);
        for (i, r) in rows.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            c.draw_series([EmptyElement::at((lo, y))
                + Text::new(
                    r.label.clone(),
                    (-12, 0),
                    font(15).pos(Pos::new(HPos::Right, VPos::Center)),
                )])?;
            let text = match r.value {
                Some((e, ci)) => {
                    let col = PALETTE[0];
                    if let Some((l, h)) = ci {
                        c.draw_series([PathElement::new(
                            vec![(l.max(lo), y), (h.min(hi), y)],
                            col.stroke_width(2),
                        )])?;
                        c.draw_series([l, h].into_iter().filter(|v| (lo..=hi).contains(v)).map(
                            |v| {
                                EmptyElement::at((v, y))
                                    + PathElement::new(vec![(0, -7), (0, 7)], col.stroke_width(2))
                            },
                        ))?;
                    }
                    c.draw_series([
                        EmptyElement::at((e, y)) + Rectangle::new([(-6, -6), (6, 6)], col.filled())
                    ])?;
                    match ci {
                        Some((l, h)) => format!("{e:.3} [{l:.3}–{h:.3}]"),
                        None => format!("{e:.3}"),
                    }
                }
                None => r.missing.clone(),
            };
            c.draw_series([
                EmptyElement::at((hi, y)) + Text::new(text, (14, 0), font(15).pos(left))
            ])?;
        }
        Ok(())
    })
}
