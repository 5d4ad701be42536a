//! Argument groups several subcommands share, flattened into them (`#[command(flatten)]`):
//! the network and descriptor ([`NetworkArgs`]: train, embed, import-reference, bench), the
//! feature extraction of an image ([`FeatureArgs`]: train, embed), the device ([`DeviceArg`]:
//! every computing command) and the scoring engine ([`EngineArgs`]: predict, eval, serve,
//! bench).
//!
//! Defaults are read from the library's configuration types, where they are stated once: the
//! paper's configuration ([`TrainConfig::paper`]: backbone, BatchNorm statistics, device),
//! its preprocessing ([`Preprocess::reference`]: the input side, the resize rule), the
//! descriptor ([`DescriptorConfig::default`]: width, stages) and the engine
//! ([`EngineOptions::default`]).

use std::path::PathBuf;
use std::sync::OnceLock;

use cras::backbone::{Arch, BnStats, Layer};
use cras::data::{Preprocess, ResizeMode};
use cras::features::DescriptorConfig;
use cras::infer::engine::{EngineChoice, EngineOptions, Precision};
use cras::train::config::TrainConfig;

/// The paper's training configuration, the source of the shared defaults.
pub fn paper() -> TrainConfig {
    TrainConfig::paper(PathBuf::new())
}

/// The default `--layers`, comma-separated as typed (`layer2,layer3`).
fn default_layers() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let names: Vec<&str> = DescriptorConfig::default()
            .layers
            .iter()
            .map(|l| l.name())
            .collect();
        names.join(",")
    })
}

/// The network and its patch descriptor: `--backbone`, `--image-size`, `--dims`, `--layers`.
#[derive(clap::Args, Debug, Clone)]
pub struct NetworkArgs {
    /// Backbone network.
    #[arg(long, value_enum, default_value_t = paper().backbone)]
    pub backbone: Arch,
    /// Center crop side (the model's input; a multiple of 16).
    #[arg(long, default_value_t = Preprocess::reference().crop)]
    pub image_size: u32,
    /// Descriptor and adaptor width.
    #[arg(long, default_value_t = DescriptorConfig::default().dims)]
    pub dims: usize,
    /// Backbone stages the descriptor combines, comma-separated; the first sets the patch grid.
    #[arg(long, value_enum, value_delimiter = ',', default_value = default_layers())]
    pub layers: Vec<Layer>,
}

impl NetworkArgs {
    /// The descriptor these flags describe (the library's defaults for the rest).
    pub fn descriptor(&self) -> DescriptorConfig {
        DescriptorConfig {
            dims: self.dims,
            layers: self.layers.clone(),
            ..DescriptorConfig::default()
        }
    }
}

/// How an image becomes features: the network, its weights, the resize and the BatchNorm
/// statistics (`cras train` and `cras embed`, same names, same defaults, same resize rule).
#[derive(clap::Args, Debug, Clone)]
pub struct FeatureArgs {
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Backbone checkpoint (torchvision .pth, legacy or zip, or .safetensors). Without it: a
    /// seeded RANDOM backbone (demo only).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Shorter side after resizing, PIL bilinear [default: image-size * 329 / 288, the
    /// reference's ratio: 329 at 288].
    #[arg(long)]
    pub resize: Option<u32>,
    /// Resize straight to a square of --image-size (no crop).
    #[arg(long)]
    pub square: bool,
    /// BatchNorm statistics: reference (the authors' load-time perturbation) or clean.
    #[arg(long, value_enum, default_value_t = paper().bn_stats)]
    pub bn_stats: BnStats,
}

impl FeatureArgs {
    /// The preprocessing `--image-size`, `--resize` and `--square` describe.
    pub fn preprocess(&self) -> Preprocess {
        preprocess_from_flags(self.network.image_size, self.resize, self.square)
    }
}

/// The preprocessing an input side, a resize and the square flag describe: `square` resizes
/// straight to `image_size`; otherwise the shorter side goes to `resize` (default
/// [`Preprocess::reference_resize`]) and the center `image_size` square is cropped.
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

