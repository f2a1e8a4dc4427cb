//! Offline checks of a written `report.html`: every `<img>` is an embedded PNG that
//! decodes to the size its tag states, and nothing is loaded from elsewhere (no
//! scripts, no external `src`, no CSS `url()`/`@import`).

use std::path::Path;

use crate::files::{format_err, read};
use crate::{Result, png_size};

/// An image embedded in a report, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedImage {
    /// The tag's `alt` text.
    pub alt: String,
    /// Decoded width in pixels.
    pub width: u32,
    /// Decoded height in pixels.
    pub height: u32,
    /// PNG size in bytes.
    pub bytes: usize,
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(&tag[start..end])
}

/// Decodes standard padded base64; `None` on any invalid input.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// Checks the report at `path` (see the module docs) and returns its images in
/// document order. Errors name the file and the image (by position and `alt`).
pub fn check_embedded_images(path: &Path) -> Result<Vec<EmbeddedImage>> {
    let html = read(path)?;
    let lower = html.to_ascii_lowercase();
    for bad in [
        "<script",
        "@import",
        "url(",
        "src=\"http",
        "src='http",
        "<link",
    ] {
        if let Some(pos) = lower.find(bad) {
            return Err(format_err(
                path,
                format!("byte {pos}: `{bad}` — the report must not load anything"),
            ));
        }
    }
    let mut out = Vec::new();
    let mut rest = html.as_str();
    let mut n = 0;
    while let Some(start) = rest.find("<img") {
        let end = rest[start..]
            .find('>')
            .map(|e| e + start)
            .ok_or_else(|| format_err(path, "unterminated <img> tag"))?;
        let tag = &rest[start..=end];
        rest = &rest[end + 1..];
        n += 1;
        let alt = attr(tag, "alt").unwrap_or("").to_string();
        let what = format!("image {n} (`{alt}`)");
        let src = attr(tag, "src").ok_or_else(|| format_err(path, format!("{what}: no src")))?;
        let data = src
            .strip_prefix("data:image/png;base64,")
            .ok_or_else(|| format_err(path, format!("{what}: src is not an embedded PNG")))?;
        let bytes = base64_decode(data)
            .ok_or_else(|| format_err(path, format!("{what}: invalid base64")))?;
        let (w, h) = png_size(&bytes)
            .ok_or_else(|| format_err(path, format!("{what}: data is not a PNG")))?;
        let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
            .map_err(|e| format_err(path, format!("{what}: PNG does not decode: {e}")))?;
        if (img.width(), img.height()) != (w, h) {
            return Err(format_err(
                path,
                format!("{what}: header and pixels disagree"),
            ));
        }
        for (name, v) in [("width", w), ("height", h)] {
            if let Some(a) = attr(tag, name)
                && a != v.to_string()
            {
                return Err(format_err(
                    path,
                    format!("{what}: {name}=\"{a}\" but the PNG is {v} px"),
                ));
            }
        }
        out.push(EmbeddedImage {
            alt,
            width: w,
            height: h,
            bytes: bytes.len(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for s in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
            let enc = crate::doc::base64(s.as_bytes());
            assert_eq!(base64_decode(&enc).unwrap(), s.as_bytes());
        }
        assert_eq!(base64_decode("Zg="), None);
        assert_eq!(base64_decode("Z=g="), None);
        assert_eq!(base64_decode("Zm9v!A=="), None);
    }
}
