//! Frozen torchvision ResNet backbones (CPU or CUDA via candle) and their weight files.
//!
//! Contract: [`BackboneBuilder`] takes a torchvision state dict (parameter names map 1:1 to
//! torchvision's `resnet18`, `resnet50`, `wide_resnet50_2`, `wide_resnet101_2`) or a seeded
//! torchvision-style random initialisation, optionally moves the BatchNorm running statistics
//! (the reference's load-time quirk, or an offline re-estimation), and builds a [`ResNet`] whose
//! BatchNorms are folded into the convolutions. [`ResNet::forward`] takes normalised images
//! `[B,3,H,W]` and returns the outputs of the requested layers (`layer1` `[B,C1,H/4,W/4]` ...
//! `layer3` `[B,C3,H/16,W/16]`, each after its last block's ReLU), stopping after the last one.
//!
//! Submodules: `topology` (the network's layout), `weights` (file reading and conversion),
//! `fetch` (downloading torchvision's ImageNet files), `builder` (state dict, BN statistics,
//! folding), `resnet` (the folded inference network), `int8` (the ranges of the convolutions'
//! inputs an int8 graph quantizes with).

mod builder;
pub mod fetch;
pub mod int8;
mod resnet;
pub(crate) mod topology;
mod value_enum;
pub mod weights;

pub use builder::{BackboneBuilder, BuildOptions};
pub use int8::{ConvInputRange, Int8Calibration};
pub use resnet::ResNet;
pub use weights::{read_state_dict, sha256_file};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The supported torchvision ResNet variants (displayed and parsed with torchvision's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arch {
    /// `wide_resnet50_2`: Bottleneck `[3,4,6,3]`, width per group 128 (the CRAS default).
    #[default]
    #[serde(rename = "wide_resnet50_2")]
    WideResnet50_2,
    /// `wide_resnet101_2`: Bottleneck `[3,4,23,3]`, width per group 128.
    #[serde(rename = "wide_resnet101_2")]
    WideResnet101_2,
    /// `resnet18`: BasicBlock `[2,2,2,2]`.
    #[serde(rename = "resnet18")]
    Resnet18,
    /// `resnet50`: Bottleneck `[3,4,6,3]`, width per group 64.
    #[serde(rename = "resnet50")]
    Resnet50,
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 4] = [
        Arch::WideResnet50_2,
        Arch::WideResnet101_2,
        Arch::Resnet18,
        Arch::Resnet50,
    ];

    /// torchvision's name of the architecture.
    pub fn name(self) -> &'static str {
        match self {
            Arch::WideResnet50_2 => "wide_resnet50_2",
            Arch::WideResnet101_2 => "wide_resnet101_2",
            Arch::Resnet18 => "resnet18",
            Arch::Resnet50 => "resnet50",
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
                crate::Error::config(
                    "backbone",
                    s,
                    format!("expected one of {}", names.join(", ")),
                )
            })
    }
}

/// A ResNet stage (`layer1` .. `layer4` in torchvision).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Layer {
    #[serde(rename = "layer1")]
    L1,
    #[serde(rename = "layer2")]
    L2,
    #[serde(rename = "layer3")]
    L3,
    #[serde(rename = "layer4")]
    L4,
}

impl Layer {
    /// The four stages in network order.
    pub const ALL: [Layer; 4] = [Layer::L1, Layer::L2, Layer::L3, Layer::L4];

    /// Zero-based stage index (layer1 -> 0).
    pub fn index(self) -> usize {
        self as usize
    }

    /// torchvision's module name (`layer2`).
    pub fn name(self) -> &'static str {
        match self {
            Layer::L1 => "layer1",
            Layer::L2 => "layer2",
            Layer::L3 => "layer3",
            Layer::L4 => "layer4",
        }
    }

    /// Downsampling factor of the stage's output relative to the input image (4, 8, 16, 32).
    pub fn stride(self) -> usize {
        4 << self.index()
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Layer {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        Layer::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| {
                crate::Error::config("layer", s, "expected layer1, layer2, layer3 or layer4")
            })
    }
}

/// Which BatchNorm running statistics the backbone uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BnStats {
    /// The reference's load-time perturbation: one train-mode forward of an all-ones image moved
    /// every running mean/var 10% toward that image's batch statistics (the published numbers).
    #[default]
    Reference,
    /// The weight file's statistics, untouched.
    Clean,
}

/// Where the backbone's parameters come from.
#[derive(Clone, Debug, PartialEq)]
pub enum WeightSource {
    /// A torchvision state dict (`.pth` legacy or zip, or `.safetensors`).
    File(PathBuf),
    /// torchvision's initialisation scheme drawn from a seeded generator (no ImageNet features).
    Random { seed: u64 },
}

/// What a checkpoint or report records about the backbone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackboneInfo {
    pub arch: Arch,
    /// The weight file as given, when loaded from a file.
    pub weights_file: Option<String>,
    /// SHA-256 of the weight file (hex), when loaded from a file.
    pub weights_sha256: Option<String>,
    /// The seed of the random initialisation, when no weight file was used.
    pub random_init_seed: Option<u64>,
    /// Which BatchNorm statistics were used.
    pub bn_stats: BnStats,
    /// Whether the BatchNorm statistics were re-estimated from images (offline demo aid).
    pub recalibrated: bool,
    /// Input side the backbone was prepared for (the size of the reference perturbation image).
    pub input_size: usize,
    /// Non-standard width per group (reduced-width test networks only).
    pub width_per_group: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_serialise_as_torchvision_spells_them() {
        for arch in Arch::ALL {
            assert_eq!(arch.to_string().parse::<Arch>().unwrap(), arch);
            assert_eq!(serde_json::to_string(&arch).unwrap(), format!("\"{arch}\""));
        }
        assert!("wideresnet50".parse::<Arch>().is_err());
        assert_eq!("layer2".parse::<Layer>().unwrap(), Layer::L2);
        assert_eq!(serde_json::to_string(&Layer::L3).unwrap(), "\"layer3\"");
        assert!(Layer::L2 < Layer::L3 && Layer::L3.stride() == 16);
        assert_eq!(BnStats::default(), BnStats::Reference);
    }

    #[test]
    fn wide_resnet50_2_layout_has_torchvision_shapes() {
        let t = topology::Topology::new(Arch::WideResnet50_2, None).unwrap();
        let state: std::collections::HashMap<_, _> =
            t.expected_state(Layer::L4).into_iter().collect();
        assert_eq!(state["layer1.0.conv2.weight"], vec![128, 128, 3, 3]);
        assert_eq!(state["layer3.0.downsample.0.weight"], vec![1024, 512, 1, 1]);
        assert_eq!(t.channels, [256, 512, 1024, 2048]);
        // 68.9 M parameters in torchvision's wide_resnet50_2 minus fc (2049000) and BN buffers.
        let convs_and_bn_affine: usize = state
            .iter()
            .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert_eq!(convs_and_bn_affine + 2048 * 1000 + 1000, 68_883_240);
    }
}
