//! The evaluation report: the documented `metrics.json` schema (format 1, see
//! `docs/metrics-json.md`) and its renderings.
//!
//! Input: an [`EvalReport`] filled by the evaluation (per-class [`ClassReport`]s, the mean over
//! classes, the pooled figures, optional figures at a decision threshold, provenance).
//! Outputs: a text table for stdout ([`EvalReport::to_text_table`]) and, in a folder,
//! `metrics.json` (pretty JSON of the struct itself), `metrics.csv` (one row per class, then
//! `mean` and `pooled`; raw fractions, empty cells for undefined) and `report.md` (provenance,
//! warnings, the table in percent, threshold figures, links to curves and gallery), each written
//! atomically ([`EvalReport::write_files`]).
//!
//! All metric values are fractions in [0, 1]; undefined values are JSON `null`. A non-finite
//! value that slips in is written as `null` / empty / `-`, never as NaN.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::table::{csv_table, markdown_table, pct, text_table};
use crate::error::{Error, Result};
use crate::fsio::write_atomic;
use crate::metrics::MetricSet;

/// Current value of [`EvalReport::format`].
pub const FORMAT_VERSION: u32 = 1;
/// File names written or linked by [`EvalReport::write_files`], relative to its folder.
pub const METRICS_JSON: &str = "metrics.json";
pub const METRICS_CSV: &str = "metrics.csv";
pub const REPORT_MD: &str = "report.md";
/// One row per test image: path, class, defect, label, matched class, score, threshold, decision.
pub const SCORES_CSV: &str = "scores.csv";
pub const ROC_IMAGE_SVG: &str = "roc_image.svg";
pub const PR_IMAGE_SVG: &str = "pr_image.svg";
pub const ROC_PIXEL_SVG: &str = "roc_pixel.svg";
pub const PR_PIXEL_SVG: &str = "pr_pixel.svg";
pub const GALLERY_INDEX: &str = "gallery/index.html";
/// Key in `config` of the classes whose pixel metrics are `null` by design, each with the
/// reason (defect images without masks).
pub const PIXEL_METRICS_NULL: &str = "pixel_metrics_null";

/// Banner shown when the checkpoint's epoch was selected on the test set.
pub const WARN_TEST_SELECTED: &str =
    "test-selected (optimistic): the epoch was chosen on these test images, so the figures overstate what unseen data will give";
/// Banner shown when the backbone has random (not ImageNet) weights.
pub const WARN_RANDOM_BACKBONE: &str =
    "random backbone: real inspection needs ImageNet weights; these figures only show that the pipeline runs";

/// Serialises `Option<f64>` with non-finite values as `null`.
mod finite_or_null {
    use serde::Serializer;
    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v.filter(|x| x.is_finite()) {
            Some(x) => s.serialize_some(&x),
            None => s.serialize_none(),
        }
    }
}

/// Figures at one decision threshold (`score >= threshold` means defect).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ThresholdReport {
    pub threshold: f32,
    /// Where the threshold came from: "stored-class", "stored-global" or "override".
    pub source: String,
    #[serde(serialize_with = "finite_or_null::serialize")]
    pub precision: Option<f64>,
    #[serde(serialize_with = "finite_or_null::serialize")]
    pub recall: Option<f64>,
    #[serde(serialize_with = "finite_or_null::serialize")]
    pub f1: Option<f64>,
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    /// False negatives; the JSON key is `fn`.
    #[serde(rename = "fn")]
    pub fn_: usize,
}

/// One product class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    pub name: String,
    pub n_train: usize,
    pub n_test_good: usize,
    pub n_test_defect: usize,
    /// The metric keys (`image_auroc`, ..., `aupro`, `mad`) sit directly in the class object.
    #[serde(flatten)]
    pub metrics: MetricSet,
    /// Fraction of this class's test images matched to this class.
    #[serde(serialize_with = "finite_or_null::serialize")]
    pub routing_accuracy: Option<f64>,
    pub at_threshold: Option<ThresholdReport>,
}

