//! `report.html`: one self-contained page — the summary's markdown rendered as preformatted
//! text next to every figure embedded (SVG, or PNG) as base64, so the file can be mailed or
//! archived.

use base64::Engine;
use std::fmt::Write;
use std::path::Path;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Render the page from the summary text and the figures (title, SVG or PNG path). Each
/// figure's element carries its file stem as `id` (what `ci/browser-check.sh` looks for).
pub fn render(title: &str, summary_md: &str, figures: &[(&str, &Path)]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}pre{{white-space:pre-wrap;background:#f6f6f6;padding:1em}}img,figure svg{{max-width:100%;height:auto;border:1px solid #ddd}}figure{{margin:0}}</style></head><body><h1>{}</h1>",
        escape(title),
        escape(title)
    );
    let mut font_carried = false;
    for (name, path) in figures {
        let id = escape(&path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
        if path.extension().is_some_and(|e| e == "svg") {
            // Vector figures inline, the font carried once by the page.
            if let Ok(svg) = std::fs::read_to_string(path) {
                if !font_carried {
                    let _ = write!(h, "<style>{}</style>", crate::figures::font_face_css());
                    font_carried = true;
                }
                let _ = write!(
                    h,
                    "<h2>{}</h2><figure id=\"{id}\" role=\"img\" aria-label=\"{}\">{}</figure>",
                    escape(name),
                    escape(name),
                    crate::figures::without_font(&svg)
                );
            }
        } else if let Ok(bytes) = std::fs::read(path) {
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            let _ = write!(h, "<h2>{}</h2><img id=\"{id}\" alt=\"{}\" src=\"data:image/png;base64,{b64}\">", escape(name), escape(name));
        }
    }
    let _ = writeln!(h, "<h2>Summary</h2><pre>{}</pre></body></html>", escape(summary_md));
    h
}
