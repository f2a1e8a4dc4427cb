//! `cargo xtask report-check --run DIR`: a report rendered in headless Chromium.

use std::path::PathBuf;

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

/// Checks `<run>/report.html`: every embedded image decodes as PNG (always), then,
/// when Chromium is installed, renders it headless, takes a screenshot and checks
/// that every image loaded.
pub fn check(a: &ReportCheckArgs) -> Result<()> {
    if a.rebuild {
        cxr::report(&a.run)?;
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
