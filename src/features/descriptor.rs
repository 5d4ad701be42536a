//! The patch descriptor: a fixed linear map from backbone stage outputs to one vector per
//! position of the first stage's grid, equal to the reference's patchify -> align -> pool chain.
//!
//! Reference semantics (per layer `i` with `C_i` channels): every position's 3x3 neighbourhood
//! (zero padding 1, stride 1) is flattened in (channel, ky, kx) order to `L_i = 9 C_i` values;
//! for layers after the first, those vectors are bilinearly upsampled (align_corners=False) to
//! the first layer's grid; each vector is adaptive-average-pooled to `dims` (bin `o` covers
//! `[floor(o L/N), ceil((o+1) L/N))`); the layers' results are concatenated (layer-major) and
//! pooled again to `dims`.
//!
//! Computation: pooling along the vector commutes with the per-plane bilinear upsampling, so
//! each layer is pooled at its native grid first (`[B,dims,h,w]`) and only the pooled map is
//! upsampled (two small interpolation matrices): the 9216-wide layer3 vectors of the 36x36 grid
//! are never materialised. All ops are plain candle ops (pad, narrow, reshape, index_select,
//! matmul), so the map runs on CPU and CUDA.
//!
//! Input of [`PatchDescriptor::forward`]: stage outputs `[B,C_i,H_i,W_i]`; output
//! `[B, H_0 W_0, dims]`.

use crate::backbone::{Layer, ResNet};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Which stages are described, the neighbourhood size and the descriptor width.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DescriptorConfig {
    /// Backbone stages; the first one sets the output grid. Default `[layer2, layer3]`.
    pub layers: Vec<Layer>,
    /// Neighbourhood side (odd). Default 3.
    pub patch_size: usize,
    /// Descriptor width. Default 1536.
    pub dims: usize,
}

impl Default for DescriptorConfig {
    fn default() -> Self {
        DescriptorConfig {
            layers: vec![Layer::L2, Layer::L3],
            patch_size: 3,
            dims: 1536,
        }
    }
}

/// torch's `adaptive_avg_pool1d` from `len_in` to `len_out` along the channel axis.
#[derive(Clone, Debug)]
enum ChannelPool {
    /// `len_in = k * len_out`: bins are consecutive groups of `k`.
    Uniform { len_out: usize, k: usize },
    /// General bins as `taps` rounds of (index per output, weight per output); a round's
    /// weight is 0 where the bin is shorter than the round number.
    Taps { taps: Vec<(Vec<u32>, Vec<f32>)> },
}

impl ChannelPool {
    fn new(len_in: usize, len_out: usize) -> Self {
        if len_in.is_multiple_of(len_out) {
            return ChannelPool::Uniform {
                len_out,
                k: len_in / len_out,
            };
        }
        let bins: Vec<(usize, usize)> = (0..len_out)
            .map(|o| (o * len_in / len_out, ((o + 1) * len_in).div_ceil(len_out)))
            .collect();
        let rounds = bins.iter().map(|(s, e)| e - s).max().unwrap_or(1);
        let taps = (0..rounds)
            .map(|t| {
                bins.iter()
                    .map(|&(s, e)| {
                        let inside = s + t < e;
                        let idx = if inside { s + t } else { e - 1 };
                        (idx as u32, if inside { 1.0 / (e - s) as f32 } else { 0.0 })
                    })
                    .unzip()
            })
            .collect();
        ChannelPool::Taps { taps }
    }

    /// `x`: `[B,L,H,W]` -> `[B,N,H,W]`.
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = x.dims4()?;
        match self {
            ChannelPool::Uniform { k: 1, .. } => Ok(x.clone()),
            ChannelPool::Uniform { len_out, k } => {
                Ok(x.reshape((b, *len_out, *k, h, w))?.mean(2)?)
            }
            ChannelPool::Taps { taps } => {
                let mut acc: Option<Tensor> = None;
                for (idx, weight) in taps {
                    let n = idx.len();
                    let idx = Tensor::from_slice(idx, n, x.device())?;
                    let weight = Tensor::from_slice(weight, (1, n, 1, 1), x.device())?
                        .to_dtype(x.dtype())?;
                    let term = x.index_select(&idx, 1)?.broadcast_mul(&weight)?;
                    acc = Some(match acc {
                        Some(a) => (a + term)?,
                        None => term,
                    });
                }
                acc.ok_or_else(|| Error::Other("empty pooling".into()))
            }
        }
    }
}

/// Row-major `[n_out, n_in]` matrix of torch's bilinear resize (align_corners=False) along one
/// axis: source coordinate `(o + 0.5) n_in / n_out - 0.5`, clamped at 0.
fn bilinear_matrix(n_out: usize, n_in: usize) -> Vec<f32> {
    let mut m = vec![0f32; n_out * n_in];
    let scale = n_in as f64 / n_out as f64;
    for o in 0..n_out {
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        let lambda = (src - i0 as f64) as f32;
        m[o * n_in + i0] += 1.0 - lambda;
        m[o * n_in + i1] += lambda;
    }
    m
}

