//! A static HTML gallery of test images with their anomaly-map panels.
//!
//! Input: [`GalleryEntry`]s (one per image: class, defect type, panel PNG path relative to the
//! HTML file, original image path, score, optional decision threshold, the decision taken by
//! the caller, matched class).
//! Output: one self-contained `index.html` (inline CSS, no script, no external resource besides
//! the panel images), written atomically: a summary, a colour-scale legend, a table of contents,
//! then one section per class (in order of first appearance) whose rows are sorted by score,
//! highest first. The decision shown is the entry's [`GalleryEntry::verdict`]: "defect", "OK",
//! or "-" without a threshold; this module does not decide. A matched class that differs from
//! the true class is highlighted. All text is
//! HTML-escaped; panel paths are also percent-encoded where a URL needs it.

use std::path::Path;

use super::curves::escape_xml;
use super::heatmap::jet;
use crate::error::Result;
use crate::fsio::write_atomic;

/// One image of the gallery.
#[derive(Clone, Debug, PartialEq)]
pub struct GalleryEntry {
    /// The true product class (folder name).
    pub class: String,
    /// The defect type (`good` for a normal image).
    pub defect: String,
    /// The panel PNG, relative to the HTML file.
    pub file: String,
    /// The original image's path, shown as text.
    pub source: String,
    /// The image's anomaly score.
    pub score: f32,
    /// The decision threshold in force for this image, if any.
    pub threshold: Option<f32>,
    /// The decision at `threshold`: `Some(true)` = defect, `Some(false)` = OK, None when no
    /// threshold is in force.
    pub verdict: Option<bool>,
    /// The class the model matched (global match).
    pub matched_class: String,
}

