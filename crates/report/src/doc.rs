//! A small document model rendered twice: as Markdown (figures and images linked
//! by relative path) and as one self-contained HTML file (figures and images
//! embedded as base64 `data:` URIs, inline CSS, no scripts, no network).

use std::fmt::Write as _;
use std::path::Path;

use crate::files::format_err;
use crate::{Figure, ReportError, Result};

/// One gallery tile: an image and its overlays, with a caption.
#[derive(Debug, Clone)]
pub(crate) struct Tile {
    /// Caption lines.
    pub lines: Vec<String>,
    /// (label, path relative to the run folder) for the image and each overlay.
    pub images: Vec<(String, String)>,
}

/// A block of the report.
#[derive(Debug, Clone)]
pub(crate) enum Block {
    /// A heading (level 1–3).
    Heading(u8, String),
    /// A paragraph of plain text.
    Para(String),
    /// A table.
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A figure rendered by this crate (index into the document's figures).
    Figure(usize),
    /// A group of gallery tiles; paths are relative to `base`.
    Gallery(Vec<Tile>),
    /// A section whose input file is absent.
    NotComputed(String),
    /// A hypothesis verdict (`verdict`: supported, not supported, opposite
    /// direction, not testable).
    Verdict {
        verdict: String,
        statement: String,
        summary: String,
    },
    /// Links (label, relative href).
    Links(Vec<(String, String)>),
    /// A bulleted list of plain-text items.
    List(Vec<String>),
}

/// A report: blocks plus the figures they refer to.
#[derive(Debug, Default)]
pub(crate) struct Doc {
    pub title: String,
    pub blocks: Vec<Block>,
    pub figures: Vec<Figure>,
}

impl Doc {
    pub fn h(&mut self, level: u8, text: impl Into<String>) {
        self.blocks.push(Block::Heading(level, text.into()));
    }
    pub fn p(&mut self, text: impl Into<String>) {
        self.blocks.push(Block::Para(text.into()));
    }
    pub fn table(&mut self, header: &[&str], rows: Vec<Vec<String>>) {
        self.blocks.push(Block::Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows,
        });
    }
    pub fn list(&mut self, items: Vec<String>) {
        self.blocks.push(Block::List(items));
    }
    pub fn not_computed(&mut self, what: impl Into<String>) {
        self.blocks.push(Block::NotComputed(what.into()));
    }
    /// Adds a figure and a block showing it.
    pub fn figure(&mut self, fig: Figure) {
        self.figures.push(fig);
        self.blocks.push(Block::Figure(self.figures.len() - 1));
    }
    /// Adds the figure named `name` from `figs` if it is there.
    pub fn figure_named(&mut self, figs: &mut Vec<Figure>, name: &str) {
        if let Some(i) = figs.iter().position(|f| f.name == name) {
            let f = figs.remove(i);
            self.figure(f);
        }
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Markdown; figures are linked as `figures/<name>.png`, images by their relative
/// path.
pub(crate) fn to_markdown(doc: &Doc) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {}\n", doc.title);
    let mut prev_verdict = false;
    for b in &doc.blocks {
        let verdict = matches!(b, Block::Verdict { .. });
        if prev_verdict && !verdict {
            // A list of verdicts ends with a blank line.
            s.push('\n');
        }
        prev_verdict = verdict;
        match b {
            Block::Heading(l, t) => {
                let _ = writeln!(s, "{} {t}\n", "#".repeat(*l as usize + 1));
            }
            Block::Para(t) => {
                let _ = writeln!(s, "{t}\n");
            }
            Block::Table { header, rows } => {
                let _ = writeln!(
                    s,
                    "| {} |",
                    header
                        .iter()
                        .map(|h| md_cell(h))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
                let _ = writeln!(s, "|{}", "---|".repeat(header.len()));
                for r in rows {
                    let _ = writeln!(
                        s,
                        "| {} |",
                        r.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ")
                    );
                }
                s.push('\n');
            }
            Block::Figure(i) => {
                let f = &doc.figures[*i];
                let _ = writeln!(
                    s,
                    "![{}](figures/{}.png)\n\n*{}*\n",
                    f.name, f.name, f.caption
                );
            }
            Block::Gallery(tiles) => {
                let n = tiles.iter().map(|t| t.images.len()).max().unwrap_or(1);
                let mut header = vec!["case".to_string()];
                if let Some(t) = tiles.first() {
                    header.extend(t.images.iter().map(|(l, _)| l.clone()));
                }
                header.resize(n + 1, String::new());
                let _ = writeln!(s, "| {} |", header.join(" | "));
                let _ = writeln!(s, "|{}", "---|".repeat(n + 1));
                for t in tiles {
                    let mut cells = vec![md_cell(&t.lines.join("<br>"))];
                    cells.extend(
                        t.images
                            .iter()
                            .map(|(l, p)| format!("![{}]({})", md_cell(l), p)),
                    );
                    cells.resize(n + 1, String::new());
                    let _ = writeln!(s, "| {} |", cells.join(" | "));
                }
                s.push('\n');
            }
            Block::NotComputed(what) => {
                let _ = writeln!(s, "*Not computed: {what}*\n");
            }
            Block::Verdict {
                verdict,
                statement,
                summary,
            } => {
                let v = verdict.to_uppercase();
                let _ = writeln!(s, "- **{statement}: {v}.** {summary}");
            }
            Block::Links(links) => {
                for (label, href) in links {
                    let _ = writeln!(s, "- [{label}]({href})");
                }
                s.push('\n');
            }
            Block::List(items) => {
                for item in items {
                    let _ = writeln!(s, "- {}", item.replace('\n', " "));
                }
                s.push('\n');
            }
        }
    }
    s.trim_end().to_string() + "\n"
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Standard base64 with padding (RFC 4648).
pub(crate) fn base64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Width and height from a PNG's IHDR, or `None` when `data` is not a PNG.
pub fn png_size(data: &[u8]) -> Option<(u32, u32)> {
    const SIG: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    if data.len() < 24 || data[..8] != SIG || &data[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes([data[16], data[17], data[18], data[19]]);
    let h = u32::from_be_bytes([data[20], data[21], data[22], data[23]]);
    (w > 0 && h > 0).then_some((w, h))
}

fn img_tag(png: &[u8], alt: &str, class: &str) -> Option<String> {
    let (w, h) = png_size(png)?;
    Some(format!(
        "<img class=\"{class}\" alt=\"{}\" width=\"{w}\" height=\"{h}\" src=\"data:image/png;base64,{}\">",
        esc(alt),
        base64(png)
    ))
}

const CSS: &str = r#"
body{font-family:"DejaVu Sans",Verdana,Arial,sans-serif;margin:0;background:#f6f7f9;color:#1b1f24;line-height:1.45}
main{max-width:1280px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{font-size:1.7em;border-bottom:3px solid #0072b2;padding-bottom:.3em}
h2{font-size:1.35em;margin-top:2em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
h3{font-size:1.1em;margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:4px 9px;text-align:right}
th{background:#eef2f6}
td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafbfc}
figure{margin:1em 0 1.6em}
figure img{max-width:100%;height:auto;border:1px solid #e1e4e8}
figcaption{font-size:.9em;color:#57606a;margin-top:.3em}
.nc{color:#8a6d00;background:#fff8c5;border:1px solid #eed888;padding:6px 10px;border-radius:4px;display:inline-block}
.verdict{margin:.5em 0;padding:8px 12px;border-left:6px solid #999;background:#f6f8fa}
.verdict.yes{border-color:#d55e00}.verdict.no{border-color:#009e73}
.badge{font-weight:bold;padding:1px 7px;border-radius:3px;color:#fff;margin-right:6px}
.yes .badge{background:#d55e00}.no .badge{background:#009e73}
.verdict.opp{border-color:#cc79a7}.opp .badge{background:#cc79a7}
.verdict.na{border-color:#999}.na .badge{background:#777}
.gallery{display:flex;flex-wrap:wrap;gap:14px;margin:.6em 0 1.4em}
.tile{border:1px solid #d0d7de;border-radius:6px;padding:8px;background:#fafbfc}
.tile .imgs{display:flex;gap:6px}
.tile .imgs div{text-align:center;font-size:.75em;color:#57606a}
.tile img{display:block;width:160px;height:160px;image-rendering:pixelated;border:1px solid #d0d7de}
.tile .cap{font-size:.82em;margin-top:5px}
"#;

/// One self-contained HTML file. Figures are embedded from memory; gallery images
/// are read from `base` (the run folder) and embedded, checked to be PNGs.
/// A paragraph's text as HTML: escaped, with Markdown's `**strong**` spans (the only
/// inline markup the documents use) as `<strong>`; an unpaired `**` stays literal.
fn inline_html(text: &str) -> String {
    let parts: Vec<&str> = text.split("**").collect();
    let pairs = (parts.len() - 1) / 2;
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        let strong = i % 2 == 1 && i <= 2 * pairs;
        match (strong, i > 2 * pairs && i > 0) {
            (true, _) => {
                let _ = write!(out, "<strong>{}</strong>", esc(part));
            }
            (false, true) => {
                let _ = write!(out, "**{}", esc(part));
            }
            (false, false) => out.push_str(&esc(part)),
        }
    }
    out
}

pub(crate) fn to_html(doc: &Doc, base: &Path, gallery_csv: &Path) -> Result<String> {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n",
        esc(&doc.title),
        esc(&doc.title)
    );
    for b in &doc.blocks {
        match b {
            Block::Heading(l, t) => {
                let l = (*l + 1).min(6);
                let _ = writeln!(s, "<h{l}>{}</h{l}>", esc(t));
            }
            Block::Para(t) => {
                let _ = writeln!(s, "<p>{}</p>", inline_html(t));
            }
            Block::Table { header, rows } => {
                s.push_str("<table>\n<thead><tr>");
                for h in header {
                    let _ = write!(s, "<th>{}</th>", esc(h));
                }
                s.push_str("</tr></thead>\n<tbody>\n");
                for r in rows {
                    s.push_str("<tr>");
                    for c in r {
                        let _ = write!(s, "<td>{}</td>", esc(c));
                    }
                    s.push_str("</tr>\n");
                }
                s.push_str("</tbody>\n</table>\n");
            }
            Block::Figure(i) => {
                let f = &doc.figures[*i];
                let tag = img_tag(&f.png, &f.name, "fig").ok_or_else(|| ReportError::Figure {
                    figure: f.name.clone(),
                    reason: "encoded figure is not a PNG".into(),
                })?;
                let _ = writeln!(
                    s,
                    "<figure id=\"fig-{}\">{tag}<figcaption>{}</figcaption></figure>",
                    esc(&f.name),
                    esc(&f.caption)
                );
            }
            Block::Gallery(tiles) => {
                s.push_str("<div class=\"gallery\">\n");
                for t in tiles {
                    s.push_str("<div class=\"tile\"><div class=\"imgs\">");
                    for (label, rel) in &t.images {
                        let path = base.join(rel);
                        let bytes = std::fs::read(&path).map_err(|e| {
                            format_err(
                                gallery_csv,
                                format!("{}: `{rel}` cannot be read: {e}", t.lines[0]),
                            )
                        })?;
                        let tag = img_tag(&bytes, label, "g").ok_or_else(|| {
                            format_err(
                                gallery_csv,
                                format!("{}: `{rel}` is not a PNG file", t.lines[0]),
                            )
                        })?;
                        let _ = write!(s, "<div>{tag}{}</div>", esc(label));
                    }
                    s.push_str("</div><div class=\"cap\">");
                    let caps: Vec<String> = t.lines.iter().map(|l| esc(l)).collect();
                    s.push_str(&caps.join("<br>"));
                    s.push_str("</div></div>\n");
                }
                s.push_str("</div>\n");
            }
            Block::NotComputed(what) => {
                let _ = writeln!(
                    s,
                    "<p><span class=\"nc\">Not computed: {}</span></p>",
                    esc(what)
                );
            }
            Block::Verdict {
                verdict,
                statement,
                summary,
            } => {
                let class = match verdict.as_str() {
                    "supported" => "yes",
                    "opposite direction" => "opp",
                    "not testable" => "na",
                    _ => "no",
                };
                let badge = esc(&verdict.to_uppercase());
                let _ = writeln!(
                    s,
                    "<div class=\"verdict {class}\"><span class=\"badge\">{badge}</span><b>{}</b><br>{}</div>",
                    esc(statement),
                    esc(summary)
                );
            }
            Block::Links(links) => {
                s.push_str("<ul>\n");
                for (label, href) in links {
                    let _ = writeln!(s, "<li><a href=\"{}\">{}</a></li>", esc(href), esc(label));
                }
                s.push_str("</ul>\n");
            }
            Block::List(items) => {
                s.push_str("<ul>\n");
                for item in items {
                    let _ = writeln!(s, "<li>{}</li>", inline_html(item));
                }
                s.push_str("</ul>\n");
            }
        }
    }
    s.push_str("</main>\n</body>\n</html>\n");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_paragraphs_render_strong_spans_and_leak_no_markdown() {
        assert_eq!(
            inline_html("**Not pretrained:** a <b> & c."),
            "<strong>Not pretrained:</strong> a &lt;b&gt; &amp; c."
        );
        assert_eq!(inline_html("x ** y"), "x ** y");
        assert_eq!(
            inline_html("**a** and **b**"),
            "<strong>a</strong> and <strong>b</strong>"
        );
    }

    #[test]
    fn html_escaping() {
        assert_eq!(esc("a<b & \"c\"'"), "a&lt;b &amp; &quot;c&quot;&#39;");
    }

    #[test]
    fn png_size_rejects_non_png() {
        assert_eq!(png_size(b"GIF89a........................"), None);
    }
}
