//! The folded ResNet as ONNX nodes, the same walk as `backbone::topology::run`: stem Conv
//! (BatchNorm folded: weight + bias) - Relu - MaxPool 3x3/2 pad 1, then residual blocks
//! (Conv - Relu - ... - Conv, shortcut Conv or identity, Add, Relu), stopping after the last
//! descriptor layer. Input `[B,3,S,S]`; output: one `[B,C_i,S/s_i,S/s_i]` value per descriptor
//! layer, in the descriptor's order.

use super::graph::Graph;
use super::quant;
use super::source::{ConvSrc, ModelSource};
use crate::backbone::Int8Calibration;
use crate::{Error, Result};

fn conv(g: &mut Graph, c: &ConvSrc, x: &str, int8: Option<&Int8Calibration>) -> Result<String> {
    let b = g.init_f32(&format!("{}.bias", c.name), &c.bias.dims, &c.bias.data);
    let Some(cal) = int8 else {
        let w = g.init_f32(
            &format!("{}.weight", c.name),
            &c.weight.dims,
            &c.weight.data,
        );
        return Ok(g.conv(x, &w, Some(&b), c.stride, c.pad));
    };
    let (lo, hi) = cal.range(&c.name).ok_or_else(|| {
        Error::Other(format!(
            "the model's int8 calibration has no range for {} (calibrated for another backbone?)",
            c.name
        ))
    })?;
    let xq = quant::fake_quantize_activation(g, x, lo, hi);
    let w = quant::dequantized_weight(g, &c.name, &c.weight);
    Ok(g.conv(&xq, &w, Some(&b), c.stride, c.pad))
}

/// Adds the backbone reading `image` (int8 convolutions with `int8`); returns the descriptor
/// layers' outputs.
pub fn backbone(
    g: &mut Graph,
    src: &ModelSource,
    image: &str,
    int8: Option<&Int8Calibration>,
) -> Result<Vec<String>> {
    let stem = conv(g, &src.stem, image, int8)?;
    let stem = g.relu(&stem);
    let mut x = g.max_pool(&stem, 3, 2, 1);
    let mut outs: Vec<Option<String>> = vec![None; src.layers.len()];
    for (li, blocks) in src.stages.iter().enumerate() {
        for block in blocks {
            let shortcut = match &block.downsample {
                Some(d) => conv(g, d, &x, int8)?,
                None => x.clone(),
            };
            let mut h = x.clone();
            for (i, c) in block.convs.iter().enumerate() {
                h = conv(g, c, &h, int8)?;
                if i + 1 < block.convs.len() {
                    h = g.relu(&h);
                }
            }
            let sum = g.add(&h, &shortcut);
            x = g.relu(&sum);
        }
        for (slot, l) in outs.iter_mut().zip(&src.layers) {
            if l.index() == li {
                *slot = Some(x.clone());
            }
        }
    }
    outs.into_iter()
        .zip(&src.layers)
        .map(|(o, l)| {
            o.ok_or_else(|| Error::Other(format!("the exported backbone does not reach {l}")))
        })
        .collect()
}
