//! The data layer: dataset discovery in MVTec AD layout ([`dataset`]), Pillow-exact decoding
//! ([`decode`]), the reference's torchvision preprocessing ([`preprocess`]), a deterministic
//! synthetic benchmark ([`synth`]) and a parallel, bounded-memory batch loader ([`loader`]).

pub mod dataset;
pub mod decode;
pub mod loader;
pub mod preprocess;
pub mod synth;

pub use dataset::{discover, ClassSplit, Dataset, TestItem};
pub use preprocess::{MaskMode, Preprocess, ResizeMode};
