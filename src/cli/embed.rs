//! `cras embed`: the patch descriptors `[HW, dims]` of one image (and optionally the backbone's
//! layer outputs) written as `.npy` or `.safetensors`, chosen by the output's extension.
//! Without `--weights` the backbone is the seeded random initialisation (said on stderr).
//! Backbone, preprocessing and descriptor flags are `cras train`'s (same names, same defaults,
//! same resize rule); the extractor is built by [`cras::features::ExtractorSpec`].

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use cras::backbone::{weights, Arch, WeightSource};
use cras::data::{Preprocess, ResizeMode};
use cras::features::{DescriptorConfig, ExtractorSpec};

use super::train::BnStatsArg;

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// Backbone state dict (.pth or .safetensors); without it a seeded random backbone is used.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// The image to describe.
    #[arg(long)]
    image: PathBuf,
    /// Output file: .npy or .safetensors.
    #[arg(long)]
    out: PathBuf,
    /// Backbone network: wide_resnet50_2, wide_resnet101_2, resnet18, resnet50.
    #[arg(long, default_value = "wide_resnet50_2")]
    backbone: Arch,
    /// Center crop side (the model's input; a multiple of 16).
    #[arg(long, default_value_t = 288)]
    image_size: u32,
    /// Shorter side after resizing [default: image-size * 329 / 288, the reference's ratio].
    #[arg(long)]
    resize: Option<u32>,
    /// Resize straight to a square of --image-size (no crop).
    #[arg(long)]
    square: bool,
    /// Descriptor width.
    #[arg(long, default_value_t = 1536)]
    dims: usize,
    /// Backbone stages the descriptor combines, comma-separated; the first sets the patch grid.
    #[arg(long, value_delimiter = ',', default_value = "layer2,layer3")]
    layers: Vec<cras::backbone::Layer>,
    /// Also write each descriptor layer's output (.npy: `<stem>.layer2.npy` next to the output).
    #[arg(long)]
    write_layers: bool,
    /// BatchNorm statistics: reference (the authors' load-time perturbation) or clean.
    #[arg(long, value_enum, default_value = "reference")]
    bn_stats: BnStatsArg,
    /// Seed of the random backbone used without --weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
}

/// The preprocessing `--image-size`, `--resize` and `--square` describe (`cras train`'s rule).
pub fn preprocess_from_flags(image_size: u32, resize: Option<u32>, square: bool) -> Preprocess {
    Preprocess {
        resize: if square {
            image_size
        } else {
            resize.unwrap_or_else(|| Preprocess::reference_resize(image_size))
        },
        crop: image_size,
        mode: if square {
            ResizeMode::Square
        } else {
            ResizeMode::ShorterSideThenCenterCrop
        },
        ..Preprocess::reference()
    }
}

pub fn run(a: EmbedArgs) -> anyhow::Result<()> {
    let ext = a.out.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext != "npy" && ext != "safetensors" {
        anyhow::bail!(
            "{}: the output must end in .npy or .safetensors",
            a.out.display()
        );
    }
    let pre = preprocess_from_flags(a.image_size, a.resize, a.square);
    pre.validate()?;
    let size = a.image_size as usize;
    let device = cras::device::select(&a.device)?;
    let weights = match &a.weights {
        Some(p) => WeightSource::File(p.clone()),
        None => {
            eprintln!(
                "note: no --weights given: using a seeded random {} (seed {}); these are NOT \
                 ImageNet features",
                a.backbone, a.seed
            );
            WeightSource::Random { seed: a.seed }
        }
    };
    let extractor = ExtractorSpec {
        arch: a.backbone,
        weights,
        bn_stats: a.bn_stats.into(),
        input_size: size,
        descriptor: DescriptorConfig {
            dims: a.dims,
            layers: a.layers.clone(),
            ..DescriptorConfig::default()
        },
    }
    .build(&[], &device)?;

    let img = cras::data::decode::decode_rgb(&a.image)?;
    let image = Tensor::from_vec(pre.image(&img), (1, 3, size, size), &device)?;
    let feats = extractor.backbone.forward(&image, &extractor.cfg.layers)?;
    let desc = extractor.descriptor.forward(&feats)?.squeeze(0)?; // [HW, dims]
    let mut outputs = vec![("descriptors".to_string(), desc)];
    if a.write_layers {
        for (layer, f) in extractor.cfg.layers.iter().zip(&feats) {
            outputs.push((layer.to_string(), f.squeeze(0)?));
        }
    }
    if ext == "safetensors" {
        weights::write_safetensors(&a.out, &outputs)?;
        println!("wrote {}", a.out.display());
    } else {
        for (i, (name, t)) in outputs.iter().enumerate() {
            let path = if i == 0 {
                a.out.clone()
            } else {
                let stem = a
                    .out
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("embed");
                a.out.with_file_name(format!("{stem}.{name}.npy"))
            };
            write_npy(&path, t)?;
            println!("wrote {} {:?}", path.display(), t.dims());
        }
    }
    Ok(())
}

/// Writes an f32 tensor as a NumPy `.npy` (format 1.0, C order), atomically. Not candle's
/// `Tensor::write_npy`: its header is not padded to 64 bytes as the NumPy format asks.
fn write_npy(path: &Path, t: &Tensor) -> anyhow::Result<()> {
    let shape: Vec<String> = t.dims().iter().map(|d| d.to_string()).collect();
    let shape = if shape.len() == 1 {
        format!("({},)", shape[0])
    } else {
        format!("({})", shape.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64,
    // ending in a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let values: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * values.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&u16::try_from(header.len())?.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    cras::fsio::write_atomic(path, &bytes)?;
    Ok(())
}
