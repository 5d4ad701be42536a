//! `cras embed`: the patch descriptors `[HW, dims]` of one image (and optionally the backbone's
//! layer outputs) written as `.npy` or `.safetensors`, chosen by the output's extension.
//! Without `--weights` the backbone is the seeded random initialisation (said on stderr).

use anyhow::Context;
use candle_core::{DType, Tensor};
use cras::backbone::{weights, Arch, BackboneBuilder, BnStats, WeightSource};
use cras::features::{DescriptorConfig, FeatureExtractor};
use std::path::{Path, PathBuf};

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
    /// Backbone architecture (torchvision name).
    #[arg(long, default_value = "wide_resnet50_2")]
    backbone: Arch,
    /// Input side in pixels (a multiple of 16).
    #[arg(long, default_value_t = 288)]
    size: usize,
    /// Descriptor width.
    #[arg(long, default_value_t = 1536)]
    dims: usize,
    /// Also write the layer2 and layer3 outputs (.npy: `<stem>.layer2.npy` next to the output).
    #[arg(long)]
    layers: bool,
    /// Use the weight file's BatchNorm statistics instead of the reference's perturbed ones.
    #[arg(long)]
    clean_bn: bool,
    /// Seed of the random backbone used without --weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
}

pub fn run(a: EmbedArgs) -> anyhow::Result<()> {
    let ext = a.out.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext != "npy" && ext != "safetensors" {
        anyhow::bail!(
            "{}: the output must end in .npy or .safetensors",
            a.out.display()
        );
    }
    if a.size == 0 || !a.size.is_multiple_of(16) {
        anyhow::bail!("--size {} must be a positive multiple of 16", a.size);
    }
    let device = cras::device::select(&a.device)?;
    let source = match &a.weights {
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
    let cfg = DescriptorConfig {
        dims: a.dims,
        ..DescriptorConfig::default()
    };
    let last = cfg
        .layers
        .iter()
        .copied()
        .max()
        .unwrap_or(cras::backbone::Layer::L3);
    let mut builder = BackboneBuilder::new(a.backbone, &source)?;
    let stats = if a.clean_bn {
        BnStats::Clean
    } else {
        BnStats::Reference
    };
    builder.apply_bn_stats(stats, a.size)?;
    let extractor = FeatureExtractor::new(builder.build(last, &device)?, cfg)?;

    let image = load_image_tensor(&a.image, a.size)?.to_device(&device)?;
    let feats = extractor.backbone.forward(&image, &extractor.cfg.layers)?;
    let desc = extractor.descriptor.forward(&feats)?.squeeze(0)?; // [HW, dims]
    let mut outputs = vec![("descriptors".to_string(), desc)];
    if a.layers {
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

/// `[1,3,size,size]` tensor of an image, preprocessed as the reference does (shorter side to
/// size * 329 / 288 with PIL-exact bilinear, center crop, ImageNet normalisation).
fn load_image_tensor(path: &Path, size: usize) -> anyhow::Result<Tensor> {
    let side = u32::try_from(size).context("image size too large")?;
    let pre = cras::data::Preprocess {
        resize: (side * 329 + 144) / 288,
        crop: side,
        ..cras::data::Preprocess::reference()
    };
    let img = cras::data::decode::decode_rgb(path)?;
    Ok(Tensor::from_vec(
        pre.image(&img),
        (1, 3, size, size),
        &candle_core::Device::Cpu,
    )?)
}

/// Writes an f32 tensor as a NumPy `.npy` (format 1.0, C order), atomically.
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
    cras::error::write_atomic(path, &bytes)?;
    Ok(())
}
