//! `report.html`: one self-contained page — the summary's markdown rendered as preformatted
//! text next to every figure embedded as a base64 PNG, so the file can be mailed or archived.

use base64::Engine;
use std::fmt::Write;
use std::path::Path;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Render the page from the summary text and the figures (title, PNG path).
pub fn render(title: &str, summary_md: &str, figures: &[(&str, &Path)]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}pre{{white-space:pre-wrap;background:#f6f6f6;padding:1em}}img{{max-width:100%;border:1px solid #ddd}}</style></head><body><h1>{}</h1>",
        escape(title),
        escape(title)
    );
    for (name, path) in figures {
        if let Ok(bytes) = std::fs::read(path) {
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            let _ = write!(h, "<h2>{}</h2><img alt=\"{}\" src=\"data:image/png;base64,{b64}\">", escape(name), escape(name));
        }
    }
    let _ = writeln!(h, "<h2>Summary</h2><pre>{}</pre></body></html>", escape(summary_md));
    h
}
