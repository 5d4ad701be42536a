//! [`ResNet`]: the folded inference network (every BatchNorm folded into its convolution as a
//! weight scale plus a bias), holding the stages up to its last layer only. Input: normalised
//! images `[B,3,H,W]`; output: the requested stage outputs (after the last block's ReLU).

use super::topology::{self, check_tensors, Topology};
use super::{BackboneInfo, Layer};
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;

/// A frozen torchvision ResNet with BatchNorm folded into its convolutions.
pub struct ResNet {
    info: BackboneInfo,
    topo: Topology,
    last_layer: Layer,
    /// conv module path -> (folded weight `[co,ci,k,k]`, bias `[co]`).
    folded: HashMap<String, (Tensor, Tensor)>,
    device: Device,
}

impl ResNet {
    pub(crate) fn from_parts(
        info: BackboneInfo,
        topo: Topology,
        last_layer: Layer,
        folded: HashMap<String, (Tensor, Tensor)>,
        device: Device,
    ) -> Self {
        ResNet {
            info,
            topo,
            last_layer,
            folded,
            device,
        }
    }

    /// What the backbone is and how it was prepared.
    pub fn info(&self) -> &BackboneInfo {
        &self.info
    }

    /// The last stage this network holds.
    pub fn last_layer(&self) -> Layer {
        self.last_layer
    }

    /// Output channels of a stage (512 for wide_resnet50_2's layer2, 1024 for layer3).
    pub fn channels(&self, layer: Layer) -> usize {
        self.topo.channels[layer.index()]
    }

    /// The device holding the parameters.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `x`: `[B,3,H,W]` normalised images. Returns the requested stage outputs in the order
    /// asked; the pass stops after the last one.
    pub fn forward(&self, x: &Tensor, layers: &[Layer]) -> Result<Vec<Tensor>> {
        if layers.is_empty() {
            return Err(Error::config("layers", "[]", "ask for at least one layer"));
        }
        if let Some(l) = layers.iter().find(|l| **l > self.last_layer) {
            return Err(Error::config(
                "layer",
                l,
                format!("this backbone was built up to {} only", self.last_layer),
            ));
        }
        let x = x.to_device(&self.device)?;
        topology::run(&self.topo, &x, layers, |cb, h| self.conv_bn(cb, h))
    }

    /// One folded convolution (BatchNorm folded in) applied to `h`.
    pub(crate) fn conv_bn(&self, cb: &topology::ConvBn, h: &Tensor) -> Result<Tensor> {
        let (w, b) = self
            .folded
            .get(&cb.conv)
            .ok_or_else(|| Error::Other(format!("folded backbone lacks {}", cb.conv)))?;
        let y = h.conv2d(w, cb.padding, cb.stride, 1, 1)?;
        Ok(y.broadcast_add(&b.reshape((1, cb.c_out, 1, 1))?)?)
    }

    /// The network's layout.
    pub(crate) fn topology(&self) -> &Topology {
        &self.topo
    }

    /// The folded inference parameters under stable names (`<conv path>.weight` / `.bias`,
    /// e.g. `layer1.0.conv1.weight`), in forward order.
    pub fn folded_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for cb in self.topo.conv_bns(self.last_layer) {
            if let Some((w, b)) = self.folded.get(&cb.conv) {
                out.push((format!("{}.weight", cb.conv), w.clone()));
                out.push((format!("{}.bias", cb.conv), b.clone()));
            }
        }
        out
    }

    /// Rebuilds the network from [`folded_tensors`](Self::folded_tensors) output. Every
    /// tensor is checked for presence and shape; problems are listed in one error.
    pub fn from_folded(
        info: BackboneInfo,
        last_layer: Layer,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<ResNet> {
        let topo = Topology::new(info.arch, info.width_per_group)?;
        let expected = topo.expected_folded(last_layer);
        let shapes = super::weights::shapes(tensors);
        if let Some(msg) = check_tensors(&expected, &shapes, |_| false) {
            return Err(Error::Other(format!(
                "folded {} backbone (up to {last_layer}) does not match: {msg}",
                info.arch
            )));
        }
        let mut folded = HashMap::new();
        for cb in topo.conv_bns(last_layer) {
            let get = |suffix: &str| -> Result<Tensor> {
                let name = format!("{}.{suffix}", cb.conv);
                let t = tensors
                    .get(&name)
                    .ok_or_else(|| Error::Other(format!("folded backbone lacks {name}")))?;
                Ok(t.to_dtype(candle_core::DType::F32)?.to_device(device)?)
            };
            folded.insert(cb.conv.clone(), (get("weight")?, get("bias")?));
        }
        Ok(ResNet::from_parts(
            info,
            topo,
            last_layer,
            folded,
            device.clone(),
        ))
    }
}
