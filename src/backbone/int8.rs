//! Int8 calibration of the backbone: the range of every convolution's input over calibration
//! images, which an int8 graph quantizes that input with (`crate::export`, per tensor).
//!
//! Input: normalised images `[B,3,H,W]` in batches and the layers the descriptor reads.
//! Output: [`Int8Calibration`], one `[min, max]` per convolution in forward order, keyed by the
//! convolution's module path (`conv1`, `layer1.0.conv2`, `layer2.0.downsample.0`). The weights
//! need no calibration (they are quantized per output channel from their own values).
//!
//! The range is the observed min / max, unclipped: the calibration images are normal, and the
//! large activations a defect raises are the signal. A range clipped for least squared error on
//! normal images scored normal images closer to f32 but defective ones further from it (median
//! logit error 0.164 against 0.145, largest 1.05 against 0.65; docs/precision.md).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::ResNet;
use super::{topology, Layer};
use crate::{Error, Result};

/// The range of one convolution's input over the calibration images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvInputRange {
    /// The convolution's module path (`layer1.0.conv2`).
    pub conv: String,
    pub min: f32,
    pub max: f32,
}

/// What an int8 graph quantizes the backbone's activations with, and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Int8Calibration {
    /// Which images were run ("training images").
    pub images_from: String,
    /// How many.
    pub images: usize,
    /// How a range is taken from the values ("min / max").
    pub method: String,
    /// One per convolution up to the last descriptor layer, in forward order.
    pub inputs: Vec<ConvInputRange>,
}

impl Int8Calibration {
    /// The range of convolution `conv`'s input, if calibrated.
    pub fn range(&self, conv: &str) -> Option<(f32, f32)> {
        self.inputs
            .iter()
            .find(|r| r.conv == conv)
            .map(|r| (r.min, r.max))
    }
}

/// Runs `batches` (normalised images `[B,3,H,W]`) through `net` up to the last of `layers` and
/// records the range of every convolution's input.
pub fn calibrate(
    net: &ResNet,
    layers: &[Layer],
    batches: impl IntoIterator<Item = Result<Tensor>>,
    images_from: &str,
) -> Result<Int8Calibration> {
    let mut inputs: Vec<ConvInputRange> = Vec::new();
    let mut images = 0;
    for batch in batches {
        let x = batch?.to_device(net.device())?;
        images += x.dim(0)?;
        let mut at = 0;
        topology::run(net.topology(), &x, layers, |cb, h| {
            let lo = h.flatten_all()?.min(0)?.to_scalar::<f32>()?;
            let hi = h.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            match inputs.get_mut(at) {
                Some(r) => (r.min, r.max) = (r.min.min(lo), r.max.max(hi)),
                None => inputs.push(ConvInputRange {
                    conv: cb.conv.clone(),
                    min: lo,
                    max: hi,
                }),
            }
            at += 1;
            net.conv_bn(cb, h)
        })?;
    }
    if images == 0 {
        return Err(Error::Other(
            "int8 calibration needs at least one image".into(),
        ));
    }
    if let Some(r) = inputs
        .iter()
        .find(|r| !(r.min.is_finite() && r.max.is_finite()))
    {
        return Err(Error::Other(format!(
            "int8 calibration: the input of {} ranges over [{}, {}]: not finite",
            r.conv, r.min, r.max
        )));
    }
    Ok(Int8Calibration {
        images_from: images_from.into(),
        images,
        method: "min / max".into(),
        inputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backbone::{Arch, BackboneBuilder, WeightSource};
    use candle_core::Device;

    #[test]
    fn ranges_are_those_of_each_convolution_input_over_all_batches() {
        let dev = Device::Cpu;
        let net = BackboneBuilder::new(Arch::Resnet18, &WeightSource::Random { seed: 1 })
            .unwrap()
            .build(Layer::L2, &dev)
            .unwrap();
        let a = Tensor::randn(0f32, 1.0, (2, 3, 32, 32), &dev).unwrap();
        let b = (Tensor::randn(0f32, 1.0, (1, 3, 32, 32), &dev).unwrap() * 3.0).unwrap();
        let one = calibrate(&net, &[Layer::L2], [Ok(a.clone())], "a").unwrap();
        let both = calibrate(&net, &[Layer::L2], [Ok(a.clone()), Ok(b.clone())], "ab").unwrap();
        assert_eq!(both.images, 3);
        // resnet18 to layer2: the stem, 2 blocks x 2 convs, 2 blocks x 2 convs + a downsample.
        let names: Vec<&str> = both.inputs.iter().map(|r| r.conv.as_str()).collect();
        assert_eq!(names.len(), 10);
        assert_eq!(names[0], "conv1");
        assert!(names.contains(&"layer2.0.downsample.0"), "{names:?}");
        // The stem reads the images themselves.
        let all = Tensor::cat(&[&a, &b], 0).unwrap().flatten_all().unwrap();
        let (lo, hi) = (
            all.min(0).unwrap().to_scalar::<f32>().unwrap(),
            all.max(0).unwrap().to_scalar::<f32>().unwrap(),
        );
        assert_eq!(both.range("conv1"), Some((lo, hi)));
        // Every other input follows a ReLU; the union over batches holds each batch's range.
        for (r, r1) in both.inputs.iter().zip(&one.inputs).skip(1) {
            assert!(r.min >= 0.0 && r.max > 0.0, "{r:?}");
            assert!(r.min <= r1.min && r.max >= r1.max, "{r:?} vs {r1:?}");
        }
        assert!(both
            .inputs
            .iter()
            .zip(&one.inputs)
            .any(|(r, r1)| r.max > r1.max));
        let none: [Result<Tensor>; 0] = [];
        assert!(calibrate(&net, &[Layer::L2], none, "none").is_err());
    }
}
