//! `cras export`: writes the whole scoring path of a trained model as ONE ONNX graph (see
//! `cras::export` for the contract) and prints the output path, size, opset, inputs and outputs.

use std::path::PathBuf;

/// Export a trained model to ONNX.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Model file written by `cras train`.
    #[arg(long)]
    pub model: PathBuf,
    /// The ONNX file to write.
    #[arg(long, required_unless_present = "triton")]
    pub out: Option<PathBuf>,
    /// Add the optional `stated_class` int64 [B] input (the class of each image; < 0: use the
    /// global match).
    #[arg(long)]
    pub class_input: bool,
    /// Write the graph in int8 QDQ form: QuantizeLinear / DequantizeLinear around the backbone's
    /// convolutions (inputs uint8 per tensor over the ranges calibrated on the model's
    /// training images, weights int8 per output channel), everything else f32. OpenVINO and
    /// ONNX Runtime run those convolutions in integer arithmetic. Not with --triton.
    #[arg(long, conflicts_with = "triton")]
    pub int8: bool,
    #[command(flatten)]
    pub triton: super::triton::TritonArgs,
}

/// Runs `cras export`.
pub fn run(a: ExportArgs) -> anyhow::Result<()> {
    if let Some(repo) = &a.triton.triton {
        return super::triton::run(&a.model, repo, a.class_input, &a.triton);
    }
    let Some(out) = &a.out else {
        anyhow::bail!("give --out FILE.onnx or --triton DIR");
    };
    let r = cras::export::export_file(&a.model, out, a.class_input, a.int8)?;
    let (s, g, bytes) = (r.input_size, r.grid, r.bytes);
    println!("wrote {}", out.display());
    println!(
        "  size: {:.1} MiB, ONNX IR {}, opset {}",
        bytes as f64 / (1u64 << 20) as f64,
        cras::export::IR_VERSION,
        cras::export::OPSET
    );
    print!("  inputs: image f32 [batch,3,{s},{s}]");
    if a.class_input {
        print!(", stated_class i64 [batch] (< 0: global match)");
    }
    println!();
    println!(
        "  outputs: image_score f32 [batch], patch_scores f32 [batch,{g},{g}], anomaly_map f32 [batch,{s},{s}], \
         class_index i64 [batch], matched_class i64 [batch], class_similarity f32 [batch]"
    );
    println!("  classes: {}", r.classes.join(", "));
    if a.int8 {
        println!(
            "  int8: the backbone's convolutions in QDQ form (calibration in the cras.int8 metadata); \
             the descriptor and head f32"
        );
    }
    if let Some(t) = r.tiling {
        println!(
            "  tiled model: each input is ONE of the {} tiles of an image ({} px tiles, overlap {} px, of \
             the image resized to {} x {}); cras predict / eval / serve --engine tile, vote and blend \
             around the graph (the rule is in the cras.preprocess metadata)",
            t.count(),
            t.tile,
            t.overlap,
            t.image_size,
            t.image_size
        );
    }
    Ok(())
}
