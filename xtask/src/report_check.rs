//! `cargo xtask report --run DIR` (rebuild) and `cargo xtask report-check --run DIR`
//! (render in headless Chromium).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use tracing::warn;

#[derive(Debug, Args)]
pub struct ReportCheckArgs {
    /// The run or pipeline folder whose report.html is checked.
    #[arg(long)]
    pub run: PathBuf,
    /// Where to write the screenshot (default `<run>/report-screenshot.png`).
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// Window width in pixels.
    #[arg(long, default_value_t = 1200)]
    pub width: u32,
    /// Window height in pixels.
    #[arg(long, default_value_t = 4000)]
    pub height: u32,
    /// Rebuild the report first.
    #[arg(long)]
    pub rebuild: bool,
    /// Fail instead of skipping when Chromium is not installed.
    #[arg(long)]
    pub require: bool,
}

fn is_pipeline(dir: &Path) -> bool {
    dir.join("summary.csv").is_file() && !dir.join("metrics.json").is_file()
}

/// Rebuilds the report of a run folder, or of a pipeline folder and each of its runs.
pub fn rebuild(dir: &Path) -> Result<()> {
    let start = Instant::now();
    if is_pipeline(dir) {
        let runs = cxr_report::open_pipeline(dir)
            .with_context(|| format!("reading the pipeline folder {}", dir.display()))?;
        for r in &runs {
            let files = cxr_report::write_report(&r.dir)
                .with_context(|| format!("building the report of {}", r.dir.display()))?;
            println!("{}", files.html.display());
        }
        let runs = cxr_report::open_pipeline(dir)?;
        let files = cxr_report::write_pipeline_report(dir, &runs)
            .with_context(|| format!("building the comparison report of {}", dir.display()))?;
        println!("{}", files.html.display());
    } else if cxr_report::is_diverged_run(dir) {
        let d = cxr_report::read_divergence(dir)?;
        let files = cxr_report::write_divergence_report(dir)
            .with_context(|| format!("building the report of {}", dir.display()))?;
        println!("{}", files.markdown.display());
        println!("{}", files.html.display());
        eprintln!("this run did not finish: {}", d.error);
    } else {
        let files = cxr_report::write_report(dir)
            .with_context(|| format!("building the report of {}", dir.display()))?;
        println!("{}", files.markdown.display());
        println!("{}", files.html.display());
        println!("{}", files.parquet.display());
        println!(
            "{} figures in {}",
            files.figures.len(),
            dir.join("figures").display()
        );
    }
    eprintln!("report built in {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Checks `<run>/report.html`: every embedded image decodes as PNG (always), then,
/// when Chromium is installed, renders it headless, takes a screenshot and checks
/// that every image loaded.
pub fn check(a: &ReportCheckArgs) -> Result<()> {
    if a.rebuild {
        rebuild(&a.run)?;
    }
    let html = a.run.join("report.html");
    if !html.is_file() {
        bail!(
            "{} does not exist; build it with `cargo xtask report --run {}`",
            html.display(),
            a.run.display()
        );
    }
    let images = cxr_report::check_embedded_images(&html)
        .with_context(|| format!("checking the images embedded in {}", html.display()))?;
    println!(
        "{}: {} embedded images, all valid PNGs; no scripts or external resources",
        html.display(),
        images.len()
    );
    let Some(chromium) = cxr_report::browser::find_chromium() else {
        if a.require {
            bail!("no chromium found (install Debian's `chromium` or set CXR_CHROMIUM)");
        }
        warn!(
            "SKIPPED the browser check: no chromium found (install Debian's `chromium` or set CXR_CHROMIUM)"
        );
        return Ok(());
    };
    let screenshot = a
        .screenshot
        .clone()
        .unwrap_or_else(|| a.run.join("report-screenshot.png"));
    // A fresh Chromium profile each time, removed afterwards.
    let work = std::env::temp_dir().join(format!("cxr-report-check-{}", std::process::id()));
    let c = cxr_report::browser::check_in_chromium(
        &chromium,
        &html,
        &screenshot,
        (a.width, a.height),
        &work,
    );
    let _ = std::fs::remove_dir_all(&work);
    let c = c?;
    println!(
        "chromium ({}): {} images, {} broken; screenshot {} ({}x{}, {:.1}% non-white) in {:.1} s",
        chromium.display(),
        c.images,
        c.broken.len(),
        c.screenshot.display(),
        c.screenshot_size.0,
        c.screenshot_size.1,
        100.0 * c.ink,
        c.seconds
    );
    if c.images != images.len() {
        bail!(
            "chromium saw {} images but the file embeds {}",
            c.images,
            images.len()
        );
    }
    if !c.broken.is_empty() {
        bail!(
            "broken images in {}: {}",
            html.display(),
            c.broken.join(", ")
        );
    }
    if c.ink < 0.005 {
        bail!("the screenshot {} is blank", c.screenshot.display());
    }
    Ok(())
}

/// After a failed training run: if it diverged, writes its partial report (what
/// happened, the last good checkpoint, the history so far) and says where.
pub fn report_if_diverged(dir: &Path) {
    if !cxr_report::is_diverged_run(dir) {
        return;
    }
    match cxr_report::write_divergence_report(dir) {
        Ok(files) => eprintln!(
            "partial report of the diverged run: {}",
            files.html.display()
        ),
        Err(e) => tracing::warn!("could not write the partial report: {e}"),
    }
}