/// Bilinear resize (align_corners=False) of `[B,C,h,w]` to `[B,C,out_h,out_w]`.
fn resize_bilinear(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if (h, w) == (out_h, out_w) {
        return Ok(x.clone());
    }
    let dev = x.device();
    let aw_t = Tensor::from_vec(bilinear_matrix(out_w, w), (out_w, w), dev)?
        .t()?
        .to_dtype(x.dtype())?;
    let ah_t = Tensor::from_vec(bilinear_matrix(out_h, h), (out_h, h), dev)?
        .t()?
        .to_dtype(x.dtype())?;
    let y = x.reshape((b * c * h, w))?.matmul(&aw_t)?; // [bch, out_w]
    let y = y
        .reshape((b * c, h, out_w))?
        .transpose(1, 2)?
        .contiguous()?;
    let y = y.reshape((b * c * out_w, h))?.matmul(&ah_t)?; // [bc out_w, out_h]
    Ok(y.reshape((b * c, out_w, out_h))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, c, out_h, out_w))?)
}

/// Every position's `p x p` neighbourhood (zero padding `p/2`), flattened (channel, ky, kx):
/// `[B,C,H,W]` -> `[B, C p p, H, W]`.
fn unfold(x: &Tensor, p: usize) -> Result<Tensor> {
    if p == 1 {
        return Ok(x.clone());
    }
    let (b, c, h, w) = x.dims4()?;
    let pad = p / 2;
    let padded = x.pad_with_zeros(2, pad, pad)?.pad_with_zeros(3, pad, pad)?;
    let mut shifts = Vec::with_capacity(p * p);
    for ky in 0..p {
        let rows = padded.narrow(2, ky, h)?;
        for kx in 0..p {
            shifts.push(rows.narrow(3, kx, w)?);
        }
    }
    Ok(Tensor::stack(&shifts, 2)?.reshape((b, c * p * p, h, w))?)
}

/// The fixed patchify + align + pool map for given stage channel counts.
#[derive(Clone, Debug)]
pub struct PatchDescriptor {
    channels: Vec<usize>,
    patch_size: usize,
    dims: usize,
    layer_pools: Vec<ChannelPool>,
    final_pool: ChannelPool,
}

/// Largest neighbourhood side a descriptor takes (the reference uses 3): each stage's channels
/// are multiplied by its square before pooling, so a model file claiming a huge one must not
/// reach the arithmetic and allocations.
pub const MAX_PATCH_SIZE: usize = 31;

impl PatchDescriptor {
    /// `channels`: the channel count of each configured layer, in the configuration's order.
    pub fn new(cfg: &DescriptorConfig, channels: &[usize]) -> Result<Self> {
        if cfg.layers.is_empty() {
            return Err(Error::config(
                "descriptor layers",
                "[]",
                "need at least one layer",
            ));
        }
        if channels.len() != cfg.layers.len() {
            return Err(Error::config(
                "descriptor channels",
                format!("{channels:?}"),
                format!(
                    "need one channel count per layer ({} layers)",
                    cfg.layers.len()
                ),
            ));
        }
        if cfg.patch_size == 0
            || cfg.patch_size.is_multiple_of(2)
            || cfg.patch_size > MAX_PATCH_SIZE
        {
            return Err(Error::config(
                "patch size",
                cfg.patch_size,
                format!("must be odd (1, 3, 5, ...) and at most {MAX_PATCH_SIZE}"),
            ));
        }
        if cfg.dims == 0 {
            return Err(Error::config(
                "descriptor dims",
                cfg.dims,
                "must be positive",
            ));
        }
        let pp = cfg.patch_size * cfg.patch_size;
        Ok(PatchDescriptor {
            channels: channels.to_vec(),
            patch_size: cfg.patch_size,
            dims: cfg.dims,
            layer_pools: channels
                .iter()
                .map(|c| ChannelPool::new(c * pp, cfg.dims))
                .collect(),
            final_pool: ChannelPool::new(channels.len() * cfg.dims, cfg.dims),
        })
    }

