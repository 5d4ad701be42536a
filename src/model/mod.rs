//! The CRAS head (spec section 1, from "adaptor" to "loss"): everything trained, plus the
//! center bank computed before training.
//!
//! Data path per batch of B images with P patch positions and descriptor width D:
//! descriptors g [B*P, D] -> [`head::Adaptor`] -> f [B*P, D] -> [`center::CenterBank`]
//! local alignment -> R [B*P, D] -> (training) [`synthesis::synthesize`] fake [B*P, D] ->
//! [`head::Discriminator`] on `[f ; f - R]` [rows, 2D] -> probabilities [rows, 1].
//!
//! [`mod@file`] owns the model file (tensor names, metadata, save / save_partial / load);
//! [`TrainedModel`] is a complete model in memory (borrowed as [`ModelRef`]) with its
//! load-time test forward pass (file `trained`); [`step`] is the training step only; scoring (class choice,
//! predictions) lives in the inference layer.
//! `model` depends on `backbone`, `features` and `data` only (never on `train` or `infer`).

pub mod center;
pub mod check;
pub mod file;
pub mod head;
pub mod layers;
pub mod optim;
pub mod step;
pub mod synthesis;
mod trained;

pub use center::{CenterAccumulator, CenterBank};
pub use file::{
    HeadRef, ModelFile, ModelMeta, PrecisionBand, Thresholds, TrainingStats, FORMAT_VERSION,
};
pub use head::{discriminator_input, Ablation, Adaptor, Discriminator};
pub use trained::{ModelRef, TrainedModel};
