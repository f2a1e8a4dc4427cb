//! The report renders in headless Chromium with every image loaded. Skips loudly
//! (and passes) when no Chromium is installed: CI machines may not have one.

use cxr_report::browser::{check_in_chromium, find_chromium};
use cxr_report::{check_embedded_images, write_report};

use crate::fixture::write_full_run;

#[test]
fn report_renders_in_headless_chromium_with_every_image_loaded() {
    let Some(chromium) = find_chromium() else {
        eprintln!(
            "skipped: no chromium on PATH (apt-get install chromium, or set CXR_CHROMIUM) — the report was NOT checked in a browser"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_full_run(dir.path(), "cnn", 0);
    let files = write_report(dir.path()).unwrap();
    let expected = check_embedded_images(&files.html).unwrap().len();
    let shot = dir.path().join("screenshot.png");
    let check = check_in_chromium(
        &chromium,
        &files.html,
        &shot,
        (1200, 4000),
        &dir.path().join("chromium"),
    )
    .unwrap();
    assert_eq!(check.images, expected);
    assert!(check.broken.is_empty(), "broken images: {:?}", check.broken);
    assert_eq!(check.screenshot_size, (1200, 4000));
    assert!(
        check.ink > 0.02,
        "screenshot looks blank: ink {}",
        check.ink
    );
}
