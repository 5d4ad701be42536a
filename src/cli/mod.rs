//! Subcommand drivers: argument structs (clap) and a `run` per subcommand.

pub mod bench;
pub mod data;
pub mod demo;
pub mod embed;
pub mod engine_args;
pub mod eval;
pub mod export;
pub mod import_reference;
pub mod predict;
pub mod serve;
pub mod shard;
pub mod synth;
pub mod train;
pub mod triton;
pub mod weights;
