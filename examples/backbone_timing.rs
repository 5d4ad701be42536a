//! Full-size timing, a dev measurement (run with `cargo run --release --example
//! backbone_timing`; `cras bench` measures the whole pipeline): wide_resnet50_2 with random
//! init at 288x288, forward to layer3, descriptor; plus a comparison of the descriptor's
//! pad+narrow implementation against an equivalent grouped conv2d with a fixed kernel.

use candle_core::{DType, Device, Tensor};
use cras::backbone::{Arch, BackboneBuilder, BnStats, Layer, WeightSource};
use cras::features::{DescriptorConfig, FeatureExtractor};
use std::time::Instant;

/// The layer pooling of the descriptor as one grouped conv (uniform bins only): output channel
/// o averages the 3x3-neighbourhood entries of its bin.
fn pooled_by_conv(x: &Tensor, dims: usize) -> Tensor {
    let (_, c, _, _) = x.dims4().unwrap();
    let len = 9 * c;
    assert_eq!(len % dims, 0);
    let k = len / dims;
    let g = gcd(c, dims);
    let (cin, cout) = (c / g, dims / g);
    let mut w = vec![0f32; dims * cin * 9];
    for o in 0..dims {
        let ol = o % cout;
        for j in ol * k..(ol + 1) * k {
            w[o * cin * 9 + j] = 1.0 / k as f32;
        }
    }
    let w = Tensor::from_vec(w, (dims, cin, 3, 3), x.device()).unwrap();
    x.conv2d(&w, 1, 1, 1, g).unwrap()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn main() {
    let t = Instant::now();
    let mut b =
        BackboneBuilder::new(Arch::WideResnet50_2, &WeightSource::Random { seed: 0 }).unwrap();
    eprintln!("random init: {:.2?}", t.elapsed());
    let t = Instant::now();
    b.apply_bn_stats(BnStats::Reference, 288).unwrap();
    eprintln!(
        "reference BN perturbation (train pass through layer4): {:.2?}",
        t.elapsed()
    );
    let net = b.build(Layer::L3, &Device::Cpu).unwrap();
    let ex = FeatureExtractor::new(net, DescriptorConfig::default()).unwrap();
    let x = Tensor::ones((1, 3, 288, 288), DType::F32, &Device::Cpu)
        .unwrap()
        .affine(0.5, 0.0)
        .unwrap();
    // The grouped conv computes the same layer pooling: check it on layer2 alone (one layer,
    // dims 1536: the final pooling is the identity).
    {
        let feats = ex.backbone.forward(&x, &[Layer::L2]).unwrap();
        let single = DescriptorConfig {
            layers: vec![Layer::L2],
            ..DescriptorConfig::default()
        };
        let d = cras::features::PatchDescriptor::new(&single, &[512]).unwrap();
        let ours = d.forward(&feats).unwrap(); // [1, 1296, 1536]
        let conv = pooled_by_conv(&feats[0], 1536)
            .flatten_from(2)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let diff: f32 = (ours - conv)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-4, "grouped conv differs by {diff}");
    }
    for run in 0..3 {
        let t = Instant::now();
        let feats = ex.backbone.forward(&x, &ex.cfg.layers).unwrap();
        let t_backbone = t.elapsed();
        let t = Instant::now();
        let d = ex.descriptor.forward(&feats).unwrap();
        let t_desc = t.elapsed();
        assert_eq!(d.dims(), &[1, 1296, 1536]);
        let t = Instant::now();
        let p2 = pooled_by_conv(&feats[0], 1536);
        let p3 = pooled_by_conv(&feats[1], 1536);
        let t_conv = t.elapsed();
        assert_eq!(p2.dims(), &[1, 1536, 36, 36]);
        assert_eq!(p3.dims(), &[1, 1536, 18, 18]);
        eprintln!(
            "run {run}: backbone to layer3 {t_backbone:.2?}; descriptor (pad+narrow+pool, incl. \
             upsample + final pool) {t_desc:.2?}; grouped-conv layer pooling alone {t_conv:.2?}"
        );
    }
}
