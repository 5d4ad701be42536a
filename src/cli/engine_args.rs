//! `--engine`, `--precision`, `--threads`: the options every scoring command shares
//! (`predict`, `eval`, `serve`, `bench`).

use cras::infer::engine::{EngineChoice, EngineOptions, Precision};

/// Which engine scores, at which precision.
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Scoring engine: candle (the exact reference path, CPU or CUDA), onnxruntime or openvino
    /// (the exported graph, libraries loaded at run time), or auto (OpenVINO, else ONNX Runtime,
    /// else candle).
    #[arg(long, default_value = "candle")]
    pub engine: EngineChoice,
    /// Arithmetic precision: f32, or bf16 (OpenVINO on CPUs with AMX / AVX-512 BF16).
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
    /// Compute threads of the onnxruntime / openvino engines (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl EngineArgs {
    /// The library's engine options.
    pub fn options(&self) -> EngineOptions {
        EngineOptions {
            choice: self.engine,
            precision: self.precision,
            threads: self.threads,
        }
    }
}