/// A whole evaluation run; serialised as-is to `metrics.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Schema version, [`FORMAT_VERSION`].
    pub format: u32,
    /// "cras &lt;version&gt;", see [`EvalReport::tool_name`].
    pub tool: String,
    pub created_unix: u64,
    /// Provenance of the model: path, sha256, backbone, dims, classes, ...
    pub model: serde_json::Value,
    /// The checkpoint's epoch was chosen on the test set (optimistic figures).
    pub test_selected: bool,
    /// The backbone has random weights (figures are not meaningful for inspection).
    pub random_backbone: bool,
    pub config: serde_json::Value,
    pub classes: Vec<ClassReport>,
    /// Unweighted mean over classes of each defined metric.
    pub mean: MetricSet,
    /// Metrics over all test images of all classes together.
    pub pooled: MetricSet,
    /// Fraction of all test images matched to their true class.
    #[serde(serialize_with = "finite_or_null::serialize")]
    pub routing_accuracy: Option<f64>,
    pub at_threshold: Option<ThresholdReport>,
    pub timing: serde_json::Value,
    /// Number of test images evaluated.
    pub images: usize,
}

/// The eight metric columns shared by every rendering, in order: (table title, value).
fn metric_columns(m: &MetricSet) -> [(&'static str, &'static str, Option<f64>); 8] {
    [
        ("I-AUROC", "image_auroc", m.image_auroc),
        ("I-AP", "image_ap", m.image_ap),
        ("I-F1max", "image_f1max", m.image_f1max),
        ("P-AUROC", "pixel_auroc", m.pixel_auroc),
        ("P-AP", "pixel_ap", m.pixel_ap),
        ("P-F1max", "pixel_f1max", m.pixel_f1max),
        ("AUPRO", "aupro", m.aupro),
        ("mAD", "mad", m.mad),
    ]
}

/// A fraction for CSV: shortest round-trip decimal, empty when undefined or non-finite.
fn csv_number(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or(String::new(), |x| x.to_string())
}