/// `--device`.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArg {
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value_t = paper().device)]
    pub device: String,
}

impl DeviceArg {
    /// The candle device named.
    pub fn select(&self) -> anyhow::Result<candle_core::Device> {
        Ok(cras::device::select(&self.device)?)
    }
}

/// `--engine`, `--precision`, `--threads`, `--confirm-band`: which engine scores, at which
/// precision (`predict`, `eval`, `serve`, `bench`).
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Scoring engine: candle (the exact reference path, CPU or CUDA), onnxruntime or openvino
    /// (the exported graph, libraries loaded at run time), or auto (OpenVINO, else ONNX Runtime,
    /// else candle).
    #[arg(long, value_enum, ignore_case = true, default_value_t = EngineOptions::default().choice)]
    pub engine: EngineChoice,
    /// Arithmetic precision: f32, bf16 (OpenVINO on CPUs with AMX / AVX-512 BF16), or int8
    /// (OpenVINO or ONNX Runtime: the backbone's convolutions in integer arithmetic, calibrated
    /// on the model's training images).
    #[arg(long, value_enum, ignore_case = true, default_value_t = EngineOptions::default().precision)]
    pub precision: Precision,
    /// Compute threads of the onnxruntime / openvino engines (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// At bf16 or int8, images whose score lies within this many logits of their threshold are scored
    /// again at f32 before they are decided, so precision does not flip decisions (0: never).
    /// Default: the band measured for the model when it was trained (3 if it has none).
    #[arg(long, value_parser = parse_band)]
    pub confirm_band: Option<f32>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Every group, as a command would flatten them.
    #[derive(clap::Parser)]
    struct Groups {
        #[command(flatten)]
        features: FeatureArgs,
        #[command(flatten)]
        device: DeviceArg,
        #[command(flatten)]
        engine: EngineArgs,
    }

    fn parse(args: &[&str]) -> Result<Groups, clap::Error> {
        Groups::try_parse_from(std::iter::once("cras").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_the_library_configuration() {
        let g = parse(&[]).unwrap();
        let paper = paper();
        assert_eq!(g.features.network.backbone, paper.backbone);
        assert_eq!(g.features.network.descriptor(), paper.descriptor);
        assert_eq!(g.features.preprocess(), paper.preprocess);
        assert_eq!(g.features.bn_stats, paper.bn_stats);
        assert_eq!(g.features.weights, None);
        assert_eq!(g.device.device, paper.device);
        assert_eq!(g.engine.options(), EngineOptions::default());
    }

    #[test]
    fn choices_parse_by_name_and_a_wrong_one_lists_them() {
        let g = parse(&[
            "--backbone=resnet18",
            "--layers=layer1,layer3",
            "--bn-stats=clean",
            "--engine=ORT",
            "--precision=fp32",
            "--square",
        ])
        .unwrap();
        assert_eq!(g.features.network.backbone, Arch::Resnet18);
        assert_eq!(g.features.network.layers, [Layer::L1, Layer::L3]);
        assert_eq!(g.features.bn_stats, BnStats::Clean);
        assert_eq!(g.engine.options().choice.to_string(), "onnxruntime");
        assert_eq!(g.engine.options().precision, Precision::F32);
        assert_eq!(g.features.preprocess().mode, ResizeMode::Square);
        for (flag, listed) in [
            ("--engine=tensorrt", "candle, onnxruntime, openvino, auto"),
            ("--precision=fp8", "f32, bf16, int8"),
            (
                "--backbone=vit",
                "wide_resnet50_2, wide_resnet101_2, resnet18, resnet50",
            ),
            ("--layers=layer5", "layer1, layer2, layer3, layer4"),
            ("--bn-stats=frozen", "reference, clean"),
        ] {
            let err = parse(&[flag]).err().expect(flag).to_string();
            assert!(
                err.contains(&format!("[possible values: {listed}]")),
                "{err}"
            );
        }
    }
}
