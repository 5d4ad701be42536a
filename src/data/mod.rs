//! The data layer: dataset rows and manifests ([`manifest`]), the dataset layouts read as
//! published ([`layouts`]: MVTec AD, your own folders, VisA, MVTec AD 2, LOCO, Real-IAD),
//! MVTec AD discovery ([`dataset`]), Pillow-exact decoding ([`decode`]), the reference's
//! torchvision preprocessing ([`preprocess`]), a deterministic synthetic benchmark
//! ([`synth`]) and a parallel, bounded-memory batch loader ([`loader`]).

pub mod dataset;
pub mod decode;
pub mod layouts;
pub mod loader;
pub mod manifest;
pub mod preprocess;
pub mod synth;

pub use dataset::{discover, ClassSplit, Dataset, TestItem};
pub use layouts::{load, Format};
pub use manifest::{Label, Sample};
pub use preprocess::{MaskMode, Preprocess, ResizeMode};
