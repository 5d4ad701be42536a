//! The layout of a torchvision ResNet: every convolution with its BatchNorm, in forward order,
//! with torchvision's parameter names and shapes, plus one generic forward pass that is shared
//! by the folded inference network and the train-mode passes that move BatchNorm statistics.
//!
//! Input of [`run`]: images `[B,3,H,W]`; output: the requested stage outputs in the order asked.

use super::{Arch, Layer};
use crate::{Error, Result};
use candle_core::Tensor;

/// One convolution (no bias in torchvision) followed by its BatchNorm.
#[derive(Clone, Debug)]
pub(crate) struct ConvBn {
    /// Module path of the convolution (`layer1.0.conv2`, `layer1.0.downsample.0`, `conv1`).
    pub conv: String,
    /// Module path of the BatchNorm (`layer1.0.bn2`, `layer1.0.downsample.1`, `bn1`).
    pub bn: String,
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl ConvBn {
    fn new(
        conv: String,
        bn: String,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
    ) -> Self {
        ConvBn {
            conv,
            bn,
            c_in,
            c_out,
            kernel,
            stride,
            padding: kernel / 2,
        }
    }

    /// Shape of the convolution weight `[c_out, c_in, k, k]`.
    pub fn weight_shape(&self) -> Vec<usize> {
        vec![self.c_out, self.c_in, self.kernel, self.kernel]
    }
}

/// A residual block: convs with ReLU between them, then `relu(out + shortcut)`.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub convs: Vec<ConvBn>,
    pub downsample: Option<ConvBn>,
}

/// The whole network up to layer4 (the classifier is never used).
#[derive(Clone, Debug)]
pub(crate) struct Topology {
    pub stem: ConvBn,
    pub layers: Vec<Vec<Block>>,
    /// Output channels of each stage.
    pub channels: [usize; 4],
}

impl Topology {
    /// torchvision's layout of `arch`, with an optional non-standard width per group (Bottleneck
    /// networks only: reduced-width test networks).
    pub fn new(arch: Arch, width_per_group: Option<usize>) -> Result<Self> {
        let (bottleneck, counts, default_wpg): (bool, [usize; 4], usize) = match arch {
            Arch::Resnet18 => (false, [2, 2, 2, 2], 64),
            Arch::Resnet50 => (true, [3, 4, 6, 3], 64),
            Arch::WideResnet50_2 => (true, [3, 4, 6, 3], 128),
            Arch::WideResnet101_2 => (true, [3, 4, 23, 3], 128),
        };
        let wpg = width_per_group.unwrap_or(default_wpg);
        if wpg == 0 || (!bottleneck && wpg != 64) {
            return Err(Error::config(
                "width_per_group",
                wpg,
                format!(
                    "{arch} supports {} only",
                    if bottleneck { "a positive width" } else { "64" }
                ),
            ));
        }
        let expansion = if bottleneck { 4 } else { 1 };
        let stem = ConvBn::new("conv1".into(), "bn1".into(), 3, 64, 7, 2);
        let mut in_ch = 64;
        let mut layers = Vec::with_capacity(4);
        let mut channels = [0; 4];
        for (li, &count) in counts.iter().enumerate() {
            let planes = 64 << li;
            let stride = if li == 0 { 1 } else { 2 };
            let out_ch = planes * expansion;
            let mut blocks = Vec::with_capacity(count);
            for bi in 0..count {
                let p = format!("layer{}.{bi}", li + 1);
                let s = if bi == 0 { stride } else { 1 };
                let cb = |i: usize, c_in, c_out, k, st| {
                    ConvBn::new(
                        format!("{p}.conv{i}"),
                        format!("{p}.bn{i}"),
                        c_in,
                        c_out,
                        k,
                        st,
                    )
                };
                let convs = if bottleneck {
                    let width = planes * wpg / 64;
                    vec![
                        cb(1, in_ch, width, 1, 1),
                        cb(2, width, width, 3, s),
                        cb(3, width, out_ch, 1, 1),
                    ]
                } else {
                    vec![cb(1, in_ch, planes, 3, s), cb(2, planes, planes, 3, 1)]
                };
                let downsample = (s != 1 || in_ch != out_ch).then(|| {
                    ConvBn::new(
                        format!("{p}.downsample.0"),
                        format!("{p}.downsample.1"),
                        in_ch,
                        out_ch,
                        1,
                        s,
                    )
                });
                blocks.push(Block { convs, downsample });
                in_ch = out_ch;
            }
            channels[li] = out_ch;
            layers.push(blocks);
        }
        Ok(Topology {
            stem,
            layers,
            channels,
        })
    }

