//! Renders a `report.html` in headless Chromium: a screenshot, and a check that every
//! `<img>` loaded (`complete` with a non-zero `naturalWidth`).
//!
//! The report itself has no scripts. For the image check a copy gets a small script
//! that, on the `load` event, writes the count of images and of broken images into
//! attributes of `<body>`, which `--dump-dom` prints. Chromium runs with a fresh
//! profile, no sandbox, no GPU and no background networking, so the check works
//! offline and as root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::files::{format_err, read, write_atomic};
use crate::{ReportError, Result};

/// Names of the Chromium binary tried in order (Debian's is `chromium`).
pub const CHROMIUM_NAMES: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// The first Chromium found: `$CXR_CHROMIUM` if set, else one of
/// [`CHROMIUM_NAMES`] on `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CXR_CHROMIUM") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in CHROMIUM_NAMES {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// What Chromium saw.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowserCheck {
    /// `<img>` elements in the page.
    pub images: usize,
    /// Images that did not load (alt texts).
    pub broken: Vec<String>,
    /// The screenshot written.
    pub screenshot: PathBuf,
    /// Screenshot width and height in pixels.
    pub screenshot_size: (u32, u32),
    /// Fraction of screenshot pixels that are not near-white (a blank page is ~0).
    pub ink: f64,
    /// Seconds both Chromium runs took.
    pub seconds: f64,
}

const PROBE: &str = r#"<script>
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img'), broken = [];
  for (var i = 0; i < imgs.length; i++) {
    if (!(imgs[i].complete && imgs[i].naturalWidth > 0)) broken.push(imgs[i].alt || ('#' + i));
  }
  document.body.setAttribute('data-img-total', String(imgs.length));
  document.body.setAttribute('data-img-broken', String(broken.length));
  document.body.setAttribute('data-broken-list', broken.join('|'));
});
</script>"#;

fn chromium_err(html: &Path, reason: impl Into<String>) -> ReportError {
    ReportError::Browser {
        path: html.to_path_buf(),
        reason: reason.into(),
    }
}

fn run(chromium: &Path, html: &Path, profile: &Path, extra: &[String]) -> Result<Vec<u8>> {
    let url = format!("file://{}", html.display());
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(&url);
    let out = cmd
        .output()
        .map_err(|e| chromium_err(html, format!("cannot run {}: {e}", chromium.display())))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: String = err.lines().rev().take(5).collect::<Vec<_>>().join(" / ");
        return Err(chromium_err(
            html,
            format!("chromium exited with {}: {tail}", out.status),
        ));
    }
    Ok(out.stdout)
}

fn body_attr(dom: &str, name: &str) -> Option<String> {
    let body = &dom[dom.find("<body")?..];
    let body = &body[..body.find('>')?];
    let key = format!("{name}=\"");
    let start = body.find(&key)? + key.len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].to_string())
}

/// Loads `html` in Chromium twice: once (a probed copy in `work`) to count broken
/// images, once to take a `width`×`height` screenshot into `screenshot`. `work` is a
/// scratch folder (the Chromium profiles go there).
pub fn check_in_chromium(
    chromium: &Path,
    html: &Path,
    screenshot: &Path,
    (width, height): (u32, u32),
    work: &Path,
) -> Result<BrowserCheck> {
    let start = Instant::now();
    let html = std::fs::canonicalize(html).map_err(|source| ReportError::Io {
        path: html.to_path_buf(),
        source,
    })?;
    std::fs::create_dir_all(work).map_err(|source| ReportError::Io {
        path: work.to_path_buf(),
        source,
    })?;
    let text = read(&html)?;
    let probed = match text.rfind("</body>") {
        Some(i) => format!("{}{PROBE}{}", &text[..i], &text[i..]),
        None => return Err(format_err(&html, "no </body>")),
    };
    // The probed copy sits beside the original so relative links resolve the same.
    let probe_path = html.with_file_name(format!(
        ".{}.probe-{}.html",
        html.file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    write_atomic(&probe_path, probed.as_bytes())?;
    let dom = run(
        chromium,
        &probe_path,
        &work.join("profile-dom"),
        &["--dump-dom".to_string()],
    );
    let _ = std::fs::remove_file(&probe_path);
    let dom = String::from_utf8_lossy(&dom?).into_owned();
    let total: usize = body_attr(&dom, "data-img-total")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            chromium_err(
                &html,
                "the page's load event never ran (no image count in the DOM)",
            )
        })?;
    let broken: Vec<String> = body_attr(&dom, "data-broken-list")
        .filter(|s| !s.is_empty())
        .map(|s| s.split('|').map(str::to_string).collect())
        .unwrap_or_default();

    let shot = std::path::absolute(screenshot).map_err(|source| ReportError::Io {
        path: screenshot.to_path_buf(),
        source,
    })?;
    let _ = std::fs::remove_file(&shot);
    run(
        chromium,
        &html,
        &work.join("profile-shot"),
        &[
            format!("--screenshot={}", shot.display()),
            format!("--window-size={width},{height}"),
        ],
    )?;
    let img = image::open(&shot)
        .map_err(|e| chromium_err(&html, format!("screenshot {}: {e}", shot.display())))?
        .to_rgb8();
    let ink = img
        .pixels()
        .filter(|p| p.0.iter().any(|&c| c < 200))
        .count() as f64
        / (img.width() as f64 * img.height() as f64);
    Ok(BrowserCheck {
        images: total,
        broken,
        screenshot: shot,
        screenshot_size: (img.width(), img.height()),
        ink,
        seconds: start.elapsed().as_secs_f64(),
    })
}
