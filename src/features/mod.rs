//! Patch descriptors and the training feature cache: the fixed map from backbone stage outputs
//! to one `dims`-wide vector per position of the reference grid (see [`descriptor`]), and the
//! store that computes them once per training image (see [`cache`]); [`build`] is the one place an extractor is built.

pub mod build;
pub mod cache;
pub mod descriptor;

pub use build::ExtractorSpec;
pub use descriptor::{DescriptorConfig, FeatureExtractor, PatchDescriptor};
