//! Dev aid: writes the head graph (descriptors `[B,P,D]` to the contract's outputs) of a model
//! file as the engines build it, for per-node profiling of the head in a runtime
//! (`dev/head_profile.py`).
//!
//! Usage: `cargo run --release --example head_onnx -- MODEL.safetensors OUT.onnx [bf16]`
//! (`bf16`: the head of the bf16 / int8 OpenVINO engines, its large products at bfloat16).

use candle_core::Device;
use cras::export::{export_onnx, ExportOptions, GraphPart};
use cras::infer::Predictor;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, out, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: head_onnx MODEL OUT [bf16]");
    };
    let p = Predictor::load(std::path::Path::new(model), &Device::Cpu)?;
    let options = ExportOptions {
        part: GraphPart::Head,
        bf16_products: rest.first().is_some_and(|r| r == "bf16"),
        ..ExportOptions::default()
    };
    let onnx = export_onnx(&p, &options)?;
    cras::fsio::write_atomic(std::path::Path::new(out), &onnx)?;
    println!("wrote {out} ({} bytes)", onnx.len());
    Ok(())
}
