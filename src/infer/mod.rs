//! Inference: a [`Predictor`] loaded from a model file scores images exactly as the trained
//! model did; every command that scores goes through it.
//!
//! Per image [3, S, S] (preprocessed): descriptors g [P, D] -> [`scoring`]: adaptor f [P, D] ->
//! class by global match (or the class the caller states) -> local alignment R [P, D] ->
//! discriminator on `[f ; f - R]` -> patch scores [g, g] (g = S/8) -> image score = max patch
//! score; [`anomaly_map`]: the map [S, S] is the bilinear upsampling of the patch scores blurred
//! with a Gaussian of sigma 4; [`decision`]: OK / defect at the class's threshold.
//! [`evaluate`]: a scoring pass over a test split plus the report writer.

pub mod anomaly_map;
pub mod decision;
pub mod engine;
pub mod evaluate;
pub mod predictor;
pub mod record;
pub mod scoring;
pub mod tiled;

pub use crate::model::file::{ModelMeta, Thresholds, FORMAT_VERSION};
pub use decision::{decide, near_threshold, Decision, ThresholdChoice, ThresholdOf};
pub use predictor::Predictor;
pub use record::PredictionRecord;
pub use scoring::{ClassChoice, Prediction};