    /// Every conv+BN pair up to and including stage `through`, in forward order.
    pub fn conv_bns(&self, through: Layer) -> Vec<&ConvBn> {
        let mut out = vec![&self.stem];
        for blocks in &self.layers[..=through.index()] {
            for b in blocks {
                out.extend(b.convs.iter());
                out.extend(b.downsample.iter());
            }
        }
        out
    }

    /// The unfolded state dict this network expects (names and shapes) up to stage `through`;
    /// `num_batches_tracked` and `fc.*` are not listed (they are never used).
    pub fn expected_state(&self, through: Layer) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for cb in self.conv_bns(through) {
            out.push((format!("{}.weight", cb.conv), cb.weight_shape()));
            for p in ["weight", "bias", "running_mean", "running_var"] {
                out.push((format!("{}.{p}", cb.bn), vec![cb.c_out]));
            }
        }
        out
    }

    /// The folded parameters (conv weight with BN folded in, plus a bias) up to `through`.
    pub fn expected_folded(&self, through: Layer) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for cb in self.conv_bns(through) {
            out.push((format!("{}.weight", cb.conv), cb.weight_shape()));
            out.push((format!("{}.bias", cb.conv), vec![cb.c_out]));
        }
        out
    }
}

/// Runs the network on `x` up to the last of `layers`, applying `conv_bn` for each conv+BN pair
/// (folded, or train-mode with batch statistics). Returns the stage outputs in the order asked.
pub(crate) fn run<F>(
    topo: &Topology,
    x: &Tensor,
    layers: &[Layer],
    mut conv_bn: F,
) -> Result<Vec<Tensor>>
where
    F: FnMut(&ConvBn, &Tensor) -> Result<Tensor>,
{
    let Some(&stop) = layers.iter().max() else {
        return Ok(Vec::new());
    };
    let (_, c, _, _) = x.dims4()?;
    if c != 3 {
        return Err(Error::config(
            "backbone input channels",
            c,
            "expected [B,3,H,W] RGB images",
        ));
    }
    let x = conv_bn(&topo.stem, x)?.relu()?;
    // Max pool 3x3 / stride 2 / padding 1. The input is post-ReLU (>= 0), so zero padding
    // gives the same maxima as torch's -inf padding.
    let mut x = x
        .pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .max_pool2d_with_stride(3, 2)?;
    let mut outs: Vec<Option<Tensor>> = vec![None; layers.len()];
    for layer in Layer::ALL.into_iter().take_while(|l| *l <= stop) {
        for block in &topo.layers[layer.index()] {
            let shortcut = match &block.downsample {
                Some(d) => conv_bn(d, &x)?,
                None => x.clone(),
            };
            let mut h = x;
            for (i, cb) in block.convs.iter().enumerate() {
                h = conv_bn(cb, &h)?;
                if i + 1 < block.convs.len() {
                    h = h.relu()?;
                }
            }
            x = (h + shortcut)?.relu()?;
        }
        for (slot, l) in outs.iter_mut().zip(layers) {
            if *l == layer {
                *slot = Some(x.clone());
            }
        }
    }
    Ok(outs.into_iter().flatten().collect())
}

/// Lists the differences between `expected` names/shapes and what `have` provides, as one
/// message (empty when everything matches). Names for which `ignore` is true are skipped.
pub(crate) fn check_tensors(
    expected: &[(String, Vec<usize>)],
    have: &std::collections::HashMap<String, Vec<usize>>,
    ignore: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    for (name, shape) in expected {
        match have.get(name) {
            None => missing.push(name.clone()),
            Some(s) if s != shape => {
                misshaped.push(format!("{name} (expected {shape:?}, found {s:?})"))
            }
            Some(_) => {}
        }
    }
    let known: std::collections::HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut unexpected: Vec<String> = have
        .keys()
        .filter(|k| !known.contains(k.as_str()) && !ignore(k))
        .cloned()
        .collect();
    unexpected.sort();
    if missing.is_empty() && misshaped.is_empty() && unexpected.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    let list = |v: &[String]| {
        let shown: Vec<&str> = v.iter().take(12).map(String::as_str).collect();
        let more = if v.len() > 12 {
            format!(", ... ({} more)", v.len() - 12)
        } else {
            String::new()
        };
        format!("{}{more}", shown.join(", "))
    };
    if !missing.is_empty() {
        parts.push(format!("{} missing: {}", missing.len(), list(&missing)));
    }
    if !misshaped.is_empty() {
        parts.push(format!(
            "{} mis-shaped: {}",
            misshaped.len(),
            list(&misshaped)
        ));
    }
    if !unexpected.is_empty() {
        parts.push(format!(
            "{} unexpected: {}",
            unexpected.len(),
            list(&unexpected)
        ));
    }
    Some(parts.join("; "))
}