/// A relative path as a URL: `\` becomes `/`; characters with a meaning in URLs are
/// percent-encoded; the result still needs HTML-escaping.
fn url_of(file: &str) -> String {
    let mut out = String::with_capacity(file.len());
    for c in file.chars() {
        match c {
            '\\' => out.push('/'),
            '%' => out.push_str("%25"),
            ' ' => out.push_str("%20"),
            '#' => out.push_str("%23"),
            '?' => out.push_str("%3F"),
            '"' => out.push_str("%22"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;background:#fafafa}\
h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:2px solid #ccc;padding-bottom:4px}\
table{border-collapse:collapse;width:100%;background:white}\
th,td{border:1px solid #ddd;padding:6px 8px;text-align:left;vertical-align:middle}\
th{background:#f0f0f0;position:sticky;top:0}th.sorted::after{content:' \\25BE'}\
td.num{text-align:right;font-variant-numeric:tabular-nums}\
img.panel{max-width:720px;width:100%;image-rendering:auto}\
.defect{color:#b00020;font-weight:bold}.ok{color:#1b7f3b;font-weight:bold}\
tr.mismatch td.matched{background:#ffe08a;font-weight:bold}\
.legend{display:flex;align-items:center;gap:8px;margin:12px 0}\
.scale{width:320px;height:16px;border:1px solid #888}\
.src{font-family:monospace;font-size:12px;color:#555;word-break:break-all}\
.summary td,.summary th{width:auto}";

/// A CSS gradient through the jet colormap.
fn jet_gradient() -> String {
    let stops: Vec<String> = (0..=10)
        .map(|i| {
            let v = i as f32 / 10.0;
            let [r, g, b] = jet(v);
            format!("rgb({r},{g},{b}) {}%", i * 10)
        })
        .collect();
    format!("linear-gradient(to right,{})", stops.join(","))
}

/// Entries grouped by class in order of first appearance, each group sorted by score, highest
/// first (non-finite scores last).
fn grouped(entries: &[GalleryEntry]) -> Vec<(&str, Vec<&GalleryEntry>)> {
    let mut groups: Vec<(&str, Vec<&GalleryEntry>)> = Vec::new();
    for e in entries {
        match groups.iter_mut().find(|(c, _)| *c == e.class) {
            Some((_, list)) => list.push(e),
            None => groups.push((&e.class, vec![e])),
        }
    }
    let key = |e: &GalleryEntry| {
        if e.score.is_finite() {
            e.score
        } else {
            f32::NEG_INFINITY
        }
    };
    for (_, list) in &mut groups {
        list.sort_by(|a, b| key(b).total_cmp(&key(a)));
    }
    groups
}

fn row_html(e: &GalleryEntry) -> String {
    let mismatch = e.matched_class != e.class;
    let (decision_class, decision_text) = match e.verdict {
        Some(true) => ("defect", "defect"),
        Some(false) => ("ok", "OK"),
        None => ("", "-"),
    };
    let threshold = e.threshold.map_or("-".to_string(), |t| format!("{t:.4}"));
    let src = escape_xml(&url_of(&e.file));
    format!(
        "<tr{}><td><a href=\"{src}\"><img class=\"panel\" src=\"{src}\" alt=\"{}\" loading=\"lazy\"></a></td>\
         <td>{}<div class=\"src\">{}</div></td><td class=\"num\">{:.4}</td><td class=\"num\">{threshold}</td>\
         <td class=\"{decision_class}\">{decision_text}</td><td class=\"matched\">{}{}</td></tr>\n",
        if mismatch { " class=\"mismatch\"" } else { "" },
        escape_xml(&e.source),
        escape_xml(&e.defect),
        escape_xml(&e.source),
        e.score,
        escape_xml(&e.matched_class),
        if mismatch { " (mismatch)" } else { "" },
    )
}

/// The gallery page as a string (see the module documentation).
pub fn gallery_html(title: &str, entries: &[GalleryEntry]) -> String {
    let groups = grouped(entries);
    let flagged = entries.iter().filter(|e| e.verdict == Some(true)).count();
    let mismatches = entries
        .iter()
        .filter(|e| e.matched_class != e.class)
        .count();
    let title = escape_xml(title);
    let mut h = String::new();
    h.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    ));
    h.push_str(&format!(
        "<p>{} images in {} classes; {flagged} flagged as defect at their threshold; {mismatches} matched to another class.</p>\n",
        entries.len(),
        groups.len()
    ));
    h.push_str(&format!(
        "<div class=\"legend\"><span>Each panel: image | ground truth (white = defect) | anomaly map overlay.</span></div>\n\
         <div class=\"legend\"><span>low score</span><div class=\"scale\" style=\"background:{}\"></div><span>high score</span></div>\n",
        jet_gradient()
    ));
    h.push_str("<table class=\"summary\"><tr><th>class</th><th>images</th><th>flagged defect</th><th>class mismatches</th></tr>\n");
    for (i, (class, list)) in groups.iter().enumerate() {
        let flagged = list.iter().filter(|e| e.verdict == Some(true)).count();
        let mism = list.iter().filter(|e| e.matched_class != e.class).count();
        h.push_str(&format!(
            "<tr><td><a href=\"#class-{i}\">{}</a></td><td class=\"num\">{}</td><td class=\"num\">{flagged}</td><td class=\"num\">{mism}</td></tr>\n",
            escape_xml(class),
            list.len()
        ));
    }
    h.push_str("</table>\n");
    for (i, (class, list)) in groups.iter().enumerate() {
        h.push_str(&format!(
            "<h2 id=\"class-{i}\">{}</h2>\n<table>\n<tr><th>panel</th><th>defect type / source</th><th class=\"sorted\">score</th><th>threshold</th><th>decision</th><th>matched class</th></tr>\n",
            escape_xml(class)
        ));
        for e in list {
            h.push_str(&row_html(e));
        }
        h.push_str("</table>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// Writes the gallery page to `path` atomically (creating its folder if needed).
pub fn write_gallery_html(path: &Path, title: &str, entries: &[GalleryEntry]) -> Result<()> {
    write_atomic(path, gallery_html(title, entries).as_bytes())
}
