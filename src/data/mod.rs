//! The data layer: dataset discovery in MVTec AD layout ([`dataset`]) and its per-file checks
//! ([`audit`]), Pillow-exact decoding
//! ([`decode`]), the reference's torchvision preprocessing ([`preprocess`]), a deterministic
//! synthetic benchmark ([`synth`]) and a parallel, bounded-memory batch loader ([`loader`]).

pub mod audit;
pub mod dataset;
pub mod decode;
pub mod loader;
pub mod preprocess;
pub mod synth;

pub use dataset::{discover, discover_splits, ClassSplit, Dataset, Splits, TestItem};
pub use preprocess::{MaskMode, Preprocess, ResizeMode};
