//! `cras export --triton DIR`: the flags of a Triton model repository export and the run that
//! writes `DIR/<name>/config.pbtxt` + `DIR/<name>/1/model.onnx` (see `cras::export::triton`)
//! and prints what was written.

use std::path::{Path, PathBuf};

use cras::export::triton::{export_triton, InstanceKind, TritonOptions};

/// Triton model repository flags of `cras export`.
#[derive(clap::Args, Debug)]
pub struct TritonArgs {
    /// Write a Triton Inference Server model repository entry into this folder instead of one
    /// ONNX file: DIR/NAME/config.pbtxt and DIR/NAME/1/model.onnx (ONNX Runtime backend).
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub triton: Option<PathBuf>,
    /// The Triton model name and folder (default: the model file's stem).
    #[arg(long, conflicts_with = "out")]
    pub name: Option<String>,
    /// max_batch_size: the largest batch Triton's dynamic batcher forms.
    #[arg(long, default_value_t = 8, conflicts_with = "out")]
    pub max_batch: u32,
    /// dynamic_batching.preferred_batch_size (comma-separated; default: the max batch).
    #[arg(long, value_delimiter = ',', conflicts_with = "out")]
    pub preferred_batch: Vec<u32>,
    /// dynamic_batching.max_queue_delay_microseconds: how long a request may wait for others.
    #[arg(long, default_value_t = 100, conflicts_with = "out")]
    pub queue_delay_us: u64,
    /// instance_group count: model instances per GPU (kind gpu) or in all (kind cpu).
    #[arg(long, default_value_t = 1, conflicts_with = "out")]
    pub instances: u32,
    /// instance_group kind: gpu (KIND_GPU) or cpu (KIND_CPU).
    #[arg(long, default_value = "gpu", value_parser = ["cpu", "gpu"], conflicts_with = "out")]
    pub kind: String,
    /// Run the graph through ONNX Runtime's TensorRT execution provider (FP32), via the
    /// backend's gpu_execution_accelerator (kind gpu only).
    #[arg(long, conflicts_with = "out")]
    pub tensorrt: bool,
}

impl TritonArgs {
    fn options(&self, class_input: bool) -> TritonOptions {
        TritonOptions {
            name: self.name.clone(),
            max_batch: self.max_batch,
            preferred_batch: self.preferred_batch.clone(),
            queue_delay_us: self.queue_delay_us,
            instances: self.instances,
            kind: if self.kind == "cpu" {
                InstanceKind::Cpu
            } else {
                InstanceKind::Gpu
            },
            tensorrt: self.tensorrt,
            class_input,
        }
    }
}

/// Writes the repository entry of `model` into `repo` and prints what was written.
pub fn run(model: &Path, repo: &Path, class_input: bool, a: &TritonArgs) -> anyhow::Result<()> {
    let r = export_triton(model, repo, &a.options(class_input))?;
    let c = &r.config;
    println!("wrote {}", r.model_dir.display());
    println!(
        "  {}: {:.1} MiB",
        r.onnx_path.display(),
        r.onnx.bytes as f64 / (1u64 << 20) as f64
    );
    println!(
        "  {}: max_batch_size {}, preferred {:?}, queue delay {} us, {} x {}{}",
        r.config_path.display(),
        c.max_batch_size,
        c.preferred_batch_size,
        c.max_queue_delay_microseconds,
        c.instance_count,
        c.kind.as_str(),
        if c.tensorrt { ", TensorRT (FP32)" } else { "" }
    );
    let show = |t: &[cras::export::triton::TensorSpec]| {
        t.iter()
            .map(|t| format!("{} {} {:?}", t.name, t.data_type, t.dims))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("  inputs (dims after the batch): {}", show(&c.inputs));
    println!("  outputs: {}", show(&c.outputs));
    println!("  classes: {}", r.onnx.classes.join(", "));
    if r.onnx.tiling.is_some() {
        println!(
            "  tiled model: each input is ONE tile of an image; the client tiles and combines \
             (the rule is in the preprocess parameter)"
        );
    }
    Ok(())
}
