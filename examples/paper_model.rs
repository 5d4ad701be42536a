//! Dev aid: writes a paper-configuration model file with random weights (wide_resnet50_2,
//! layer2+layer3, 288 px, 1536 dims, 15 classes by default), as `cras bench` builds in memory,
//! so that `cras export` and the ONNX timings can run at the real size without training.
//!
//! Usage: `cargo run --release --example paper_model -- OUT.safetensors [SIZE DIMS CLASSES]`

use candle_core::{Device, Tensor};
use cras::backbone::{Arch, BackboneBuilder, Layer, WeightSource};
use cras::features::{DescriptorConfig, FeatureExtractor};
use cras::infer::Predictor;
use cras::model::{Adaptor, CenterBank, Discriminator};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args
        .first()
        .ok_or_else(|| anyhow::anyhow!("usage: paper_model OUT [SIZE DIMS CLASSES]"))?;
    let num = |i: usize, d: usize| args.get(i).map_or(Ok(d), |v| v.parse::<usize>());
    let (s, dims, classes) = (num(1, 288)?, num(2, 1536)?, num(3, 15)?);
    let dev = Device::Cpu;
    let desc = DescriptorConfig {
        dims,
        ..DescriptorConfig::default()
    };
    let backbone = BackboneBuilder::new(Arch::WideResnet50_2, &WeightSource::Random { seed: 0 })?
        .build(Layer::L3, &dev)?;
    let extractor = FeatureExtractor::new(backbone, desc.clone())?;
    let grid = extractor.grid_side(s);
    let mut rng = ChaCha12Rng::seed_from_u64(0);
    let adaptor = Adaptor::new(&mut rng, dims, &dev)?;
    let disc = Discriminator::new(&mut rng, dims, &dev)?;
    let bank = CenterBank::new(Tensor::randn(
        0f32,
        1.0,
        (classes, grid * grid, dims),
        &dev,
    )?)?;
    let classes: Vec<String> = (0..classes).map(|k| format!("class{k}")).collect();
    let pre = cras::data::Preprocess {
        resize: s as u32,
        crop: s as u32,
        ..cras::data::Preprocess::reference()
    };
    let mut meta = cras::model::ModelMeta::describe(
        &classes,
        &extractor,
        &pre,
        cras::model::Ablation::default(),
        serde_json::json!({}),
    );
    meta.tool = "examples/paper_model".into();
    let p = Predictor::from_parts(meta, extractor, adaptor, disc, bank, &dev);
    p.save(std::path::Path::new(out))?;
    let classes = classes.len();
    println!("wrote {out} ({s} px, {dims} dims, {classes} classes)");
    Ok(())
}
