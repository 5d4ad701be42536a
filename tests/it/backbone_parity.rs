//! Parity of the backbone and the patch descriptor with torchvision / the reference's own ops,
//! on fixtures written by `dev/gen_backbone_fixtures.py` (reduced-width ResNet-50 layout, state
//! dict truncated after layer2, in the legacy .pth, zip .pth and safetensors formats).

use candle_core::{Device, Tensor};
use cras::backbone::{
    read_state_dict, Arch, BackboneBuilder, BnStats, BuildOptions, Layer, ResNet, WeightSource,
};
use cras::features::{DescriptorConfig, PatchDescriptor};
use std::collections::HashMap;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backbone")
        .join(name)
}

fn meta() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("meta.json")).expect("meta.json");
    serde_json::from_str(&text).expect("meta.json is JSON")
}

fn load_bin(name: &str) -> Tensor {
    let shape: Vec<usize> =
        serde_json::from_value(meta()[name].clone()).expect("shape in meta.json");
    let bytes = std::fs::read(fixture(&format!("{name}.bin"))).expect("fixture .bin");
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).expect("fixture tensor")
}

/// max |a-b| / max |b|.
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let diff = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let scale = b
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    diff / scale.max(1e-12)
}

const FORMATS: [&str; 3] = ["net.legacy.pth", "net.zip.pth", "net.safetensors"];

fn test_net(file: &str, stats: BnStats) -> ResNet {
    let opts = BuildOptions {
        width_per_group: Some(meta()["width_per_group"].as_u64().unwrap() as usize),
        through: Layer::L2,
    };
    let mut b =
        BackboneBuilder::with_options(Arch::Resnet50, &WeightSource::File(fixture(file)), opts)
            .expect("fixture state dict matches the reduced-width layout");
    b.apply_bn_stats(stats, meta()["perturb_size"].as_u64().unwrap() as usize)
        .unwrap();
    b.build(Layer::L2, &Device::Cpu).unwrap()
}

#[test]
fn three_file_formats_read_identically() {
    let dicts: Vec<HashMap<String, Tensor>> = FORMATS
        .iter()
        .map(|f| read_state_dict(&fixture(f)).unwrap())
        .collect();
    assert!(dicts[0].contains_key("layer2.0.downsample.0.weight"));
    for d in &dicts[1..] {
        assert_eq!(d.len(), dicts[0].len());
        for (k, v) in &dicts[0] {
            let w = d.get(k).unwrap_or_else(|| panic!("{k} missing"));
            assert_eq!(v.dims(), w.dims(), "{k}");
            let diff = (v - w)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(diff, 0.0, "{k}");
        }
    }
}

#[test]
fn reference_perturbed_layer2_matches_torchvision_for_every_format() {
    let images = load_bin("images");
    let expected = load_bin("reference_layer2");
    for f in FORMATS {
        let net = test_net(f, BnStats::Reference);
        assert_eq!(net.info().bn_stats, BnStats::Reference);
        let out = net.forward(&images, &[Layer::L2]).unwrap();
        let e = rel_err(&out[0], &expected);
        assert!(e < 1e-4, "{f}: relative error {e}");
    }
}

#[test]
fn clean_statistics_match_torchvision_and_differ_from_reference() {
    let images = load_bin("images");
    let net = test_net("net.safetensors", BnStats::Clean);
    assert_eq!(net.info().bn_stats, BnStats::Clean);
    let out = net.forward(&images, &[Layer::L1, Layer::L2]).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].dims(), &[2, 256, 8, 8]);
    let e = rel_err(&out[1], &load_bin("clean_layer2"));
    assert!(e < 1e-4, "relative error {e}");
    // The perturbation changes the features: the test would notice a no-op perturbation.
    assert!(rel_err(&out[1], &load_bin("reference_layer2")) > 1e-2);
}

#[test]
fn folded_tensors_round_trip_and_mismatch_is_listed() {
    let images = load_bin("images");
    let net = test_net("net.safetensors", BnStats::Reference);
    let folded: HashMap<String, Tensor> = net.folded_tensors().into_iter().collect();
    assert!(folded.contains_key("layer2.0.downsample.0.bias"));
    let again = ResNet::from_folded(net.info().clone(), Layer::L2, &folded, &Device::Cpu).unwrap();
    let a = net.forward(&images, &[Layer::L2]).unwrap();
    let b = again.forward(&images, &[Layer::L2]).unwrap();
    assert_eq!(rel_err(&a[0], &b[0]), 0.0);

    let mut broken = folded.clone();
    broken.remove("conv1.bias");
    broken.insert(
        "layer1.0.conv1.weight".into(),
        Tensor::zeros((1, 1, 1, 1), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    broken.insert(
        "extra.weight".into(),
        Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    let msg = ResNet::from_folded(net.info().clone(), Layer::L2, &broken, &Device::Cpu)
        .err()
        .expect("broken tensors are refused")
        .to_string();
    for needle in [
        "missing: conv1.bias",
        "mis-shaped: layer1.0.conv1.weight",
        "unexpected: extra.weight",
    ] {
        assert!(msg.contains(needle), "{needle} not in: {msg}");
    }
    // Asking for a layer the folded network does not hold is refused.
    assert!(net.forward(&images, &[Layer::L3]).is_err());
}

#[test]
fn wrong_architecture_is_one_error_naming_the_file() {
    let path = fixture("net.zip.pth");
    let msg = BackboneBuilder::new(Arch::WideResnet50_2, &WeightSource::File(path.clone()))
        .err()
        .expect("a reduced-width, truncated file is not wide_resnet50_2")
        .to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("missing: layer3.0.conv1.weight"), "{msg}");
    assert!(msg.contains("mis-shaped: layer1.0.conv1.weight"), "{msg}");
    assert!(!msg.contains("num_batches_tracked"), "{msg}");
    // A full-depth request on the truncated file lists layer3/layer4 as missing.
    let opts = BuildOptions {
        width_per_group: Some(4),
        through: Layer::L3,
    };
    let msg = BackboneBuilder::with_options(Arch::Resnet50, &WeightSource::File(path), opts)
        .err()
        .expect("layer3 is absent")
        .to_string();
    // layer3: 6 blocks x (3 convs + 3 BNs x 4) + downsample (1 + 4) = 95 entries.
    assert!(msg.contains("95 missing: layer3.0.conv1.weight"), "{msg}");
}

fn descriptor_case(name: &str) {
    let dims = meta()[format!("desc_{name}_dims")].as_u64().unwrap() as usize;
    let l2 = load_bin(&format!("desc_{name}_l2"));
    let l3 = load_bin(&format!("desc_{name}_l3"));
    let cfg = DescriptorConfig {
        dims,
        ..DescriptorConfig::default()
    };
    let desc = PatchDescriptor::new(&cfg, &[l2.dim(1).unwrap(), l3.dim(1).unwrap()]).unwrap();
    let out = desc.forward(&[l2, l3]).unwrap();
    let e = rel_err(&out, &load_bin(&format!("desc_{name}_out")));
    assert!(e < 1e-4, "{name}: relative error {e}");
}

#[test]
fn descriptor_matches_reference_ops_with_uneven_bins() {
    descriptor_case("small");
}

#[test]
fn descriptor_matches_reference_ops_at_real_width() {
    descriptor_case("full");
}
