//! Subcommand drivers: argument structs (clap) and a `run` per subcommand.

pub mod data;
pub mod embed;
pub mod synth;
pub mod weights;
