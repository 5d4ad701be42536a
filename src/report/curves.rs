//! ROC and precision-recall curves as standalone SVG line plots (no dependencies).
//!
//! Inputs: [`Curve`]s, each a label and points `(x, y)` with both axes in [0, 1] (values are
//! clamped; non-finite points are dropped). [`roc_points`] and [`pr_points`] build such points
//! exactly (one sort, ties grouped) from scores and binary labels.
//! Output: an SVG document (`String`), [`PLOT_WIDTH`] x [`PLOT_HEIGHT`] user units, with a plot
//! box (see [`plot_box`]; a square), ticks and grid at 0, 0.2, ..., 1, axis labels, a title, a legend, one
//! `<polyline>` per curve and, on request, the dashed chance diagonal of a ROC plot. Every text is
//! XML-escaped.

/// One line of a plot: a legend label and its points, both coordinates in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Width of the SVG document in user units.
pub const PLOT_WIDTH: f64 = 584.0;
/// Height of the SVG document in user units.
pub const PLOT_HEIGHT: f64 = 440.0;
const MARGIN_LEFT: f64 = 64.0;
const MARGIN_RIGHT: f64 = 176.0;
const MARGIN_TOP: f64 = 40.0;
const MARGIN_BOTTOM: f64 = 56.0;

/// Colours cycled over the curves (colour-blind-friendly "tab10" order).
const PALETTE: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// The plot box in SVG user units: `(left, top, width, height)`. Data `(0, 0)` is its bottom-left
/// corner and `(1, 1)` its top-right.
pub fn plot_box() -> (f64, f64, f64, f64) {
    (
        MARGIN_LEFT,
        MARGIN_TOP,
        PLOT_WIDTH - MARGIN_LEFT - MARGIN_RIGHT,
        PLOT_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM,
    )
}

/// Longest legend label shown (the full label stays in the curve's `<title>` tooltip).
const LEGEND_CHARS: usize = 22;

/// `label` cut to [`LEGEND_CHARS`] characters, with an ellipsis when cut.
fn legend_text(label: &str) -> String {
    if label.chars().count() <= LEGEND_CHARS {
        label.to_string()
    } else {
        let cut: String = label.chars().take(LEGEND_CHARS - 1).collect();
        format!("{cut}\u{2026}")
    }
}

/// Escapes `&`, `<`, `>`, `"` and `'` for XML/HTML text and attribute values.
pub fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Data coordinates (clamped to [0, 1]) to SVG user units.
fn to_svg(x: f64, y: f64) -> (f64, f64) {
    let (left, top, w, h) = plot_box();
    (
        left + x.clamp(0.0, 1.0) * w,
        top + (1.0 - y.clamp(0.0, 1.0)) * h,
    )
}

