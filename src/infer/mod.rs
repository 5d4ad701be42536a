//! Inference: a [`Predictor`] loaded from a model checkpoint scores images exactly as the
//! trained model did.
//!
//! Per image [3, S, S] (preprocessed): descriptors g [P, D] -> adaptor f [P, D] -> class by
//! global match (or the class the caller states) -> local alignment R [P, D] ->
//! discriminator on `[f ; f - R]` -> patch scores [g, g] (g = S/8) -> image score = max patch
//! score; the anomaly map [S, S] is the bilinear upsampling of the patch scores blurred with a
//! Gaussian of sigma 4 ([`crate::anomaly_map`]).

pub mod engine;
pub mod evaluate;
pub mod model_file;
pub mod predictor;

pub use model_file::{ModelMeta, Thresholds, FORMAT_VERSION};
pub use predictor::{Prediction, Predictor};
