//! The data layer: dataset rows and manifests ([`manifest`]), the dataset layouts read as
//! published ([`layouts`]: MVTec AD, your own folders, VisA, MVTec AD 2, LOCO, Real-IAD),
//! split-aware MVTec AD discovery ([`dataset`]) and the per-file checks of `cras data inspect`
//! ([`audit`]), the broken symbolic links discovery skips ([`links`]), Pillow-exact decoding
//! ([`decode`], the only way into an image file), the reference's torchvision preprocessing
//! ([`preprocess`]) on Pillow-exact resize kernels ([`resize`]), tiling of high-resolution images
//! ([`tiling`]), a deterministic synthetic benchmark ([`synth`]) and a parallel,
//! bounded-memory batch loader ([`loader`]).

pub mod audit;
pub mod dataset;
pub mod decode;
pub mod image_list;
pub mod layouts;
pub mod links;
pub mod loader;
pub mod manifest;
pub mod preprocess;
pub mod resize;
pub mod synth;
pub mod tiling;

pub use dataset::{discover, discover_splits, ClassSplit, Dataset, Splits, TestItem};
pub use layouts::{load, Format};
pub use manifest::{Label, Sample};
pub use preprocess::{MaskMode, Preprocess, ResizeMode};
pub use tiling::Tiling;