/// The mean of the defined values, None if there is none.
fn mean_defined(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values.flatten().filter(|x| x.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// UTC date and time of a Unix timestamp, "YYYY-MM-DD HH:MM:SS UTC".
fn utc_string(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A JSON value as one line of Markdown: strings bare, anything else as compact JSON, inside a
/// code span (backticks removed).
fn md_value(v: &serde_json::Value) -> String {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!("`{}`", text.replace('`', "'").replace(['\r', '\n'], " "))
}

/// A bullet list of a JSON object's entries (or the value itself when not an object).
fn md_bullets(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) if !map.is_empty() => map
            .iter()
            .map(|(k, val)| format!("  - {}: {}\n", k.replace('`', "'"), md_value(val)))
            .collect(),
        serde_json::Value::Object(_) | serde_json::Value::Null => "  - (none)\n".to_string(),
        other => format!("  - {}\n", md_value(other)),
    }
}

fn threshold_header() -> Vec<String> {
    [
        "scope",
        "threshold",
        "source",
        "precision",
        "recall",
        "F1",
        "TP",
        "FP",
        "TN",
        "FN",
    ]
    .map(String::from)
    .to_vec()
}

fn threshold_row(scope: &str, t: &ThresholdReport) -> Vec<String> {
    vec![
        scope.to_string(),
        format!("{:.6}", t.threshold),
        t.source.clone(),
        pct(t.precision),
        pct(t.recall),
        pct(t.f1),
        t.tp.to_string(),
        t.fp.to_string(),
        t.tn.to_string(),
        t.fn_.to_string(),
    ]
}

impl EvalReport {
    /// "cras &lt;crate version&gt;", the value of [`EvalReport::tool`].
    pub fn tool_name() -> String {
        format!("cras {}", env!("CARGO_PKG_VERSION"))
    }

    /// Seconds since the Unix epoch now (0 if the clock is before it).
    pub fn now_unix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The warning banners that apply to this report (empty when none).
    pub fn warnings(&self) -> Vec<&'static str> {
        let mut w = Vec::new();
        if self.test_selected {
            w.push(WARN_TEST_SELECTED);
        }
        if self.random_backbone {
            w.push(WARN_RANDOM_BACKBONE);
        }
        w
    }

    /// Columns of the summary table.
    pub fn table_header() -> Vec<String> {
        let mut h = vec!["class".to_string()];
        h.extend(
            metric_columns(&MetricSet::default())
                .iter()
                .map(|(title, _, _)| title.to_string()),
        );
        h.push("routing".to_string());
        h
    }

    /// One row per class, then "mean" (unweighted over classes; routing = mean of the classes'
    /// routing accuracies) and "pooled" (all images together; routing = overall accuracy), in
    /// percent with two decimals, "-" when undefined.
    pub fn table_rows(&self) -> Vec<Vec<String>> {
        let row = |name: &str, m: &MetricSet, routing: Option<f64>| {
            let mut r = vec![name.to_string()];
            r.extend(metric_columns(m).iter().map(|(_, _, v)| pct(*v)));
            r.push(pct(routing));
            r
        };
        let mut rows: Vec<Vec<String>> = self
            .classes
            .iter()
            .map(|c| row(&c.name, &c.metrics, c.routing_accuracy))
            .collect();
        let mean_routing = mean_defined(self.classes.iter().map(|c| c.routing_accuracy));
        rows.push(row("mean", &self.mean, mean_routing));
        rows.push(row("pooled", &self.pooled, self.routing_accuracy));
        rows
    }

    /// The summary for stdout: warning banners (if any), the aligned table in percent, and the
    /// overall threshold figures (if any).
    pub fn to_text_table(&self) -> String {
        let mut out = String::new();
        for w in self.warnings() {
            out.push_str(&format!("WARNING: {w}\n"));
        }
        out.push_str(&text_table(&Self::table_header(), &self.table_rows()));
        if let Some(t) = &self.at_threshold {
            out.push_str(&format!(
                "at threshold {:.6} ({}): precision {} recall {} F1 {} (TP {} FP {} TN {} FN {})\n",
                t.threshold,
                t.source,
                pct(t.precision),
                pct(t.recall),
                pct(t.f1),
                t.tp,
                t.fp,
                t.tn,
                t.fn_
            ));
        }
        out
    }

    /// `metrics.json`: the report as pretty JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| Error::Other(format!("cannot serialise the evaluation report: {e}")))
    }

    /// `metrics.csv`: one row per class, then `mean` and `pooled`; raw fractions.
    pub fn to_csv(&self) -> String {
        let mut header: Vec<String> = ["class", "n_train", "n_test_good", "n_test_defect"]
            .map(String::from)
            .to_vec();
        header.extend(
            metric_columns(&MetricSet::default())
                .iter()
                .map(|(_, key, _)| key.to_string()),
        );
        header.extend(
            [
                "routing_accuracy",
                "threshold",
                "threshold_source",
                "precision",
                "recall",
                "f1",
                "tp",
                "fp",
                "tn",
                "fn",
            ]
            .map(String::from),
        );
        let row = |name: &str,
                   counts: Option<[usize; 3]>,
                   m: &MetricSet,
                   routing: Option<f64>,
                   t: Option<&ThresholdReport>| {
            let mut r = vec![name.to_string()];
            r.extend((0..3).map(|i| counts.map_or(String::new(), |c| c[i].to_string())));
            r.extend(metric_columns(m).iter().map(|(_, _, v)| csv_number(*v)));
            r.push(csv_number(routing));
            match t {
                Some(t) => r.extend([
                    if t.threshold.is_finite() {
                        t.threshold.to_string()
                    } else {
                        String::new()
                    },
                    t.source.clone(),
                    csv_number(t.precision),
                    csv_number(t.recall),
                    csv_number(t.f1),
                    t.tp.to_string(),
                    t.fp.to_string(),
                    t.tn.to_string(),
                    t.fn_.to_string(),
                ]),
                None => r.extend(std::iter::repeat_n(String::new(), 9)),
            }
            r
        };
        let mut rows: Vec<Vec<String>> = self
            .classes
            .iter()
            .map(|c| {
                row(
                    &c.name,
                    Some([c.n_train, c.n_test_good, c.n_test_defect]),
                    &c.metrics,
                    c.routing_accuracy,
                    c.at_threshold.as_ref(),
                )
            })
            .collect();
        let totals = self.classes.iter().fold([0usize; 3], |acc, c| {
            [
                acc[0] + c.n_train,
                acc[1] + c.n_test_good,
                acc[2] + c.n_test_defect,
            ]
        });
        let mean_routing = mean_defined(self.classes.iter().map(|c| c.routing_accuracy));
        rows.push(row("mean", None, &self.mean, mean_routing, None));
        rows.push(row(
            "pooled",
            Some(totals),
            &self.pooled,
            self.routing_accuracy,
            self.at_threshold.as_ref(),
        ));
        csv_table(&header, &rows)
    }

    /// `report.md`. Links point to the curve and gallery files that exist in `dir` (if given).
    pub fn to_markdown(&self, dir: Option<&Path>) -> String {
        let mut md = String::from("# CRAS evaluation report\n\n");
        for w in self.warnings() {
            md.push_str(&format!("> **WARNING: {w}**\n\n"));
        }
        md.push_str("## Provenance\n\n");
        md.push_str(&format!("- tool: `{}`\n", self.tool.replace('`', "'")));
        md.push_str(&format!(
            "- created: {} (unix {})\n",
            utc_string(self.created_unix),
            self.created_unix
        ));
        md.push_str(&format!(
            "- test images evaluated: {} in {} classes\n",
            self.images,
            self.classes.len()
        ));
        md.push_str(&format!(
            "- test-selected epoch: {}; random backbone: {}\n",
            if self.test_selected { "yes" } else { "no" },
            if self.random_backbone { "yes" } else { "no" }
        ));
        md.push_str("- model:\n");
        md.push_str(&md_bullets(&self.model));
        md.push_str("- configuration:\n");
        md.push_str(&md_bullets(&self.config));
        md.push_str("- timing:\n");
        md.push_str(&md_bullets(&self.timing));
        md.push_str("\n## Metrics (percent)\n\n");
        md.push_str(&markdown_table(&Self::table_header(), &self.table_rows()));
        md.push_str(
            "\n`mean`: unweighted mean over classes. `pooled`: all test images of all classes \
             ranked together. `routing`: share of test images matched to their own class. \
             `-`: undefined (for example no defect image in a class).\n",
        );
        if let Some(why) = self
            .config
            .get(PIXEL_METRICS_NULL)
            .and_then(|v| v.as_object())
        {
            md.push_str(
                "\nPixel metrics are undefined (`null`) for these classes, and for `pooled`; \
                 `mean` averages the classes that have them:\n\n",
            );
            for (class, reason) in why {
                let reason = reason.as_str().unwrap_or_default();
                md.push_str(&format!("- {class}: {reason}\n"));
            }
        }
        let mut trows: Vec<Vec<String>> = self
            .classes
            .iter()
            .filter_map(|c| c.at_threshold.as_ref().map(|t| threshold_row(&c.name, t)))
            .collect();
        if let Some(t) = &self.at_threshold {
            trows.push(threshold_row("all images", t));
        }
        if !trows.is_empty() {
            md.push_str(
                "\n## At the decision threshold (image level, score >= threshold = defect)\n\n",
            );
            md.push_str(&markdown_table(&threshold_header(), &trows));
        }
        let links: Vec<(&str, &str)> = [
            ("Image-level ROC", ROC_IMAGE_SVG),
            ("Image-level precision-recall", PR_IMAGE_SVG),
            ("Pixel-level ROC", ROC_PIXEL_SVG),
            ("Pixel-level precision-recall", PR_PIXEL_SVG),
            ("Gallery of test images", GALLERY_INDEX),
        ]
        .into_iter()
        .filter(|(_, file)| dir.is_some_and(|d| d.join(file).is_file()))
        .collect();
        md.push_str("\n## Curves and gallery\n\n");
        if links.is_empty() {
            md.push_str("No curve or gallery was written for this run.\n");
        }
        for (title, file) in links {
            md.push_str(&format!("- [{title}]({file})\n"));
        }
        md.push_str(&format!(
            "\nMachine-readable figures: [{METRICS_JSON}]({METRICS_JSON}), [{METRICS_CSV}]({METRICS_CSV}).\n"
        ));
        md
    }

    /// Writes `metrics.json`, `metrics.csv` and `report.md` into `dir` (created if needed), each
    /// atomically. Call it after writing any curves and gallery, so that `report.md` links them.
    pub fn write_files(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write_atomic(&dir.join(METRICS_JSON), self.to_json()?.as_bytes())?;
        write_atomic(&dir.join(METRICS_CSV), self.to_csv().as_bytes())?;
        write_atomic(&dir.join(REPORT_MD), self.to_markdown(Some(dir)).as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::utc_string;

    #[test]
    fn utc_string_matches_known_dates() {
        assert_eq!(utc_string(0), "1970-01-01 00:00:00 UTC");
        // 2000-02-29 12:34:56 UTC (a leap day) = 951827696.
        assert_eq!(utc_string(951_827_696), "2000-02-29 12:34:56 UTC");
        // 2024-12-31 23:59:59 UTC = 1735689599.
        assert_eq!(utc_string(1_735_689_599), "2024-12-31 23:59:59 UTC");
    }
}