/// An SVG line plot of `curves` on the unit square, with title, axis labels, ticks, grid, a
/// legend and (when `diagonal`) the dashed line y = x.
pub fn line_plot_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    curves: &[Curve],
    diagonal: bool,
) -> String {
    let (left, top, w, h) = plot_box();
    let mut s = String::new();
    s.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{PLOT_WIDTH}\" height=\"{PLOT_HEIGHT}\" \
         viewBox=\"0 0 {PLOT_WIDTH} {PLOT_HEIGHT}\" font-family=\"sans-serif\" font-size=\"12\">\n"
    ));
    s.push_str(&format!(
        "<rect x=\"0\" y=\"0\" width=\"{PLOT_WIDTH}\" height=\"{PLOT_HEIGHT}\" fill=\"white\"/>\n"
    ));
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        left + w / 2.0,
        escape_xml(title)
    ));
    // Grid and ticks at 0, 0.2, ..., 1 on both axes.
    for i in 0..=5 {
        let v = i as f64 / 5.0;
        let (gx, _) = to_svg(v, 0.0);
        let (_, gy) = to_svg(0.0, v);
        s.push_str(&format!(
            "<line class=\"grid\" x1=\"{gx:.1}\" y1=\"{top:.1}\" x2=\"{gx:.1}\" y2=\"{:.1}\" stroke=\"#e0e0e0\"/>\n",
            top + h
        ));
        s.push_str(&format!(
            "<line class=\"grid\" x1=\"{left:.1}\" y1=\"{gy:.1}\" x2=\"{:.1}\" y2=\"{gy:.1}\" stroke=\"#e0e0e0\"/>\n",
            left + w
        ));
        s.push_str(&format!(
            "<text x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v:.1}</text>\n",
            top + h + 16.0
        ));
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>\n",
            left - 6.0,
            gy + 4.0
        ));
    }
    s.push_str(&format!(
        "<rect x=\"{left:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"none\" stroke=\"black\"/>\n"
    ));
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
        left + w / 2.0,
        top + h + 38.0,
        escape_xml(x_label)
    ));
    let (ylx, yly) = (18.0, top + h / 2.0);
    s.push_str(&format!(
        "<text x=\"{ylx:.1}\" y=\"{yly:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 {ylx:.1} {yly:.1})\">{}</text>\n",
        escape_xml(y_label)
    ));
    if diagonal {
        let (x0, y0) = to_svg(0.0, 0.0);
        let (x1, y1) = to_svg(1.0, 1.0);
        s.push_str(&format!(
            "<line class=\"diagonal\" x1=\"{x0:.1}\" y1=\"{y0:.1}\" x2=\"{x1:.1}\" y2=\"{y1:.1}\" stroke=\"#999999\" stroke-dasharray=\"5,4\"/>\n"
        ));
    }
    for (i, curve) in curves.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let pts: Vec<String> = curve
            .points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| {
                let (px, py) = to_svg(x, y);
                format!("{px:.2},{py:.2}")
            })
            .collect();
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.8\" points=\"{}\"><title>{}</title></polyline>\n",
            pts.join(" "),
            escape_xml(&curve.label)
        ));
        let ly = top + 10.0 + 18.0 * i as f64;
        let lx = left + w + 14.0;
        s.push_str(&format!(
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\n",
            lx + 20.0
        ));
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            lx + 26.0,
            ly + 4.0,
            escape_xml(&legend_text(&curve.label))
        ));
    }
    s.push_str("</svg>\n");
    s
}

/// The (score, label) pairs with a finite score: plots skip the others.
fn finite_pairs(scores: &[f32], labels: &[bool]) -> (Vec<f32>, Vec<bool>) {
    scores
        .iter()
        .zip(labels)
        .filter(|(s, _)| s.is_finite())
        .map(|(&s, &l)| (s, l))
        .unzip()
}

/// Keeps at most `max_points` of `points` (evenly spaced, first and last always kept), so that
/// pixel-level curves with millions of steps stay small.
pub fn thin(points: Vec<(f64, f64)>, max_points: usize) -> Vec<(f64, f64)> {
    let n = points.len();
    if n <= max_points.max(2) {
        return points;
    }
    let keep = max_points.max(2);
    (0..keep)
        .map(|i| points[i * (n - 1) / (keep - 1)])
        .collect()
}

/// The exact ROC curve `(false-positive rate, true-positive rate)`, from (0, 0) to (1, 1), one
/// point per distinct score (higher score = more anomalous; `labels[i]` true = defect), thinned
/// to at most `max_points`. Empty when either class is absent (the curve is undefined).
pub fn roc_points(scores: &[f32], labels: &[bool], max_points: usize) -> Vec<(f64, f64)> {
    let (s, l) = finite_pairs(scores, labels);
    crate::metrics::ranking::roc_curve(&s, &l).map_or_else(Vec::new, |p| thin(p, max_points))
}

/// The exact precision-recall curve `(recall, precision)`, one point per distinct score, from
/// (0, 1) (scikit-learn's convention) to recall 1, thinned to at most `max_points`. Empty when
/// there is no positive.
pub fn pr_points(scores: &[f32], labels: &[bool], max_points: usize) -> Vec<(f64, f64)> {
    let (s, l) = finite_pairs(scores, labels);
    crate::metrics::ranking::pr_curve(&s, &l).map_or_else(Vec::new, |p| thin(p, max_points))
}
