//! `cras embed`: the patch descriptors `[HW, dims]` of one image (and optionally the backbone's
//! layer outputs) written as `.npy` or `.safetensors`, chosen by the output's extension.
//! Without `--weights` the backbone is the seeded random initialisation (said on stderr).
//! Backbone, preprocessing and descriptor flags are `cras train`'s ([`super::args::FeatureArgs`]:
//! same names, same defaults, same resize rule); the extractor is built by
//! [`cras::features::ExtractorSpec`].

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use cras::backbone::{weights, WeightSource};
use cras::features::ExtractorSpec;

use super::args::{DeviceArg, FeatureArgs};

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// The image to describe.
    #[arg(long)]
    image: PathBuf,
    /// Output file: .npy or .safetensors.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    features: FeatureArgs,
    /// Also write each descriptor layer's output (.npy: `<stem>.layer2.npy` next to the output).
    #[arg(long)]
    write_layers: bool,
    /// Seed of the random backbone used without --weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    device: DeviceArg,
}

/// Runs `cras embed`.
pub fn run(a: EmbedArgs) -> anyhow::Result<()> {
    let ext = a.out.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext != "npy" && ext != "safetensors" {
        anyhow::bail!(
            "{}: the output must end in .npy or .safetensors",
            a.out.display()
        );
    }
    let f = &a.features;
    let pre = f.preprocess();
    pre.validate()?;
    let size = f.network.image_size as usize;
    let device = a.device.select()?;
    let weights = match &f.weights {
        Some(p) => WeightSource::File(p.clone()),
        None => {
            eprintln!(
                "note: no --weights given: using a seeded random {} (seed {}); these are NOT \
                 ImageNet features",
                f.network.backbone, a.seed
            );
            WeightSource::Random { seed: a.seed }
        }
    };
    let extractor = ExtractorSpec {
        arch: f.network.backbone,
        weights,
        bn_stats: f.bn_stats,
        input_size: size,
        descriptor: f.network.descriptor(),
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
