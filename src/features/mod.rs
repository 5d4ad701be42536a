//! Patch descriptors: the fixed map from backbone stage outputs to one `dims`-wide vector per
//! position of the reference grid (see [`descriptor`]).

pub mod descriptor;

pub use descriptor::{DescriptorConfig, FeatureExtractor, PatchDescriptor};
