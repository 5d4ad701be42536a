//! Inference: a [`Predictor`] loaded from a model file scores images exactly as the trained
//! model did; every command that scores goes through it.
//!
//! Per image [3, S, S] (preprocessed): descriptors g [P, D] -> scoring
//! ([`score_descriptors`]): adaptor f [P, D] -> class by global match (or the class the caller
//! states, [`ClassChoice`]) -> local alignment R [P, D] -> discriminator on `[f ; f - R]` ->
//! patch scores [g, g] (g = S/8) -> image score = max patch score ([`Prediction`]);
//! [`crate::maps`]: the map [S, S] is the bilinear upsampling of the patch scores blurred with a
//! Gaussian of sigma 4; [`decide`]: OK / defect at the class's threshold ([`ThresholdChoice`]).
//! A tiled model's tiles are scored and combined into one prediction per image inside the
//! predictor (module `tiled`); [`engine`] runs the exported graph in ONNX Runtime or OpenVINO.
//!
//! [`shard`]: the sharded, resumable JSON-lines output of batch scoring (`cras predict
//! --manifest`).
//!
//! Submodules are private except [`engine`] and [`shard`]: every type has one public path, `infer::Name`.

mod decision;
pub mod engine;
mod predictor;
mod record;
mod scoring;
pub mod shard;
mod tiled;

pub use decision::{
    decide, false_alarm_thresholds, near_threshold, Decision, ThresholdChoice, ThresholdOf,
};
pub use predictor::{stated_class, Predictor};
pub use record::{Field as RecordField, PredictionRecord, Surface, FIELDS as RECORD_FIELDS};
pub use scoring::{batch_vote, score_descriptors, ClassChoice, Prediction};