    /// Descriptor width.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// `feats`: stage outputs `[B,C_i,H_i,W_i]` in configuration order; the first sets the grid.
    /// Returns `[B, H_0 W_0, dims]`.
    pub fn forward(&self, feats: &[Tensor]) -> Result<Tensor> {
        if feats.len() != self.channels.len() {
            return Err(Error::config(
                "descriptor inputs",
                feats.len(),
                format!("expected {} layer outputs", self.channels.len()),
            ));
        }
        let (b, _, h0, w0) = feats[0].dims4()?;
        let mut pooled = Vec::with_capacity(feats.len());
        for (i, (f, pool)) in feats.iter().zip(&self.layer_pools).enumerate() {
            let (bi, c, _, _) = f.dims4()?;
            if bi != b || c != self.channels[i] {
                return Err(Error::config(
                    "descriptor input shape",
                    format!("{:?}", f.dims()),
                    format!("layer {i} should be [{b},{},H,W]", self.channels[i]),
                ));
            }
            let p = pool.apply(&unfold(f, self.patch_size)?)?;
            pooled.push(resize_bilinear(&p, h0, w0)?);
        }
        let stacked = if pooled.len() == 1 {
            pooled.remove(0)
        } else {
            Tensor::cat(&pooled, 1)?
        };
        let g = self.final_pool.apply(&stacked)?; // [B, dims, H0, W0]
        Ok(g.permute((0, 2, 3, 1))?.reshape((b, h0 * w0, self.dims))?)
    }
}

/// Backbone + descriptor: images to patch descriptors.
pub struct FeatureExtractor {
    pub backbone: ResNet,
    pub descriptor: PatchDescriptor,
    pub cfg: DescriptorConfig,
}

impl FeatureExtractor {
    /// Checks that the backbone holds every configured layer.
    pub fn new(backbone: ResNet, cfg: DescriptorConfig) -> Result<Self> {
        if let Some(l) = cfg.layers.iter().find(|l| **l > backbone.last_layer()) {
            return Err(Error::config(
                "descriptor layer",
                l,
                format!(
                    "the backbone was built up to {} only",
                    backbone.last_layer()
                ),
            ));
        }
        let channels: Vec<usize> = cfg.layers.iter().map(|l| backbone.channels(*l)).collect();
        let descriptor = PatchDescriptor::new(&cfg, &channels)?;
        Ok(FeatureExtractor {
            backbone,
            descriptor,
            cfg,
        })
    }

    /// `images`: `[B,3,S,S]` normalised (S a multiple of 16) -> `[B, (S/8)^2, dims]` for the
    /// default layers (in general the first layer's grid).
    pub fn descriptors(&self, images: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = images.dims4()?;
        if c != 3 || h == 0 || w == 0 || !h.is_multiple_of(16) || !w.is_multiple_of(16) {
            return Err(Error::config(
                "image batch shape",
                format!("{:?}", images.dims()),
                "expected [B,3,H,W] with H and W positive multiples of 16",
            ));
        }
        let feats = self.backbone.forward(images, &self.cfg.layers)?;
        self.descriptor.forward(&feats)
    }

    /// Side of the descriptor grid for input side `input_size` (S/8 for the default layers).
    pub fn grid_side(&self, input_size: usize) -> usize {
        input_size
            / self
                .cfg
                .layers
                .first()
                .copied()
                .unwrap_or(Layer::L2)
                .stride()
    }

    /// The device the backbone runs on.
    pub fn device(&self) -> &Device {
        self.backbone.device()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// torch's adaptive_avg_pool1d written naively.
    fn naive_pool(v: &[f32], n: usize) -> Vec<f32> {
        let l = v.len();
        (0..n)
            .map(|o| {
                let (s, e) = (o * l / n, ((o + 1) * l).div_ceil(n));
                v[s..e].iter().sum::<f32>() / (e - s) as f32
            })
            .collect()
    }

    #[test]
    fn channel_pool_matches_adaptive_pooling_for_any_width() {
        let v: Vec<f32> = (0..45).map(|i| ((i * 37) % 11) as f32 - 3.0).collect();
        let x = Tensor::from_vec(v.clone(), (1, 45, 1, 1), &Device::Cpu).unwrap();
        for n in [1, 7, 15, 44, 45, 60, 90] {
            let got: Vec<f32> = ChannelPool::new(45, n)
                .apply(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let want = naive_pool(&v, n);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "n={n}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn bilinear_matrix_is_torch_half_pixel_resize() {
        // 2 -> 4 with align_corners=False: weights (1,0), (0.75,0.25), (0.25,0.75), (0,1).
        let m = bilinear_matrix(4, 2);
        assert_eq!(m, vec![1.0, 0.0, 0.75, 0.25, 0.25, 0.75, 0.0, 1.0]);
    }

    #[test]
    fn bad_configuration_is_refused() {
        let even = DescriptorConfig {
            patch_size: 2,
            ..DescriptorConfig::default()
        };
        assert!(PatchDescriptor::new(&even, &[4, 8]).is_err());
        assert!(PatchDescriptor::new(&DescriptorConfig::default(), &[4]).is_err());
        // A model file's huge odd patch size (found by tests/fuzz_model_file.rs) is an error,
        // not an overflow or a giant allocation.
        for patch_size in [MAX_PATCH_SIZE + 2, usize::MAX] {
            let huge = DescriptorConfig {
                patch_size,
                ..DescriptorConfig::default()
            };
            let msg = PatchDescriptor::new(&huge, &[4, 8])
                .unwrap_err()
                .to_string();
            assert!(msg.contains("at most"), "{msg}");
        }
    }
}
