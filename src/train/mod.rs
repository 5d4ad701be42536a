//! Training: the loop over cached descriptors ([`fit()`]) and the end-to-end pipeline from a
//! dataset folder to a self-describing model file ([`pipeline`], configured by [`config`]; its
//! first step, the seeded train / held-out split, is [`mod@split`]); [`diagnostics`] describes
//! each epoch beyond its mean loss; [`quantize`] calibrates a trained model for int8.

pub mod config;
pub mod diagnostics;
pub mod fit;
pub mod import;
pub mod pipeline;
pub mod quantize;
pub mod selection;
pub mod split;
pub mod tiles;

pub use fit::{fit, EpochStats, FitConfig, FitObserver, HeadState};
