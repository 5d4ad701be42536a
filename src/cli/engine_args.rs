//! `--engine`, `--precision`, `--threads`: the options every scoring command shares
//! (`predict`, `eval`, `serve`, `bench`).

use cras::infer::engine::{EngineChoice, EngineOptions, Precision, DEFAULT_CONFIRM_BAND};

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
    /// At bf16, images whose score lies within this many logits of their threshold are scored
    /// again at f32 before they are decided, so precision does not flip decisions (0: never).
    #[arg(long, default_value_t = DEFAULT_CONFIRM_BAND, value_parser = parse_band)]
    pub confirm_band: f32,
}

fn parse_band(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(b) if b.is_finite() && b >= 0.0 => Ok(b),
        _ => Err(format!(
            "'{s}' is not a band in logits: expected a finite number >= 0 (0 turns the f32 \
             confirmation off)"
        )),
    }
}

impl EngineArgs {
    /// The library's engine options.
    pub fn options(&self) -> EngineOptions {
        EngineOptions {
            choice: self.engine,
            precision: self.precision,
            threads: self.threads,
            confirm_band: self.confirm_band,
        }
    }
}
