//! Everything the exporter reads from a trained model, gathered in ONE place: the folded
//! backbone (with its layout), the descriptor settings, the head's weights, the center bank, the
//! ablation flags and the metadata. The graph builders only see [`ModelSource`], so a change in
//! the model or inference modules is fixed here.
//!
//! Symbols read: `ModelRef::{meta, extractor, head, input_size}` (the trained model, borrowed),
//! `ModelMeta::{classes, thresholds, preprocess, backbone, descriptor, grid, ablation,
//! random_backbone}`, `FeatureExtractor::{backbone, cfg}`, `ResNet::{info, channels,
//! folded_tensors}`, `backbone::topology::Topology`, `Linear::{weight, bias}`,
//! `BatchNorm1d::eval_affine`, `CenterBank::centers`, `model::Ablation`.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::backbone::topology::{ConvBn, Topology};
use crate::backbone::Layer;
use crate::model::{Ablation, ModelRef};
use crate::{Error, Result};

/// A host copy of a float32 tensor.
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    fn read(t: &Tensor) -> Result<Self> {
        let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        Ok(HostTensor {
            dims: t.dims().to_vec(),
            data: t.flatten_all()?.to_vec1()?,
        })
    }

    /// The transposed 2-D tensor (`[r, c]` -> `[c, r]`).
    pub fn transposed(&self) -> HostTensor {
        let (r, c) = (self.dims[0], self.dims[1]);
        let mut data = vec![0f32; r * c];
        for i in 0..r {
            for j in 0..c {
                data[j * r + i] = self.data[i * c + j];
            }
        }
        HostTensor {
            dims: vec![c, r],
            data,
        }
    }
}

/// One folded convolution (BatchNorm folded in: weight and bias).
pub struct ConvSrc {
    pub name: String,
    pub weight: HostTensor,
    pub bias: HostTensor,
    pub stride: usize,
    pub pad: usize,
}

/// One residual block.
pub struct BlockSrc {
    pub convs: Vec<ConvSrc>,
    pub downsample: Option<ConvSrc>,
}

/// A linear layer `y = x Wᵀ + b`: W `[out, in]`.
pub struct LinearSrc {
    pub weight: HostTensor,
    pub bias: Option<HostTensor>,
}

/// BatchNorm1d in evaluation mode as `y = x * scale + shift` (the exact f32 constants candle uses).
pub struct AffineSrc {
    pub scale: HostTensor,
    pub shift: HostTensor,
}

/// The trained model as the exporter sees it.
pub struct ModelSource {
    /// Input side S.
    pub input_size: usize,
    pub stem: ConvSrc,
    /// Blocks of layer1 .. the last descriptor layer.
    pub stages: Vec<Vec<BlockSrc>>,
    /// Descriptor layers (the first sets the grid), their channels and strides.
    pub layers: Vec<Layer>,
    pub channels: Vec<usize>,
    pub patch_size: usize,
    pub dims: usize,
    /// Side of the patch grid.
    pub grid: usize,
    pub adaptor: LinearSrc,
    pub fc1: LinearSrc,
    pub bn1: AffineSrc,
    pub fc2: LinearSrc,
    pub bn2: AffineSrc,
    pub tail: LinearSrc,
    /// `[K, P, D]`.
    pub centers: HostTensor,
    pub ablation: Ablation,
    pub classes: Vec<String>,
    /// JSON of the stored thresholds (`null` when uncalibrated).
    pub thresholds_json: String,
    /// JSON of the measured low-precision errors and confirmation bands (a list, empty when
    /// none was measured).
    pub precision_bands_json: String,
    pub preprocess_json: String,
    pub backbone_json: String,
    /// The ranges an int8 graph quantizes the backbone's convolution inputs with, if the
    /// model was calibrated.
    pub int8: Option<crate::backbone::Int8Calibration>,
    pub random_backbone: bool,
}

fn linear(l: &crate::model::layers::Linear) -> Result<LinearSrc> {
    Ok(LinearSrc {
        weight: HostTensor::read(l.weight.as_tensor())?,
        bias: l
            .bias
            .as_ref()
            .map(|b| HostTensor::read(b.as_tensor()))
            .transpose()?,
    })
}

fn affine(bn: &crate::model::layers::BatchNorm1d) -> Result<AffineSrc> {
    let (scale, shift) = bn.eval_affine()?;
    Ok(AffineSrc {
        scale: HostTensor::read(&scale.flatten_all()?)?,
        shift: HostTensor::read(&shift.flatten_all()?)?,
    })
}

