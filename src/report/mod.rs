//! Reports for people and scripts: evaluation tables, `metrics.json` / `metrics.csv` /
//! `report.md` ([`eval_report`]), ROC and PR curves as SVG ([`curves`]), heat images and gallery
//! panels as PNG ([`heatmap`]), a static HTML gallery ([`gallery`]) and table renderers
//! ([`table`]). Every file is written atomically (temporary file, then rename).

pub mod curves;
pub mod eval_report;
pub mod gallery;
pub mod heatmap;
pub mod table;

pub use eval_report::{ClassReport, EvalReport, ThresholdReport};
