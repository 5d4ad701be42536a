//! # cras
//!
//! Center-aware Residual Anomaly Synthesis (CRAS, IEEE TII 2025) for multi-class industrial
//! visual anomaly detection: ONE model for every product class, trained on normal images only,
//! returning per image an anomaly score, a pixel anomaly map, the matched class and an
//! OK/defect decision.
//!
//! The modules are layered, lowest first; a module imports only modules below it (doc links
//! too), so there is no cycle:
//! 1. leaves: [`error`] (the error type), [`device`] (CPU / CUDA choice), [`maps`] (bilinear
//!    upsampling, Gaussian blur: patch scores to anomaly maps), [`fsio`] (atomic file writes);
//! 2. [`data`]: datasets, decoding, Pillow-exact preprocessing and tiling, synthetic benchmark;
//! 3. [`backbone`]: torchvision ResNets, weight loading;
//! 4. [`features`]: patch descriptors, feature cache;
//! 5. [`model`]: adaptor, center bank, discriminator, synthesis, the model file, a trained model
//!    in memory;
//! 6. [`metrics`]: AUROC, AP, F1max, AUPRO, thresholds, the one decision rule;
//! 7. [`export`]: the ONNX graph of a trained model;
//! 8. [`infer`]: the predictor (candle or an exported graph in ONNX Runtime / OpenVINO),
//!    decisions;
//! 9. [`train`]: the training pipeline;
//! 10. [`report`]: tables, metrics files, curves, heatmaps, the gallery (given decisions, it
//!     takes none);
//! 11. [`eval`]: the scoring pass over a test split and the report built from it;
//! 12. [`serve`]: the HTTP service.
//!
//! The `cras` binary (`src/main.rs`, `src/cli`) sits on top.

pub mod backbone;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod export;
pub mod features;
pub mod fsio;
pub mod infer;
pub mod maps;
pub mod metrics;
pub mod model;
pub mod report;
pub mod serve;
pub mod train;

pub use error::{Error, Result};