impl ModelSource {
    /// Reads everything the graph needs from the model `p`.
    pub fn read(p: ModelRef<'_>) -> Result<Self> {
        let meta = p.meta;
        let backbone = &p.extractor.backbone;
        let info = backbone.info();
        let cfg = &p.extractor.cfg;
        let last =
            *cfg.layers.iter().max().ok_or_else(|| {
                Error::config("descriptor layers", "[]", "need at least one layer")
            })?;
        let topo = Topology::new(info.arch, info.width_per_group)?;
        let folded: HashMap<String, Tensor> = backbone.folded_tensors().into_iter().collect();
        let conv = |cb: &ConvBn| -> Result<ConvSrc> {
            let get = |suffix: &str| {
                let name = format!("{}.{suffix}", cb.conv);
                folded
                    .get(&name)
                    .ok_or_else(|| Error::Other(format!("the folded backbone lacks {name}")))
                    .and_then(HostTensor::read)
            };
            Ok(ConvSrc {
                name: cb.conv.clone(),
                weight: get("weight")?,
                bias: get("bias")?,
                stride: cb.stride,
                pad: cb.padding,
            })
        };
        let stages = topo.layers[..=last.index()]
            .iter()
            .map(|blocks| {
                blocks
                    .iter()
                    .map(|b| {
                        Ok(BlockSrc {
                            convs: b.convs.iter().map(conv).collect::<Result<_>>()?,
                            downsample: b.downsample.as_ref().map(conv).transpose()?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let d = p.head.discriminator;
        Ok(ModelSource {
            input_size: p.input_size(),
            stem: conv(&topo.stem)?,
            stages,
            layers: cfg.layers.clone(),
            channels: cfg.layers.iter().map(|l| backbone.channels(*l)).collect(),
            patch_size: cfg.patch_size,
            dims: cfg.dims,
            grid: meta.grid,
            adaptor: linear(&p.head.adaptor.linear)?,
            fc1: linear(&d.fc1)?,
            bn1: affine(&d.bn1)?,
            fc2: linear(&d.fc2)?,
            bn2: affine(&d.bn2)?,
            tail: linear(&d.tail)?,
            centers: HostTensor::read(&p.head.bank.centers)?,
            ablation: meta.ablation,
            classes: meta.classes.clone(),
            thresholds_json: serde_json::to_string(&meta.thresholds)
                .map_err(|e| Error::Other(e.to_string()))?,
            precision_bands_json: serde_json::to_string(&meta.precision_bands)
                .map_err(|e| Error::Other(e.to_string()))?,
            preprocess_json: preprocess_json(&meta.preprocess).to_string(),
            backbone_json: backbone_json(info)?,
            int8: meta.int8.clone(),
            random_backbone: meta.random_backbone(),
        })
    }
}

/// The preprocessing as the graph's consumers must reproduce it (`cras.preprocess`): sizes,
/// mode, normalisation, the rule in words, and a tiled model's tiling.
fn preprocess_json(pre: &crate::data::Preprocess) -> serde_json::Value {
    let mut preprocess = serde_json::json!({
        "resize": pre.resize,
        "crop": pre.crop,
        "mode": pre.mode,
        "mean": crate::data::resize::IMAGENET_MEAN,
        "std": crate::data::resize::IMAGENET_STD,
        "layout": "float32 [B,3,crop,crop], RGB, channels first",
        "rule": match pre.mode {
            crate::data::ResizeMode::ShorterSideThenCenterCrop =>
                "Pillow BILINEAR (antialiased) resize of the shorter side to `resize`, center crop `crop` x `crop`, v/255, (v - mean) / std per channel",
            crate::data::ResizeMode::Square =>
                "Pillow BILINEAR (antialiased) resize to `crop` x `crop` (aspect ratio not kept), v/255, (v - mean) / std per channel",
        },
    });
    if let Some(t) = &pre.tiling {
        preprocess["tiling"] = serde_json::json!({
            "image_size": t.image_size,
            "tile": t.tile,
            "overlap": t.overlap,
            "tiles": t.count(),
            "centers_per_tile": t.centers_per_tile,
            "rule": "the graph scores ONE TILE per input: Pillow BILINEAR resize of the image to image_size x image_size, windows of tile x tile whose starts step by tile - overlap (the last flush with the edge), row-major, each resized to crop x crop and normalised; per image, the class is the tiles' majority match (tiles matched otherwise are scored again with it; with centers_per_tile the bank row of class k, tile j is k * tiles + j, a match votes for row / tiles and a tile is scored again with stated_class = its own row unless it matched it), the score the maximum over the tiles, the map the tiles' maps resized to their windows and averaged where they overlap",
        });
    }
    preprocess
}

/// The backbone's provenance: [`crate::backbone::BackboneInfo`] plus a one-line summary.
fn backbone_json(info: &crate::backbone::BackboneInfo) -> Result<String> {
    let mut v = serde_json::to_value(info).map_err(|e| Error::Other(e.to_string()))?;
    let summary = match (&info.weights_sha256, info.random_init_seed) {
        (Some(h), _) => format!("{} weights, sha256 {h}", info.arch),
        (None, Some(seed)) => format!("{} random init, seed {seed}", info.arch),
        (None, None) => format!("{} (weights not recorded)", info.arch),
    };
    v["provenance"] = summary.into();
    Ok(v.to_string())
}
