//! Evaluation of a trained model on a dataset's test split (spec sections 2-3): the layer above
//! inference, metrics and reports. [`evaluate`] = [`scoring_pass`] (every test image scored
//! once, [`ScoringPass`]) then [`write_report`] (the pass turned into metrics and files).
//!
//! Per class (in the model's order, restricted to the classes the dataset holds): every test
//! image is scored (class by global match unless stated), its anomaly map [S, S] and binarised
//! ground-truth mask [S, S] go into an [`EvalAccumulator`]; metrics per class, their mean, and
//! pooled over all classes; routing accuracy (matched vs true class); precision/recall/F1 at
//! the stored (or overriding) threshold; ROC/PR curves (SVG) and a heatmap gallery (HTML).
//! An image with several masks (MVTec LOCO) is scored against their union. A class with a
//! defect image that has no mask gets image metrics only: its pixel metrics (and the pooled
//! ones) are `null`, and `config.pixel_metrics_null` in metrics.json (and report.md) says why.
//!
//! Every decision (scores.csv, the figures at the threshold, the gallery) is taken here by the
//! inference layer's one rule and handed to the report writers, which do not decide.

mod pass;
mod write;

use std::path::Path;

use crate::data::{layouts, Dataset, Format, MaskMode, Splits};
use crate::infer::Predictor;
use crate::metrics::EvalAccumulator;
use crate::report::EvalReport;
use crate::Result;

pub use pass::{scoring_pass, ClassScores, GalleryItem, ImageRecord, ScoringPass};
pub use write::write_report;

/// Thresholds of the reference's `compute_pro` (its `num_th`).
pub const REFERENCE_PRO_THRESHOLDS: usize = 200;

/// Options of one evaluation.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Restrict to these classes (None: every model class the dataset holds).
    pub classes: Option<Vec<String>>,
    /// Layout of the dataset (None: detected).
    pub format: Option<Format>,
    /// Align with the true class instead of the matched one.
    pub class_given: bool,
    /// The reference's batch-vote class assignment (parity only).
    pub batch_vote: bool,
    /// With `batch_vote`: each class's test images, in order, are voted on in groups of this
    /// many (the reference votes over its test batch: 32 by default).
    pub vote_group: usize,
    /// How AUPRO is computed.
    pub pro: ProMode,
    /// Side of the square maps and masks the pixel metrics are computed on (None: the model's
    /// map side, [`Predictor::map_size`]). Compares models of different input sizes (e.g. a
    /// tiled model and a downscaling one) on the same pixels.
    pub map_size: Option<usize>,
    /// Mask handling for this evaluation (None: the model's, as trained).
    pub mask_mode: Option<MaskMode>,
    /// Override every stored threshold.
    pub threshold: Option<f32>,
    pub batch_size: usize,
    /// Gallery panels per class (defective first, then good); 0 = no gallery.
    pub gallery_per_class: usize,
    pub fpr_limit: f64,
    pub progress: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            classes: None,
            format: None,
            class_given: false,
            batch_vote: false,
            vote_group: 32,
            pro: ProMode::Standard,
            map_size: None,
            mask_mode: None,
            threshold: None,
            batch_size: 16,
            gallery_per_class: 8,
            fpr_limit: 0.3,
            progress: true,
        }
    }
}

/// Which PRO figure fills the reports' AUPRO column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProMode {
    /// Exact per-region overlap integrated to the FPR limit, divided by it (our default).
    #[default]
    Standard,
    /// The reference's `compute_pro` ([`crate::metrics::pro::aupro_reference`], 200
    /// thresholds, dilated predictions, rescaled FPR axis): for parity with published figures.
    Reference,
}

impl EvalOptions {
    /// The metrics of one group of test images under these options (AUPRO per [`ProMode`]).
    fn metrics_of(&self, acc: &EvalAccumulator) -> crate::metrics::MetricSet {
        let mut set = acc.compute(self.fpr_limit);
        if self.pro == ProMode::Reference {
            set.aupro = acc.aupro_reference(REFERENCE_PRO_THRESHOLDS);
            set = set.with_mad();
        }
        set
    }
}

/// Evaluates `predictor` on the test split under `data`, writes every report file into `out`
/// and returns the report: [`scoring_pass`] then [`write_report`].
pub fn evaluate(
    predictor: &Predictor,
    model_path: &Path,
    data: &Path,
    out: &Path,
    opts: &EvalOptions,
) -> Result<EvalReport> {
    let meta = &predictor.meta;
    let wanted: Vec<String> = match &opts.classes {
        Some(c) => c.clone(),
        None => meta.classes.clone(),
    };
    for c in &wanted {
        meta.class_index(c)?;
    }
    let ds: Dataset = layouts::load_splits(data, opts.format, Some(&wanted), Splits::Test)?;
    let pass = scoring_pass(predictor, &ds, opts)?;
    write_report(predictor, model_path, data, out, opts, pass)
}
