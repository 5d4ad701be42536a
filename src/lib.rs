//! # cras
//!
//! Center-aware Residual Anomaly Synthesis (CRAS, IEEE TII 2025) for multi-class industrial
//! visual anomaly detection: ONE model for every product class, trained on normal images only,
//! returning per image an anomaly score, a pixel anomaly map, the matched class and an
//! OK/defect decision.
//!
//! The modules follow the data's path:
//! [`data`] (datasets, decoding, preprocessing, synthetic benchmark) ->
//! [`backbone`] (torchvision ResNets, weight loading) ->
//! [`features`] (patch descriptors, feature cache) ->
//! [`model`] (adaptor, center bank, local alignment, synthesis, discriminator) ->
//! [`train`] / [`infer`] -> [`metrics`] -> [`report`] -> [`serve`].

pub mod backbone;
pub mod data;
pub mod device;
pub mod error;
pub mod export;
pub mod features;
pub mod infer;
pub mod metrics;
pub mod model;
pub mod report;
pub mod serve;
pub mod train;

pub use error::{Error, Result};
