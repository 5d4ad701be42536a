//! Subcommand drivers: argument structs (clap) and a `run` per subcommand.

pub mod args;
pub mod bench;
pub mod data;
pub mod demo;
pub mod embed;
pub mod eval;
pub mod export;
pub mod images;
pub mod import_reference;
pub mod predict;
pub mod quantize;
pub mod serve;
pub mod shard;
pub mod synth;
pub mod train;
pub mod triton;
pub mod weights;
