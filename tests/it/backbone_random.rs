//! Seeded random initialisation (no weight file) and the offline BN recalibration aid.

use candle_core::{DType, Device, Tensor};
use cras::backbone::{Arch, BackboneBuilder, BuildOptions, Layer, WeightSource};

fn small_random(seed: u64) -> BackboneBuilder {
    let opts = BuildOptions {
        width_per_group: Some(8),
        through: Layer::L3,
    };
    BackboneBuilder::with_options(Arch::Resnet50, &WeightSource::Random { seed }, opts).unwrap()
}

fn std_of(t: &Tensor) -> f32 {
    let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
    let n = v.len() as f64;
    let mean = v.iter().map(|x| *x as f64).sum::<f64>() / n;
    (v.iter().map(|x| (*x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt() as f32
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn random_init_is_seeded_and_follows_torchvision_scheme() {
    let a = small_random(7);
    let b = small_random(7);
    let c = small_random(8);
    assert_eq!(a.info().random_init_seed, Some(7));
    assert_eq!(a.info().weights_file, None);
    let name = "layer2.0.conv2.weight";
    let wa = &a.state_dict()[name];
    assert_eq!(max_abs_diff(wa, &b.state_dict()[name]), 0.0);
    assert!(max_abs_diff(wa, &c.state_dict()[name]) > 0.0);
    // kaiming_normal_(fan_out, relu): std = sqrt(2 / (c_out * 3 * 3)), here c_out = 16.
    let expected = (2.0f32 / (16.0 * 9.0)).sqrt();
    let s = std_of(wa);
    assert!((s / expected - 1.0).abs() < 0.05, "std {s} vs {expected}");
    let bn_var: Vec<f32> = a.state_dict()["layer2.0.bn2.running_var"]
        .to_vec1()
        .unwrap();
    assert!(bn_var.iter().all(|v| *v == 1.0));
}

#[test]
fn recalibration_gives_sane_layer3_scale() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let images: Vec<Tensor> = (0..2)
        .map(|_| {
            let v: Vec<f32> = (0..2 * 3 * 64 * 64)
                .map(|_| rng.gen_range(-2.0..2.0))
                .collect();
            Tensor::from_vec(v, (2, 3, 64, 64), &Device::Cpu).unwrap()
        })
        .collect();
    let probe = images[0].clone();
    let raw = small_random(3).build(Layer::L3, &Device::Cpu).unwrap();
    let raw_std = std_of(&raw.forward(&probe, &[Layer::L3]).unwrap()[0]);

    let mut b = small_random(3);
    b.recalibrate_bn(&images).unwrap();
    assert!(b.info().recalibrated);
    let net = b.build(Layer::L3, &Device::Cpu).unwrap();
    let out = &net.forward(&probe, &[Layer::L3]).unwrap()[0];
    assert_eq!(out.dims(), &[2, 1024, 4, 4]);
    let cal_std = std_of(out);
    assert!(
        (0.1..=10.0).contains(&cal_std),
        "recalibrated layer3 std {cal_std}"
    );
    // Without recalibration the residual sums grow block after block (about 7x here, at a
    // reduced width; more at full width).
    assert!(
        raw_std > 5.0 * cal_std,
        "uncalibrated layer3 std {raw_std} should blow up"
    );
    eprintln!("layer3 std: uncalibrated {raw_std}, recalibrated {cal_std}");
    assert!(small_random(1).recalibrate_bn(&[]).is_err());
}

#[test]
fn reference_perturbation_moves_running_stats_ten_percent() {
    let mut b = small_random(5);
    b.perturb_bn_reference(64).unwrap();
    // Stem BN: conv1 of an all-ones image; every output channel is constant inside the image,
    // so its batch mean is a weighted kernel sum and its variance comes from the borders only.
    let mean: Vec<f32> = b.state_dict()["bn1.running_mean"].to_vec1().unwrap();
    let var: Vec<f32> = b.state_dict()["bn1.running_var"].to_vec1().unwrap();
    let w = &b.state_dict()["conv1.weight"];
    let ones = Tensor::ones((1, 3, 64, 64), DType::F32, &Device::Cpu).unwrap();
    let y = ones.conv2d(w, 3, 2, 1, 1).unwrap(); // [1,64,32,32]
    let y0: Vec<f32> = y
        .get(0)
        .unwrap()
        .get(0)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let n = y0.len() as f64;
    let m = y0.iter().map(|x| *x as f64).sum::<f64>() / n;
    let v = y0.iter().map(|x| (*x as f64 - m).powi(2)).sum::<f64>() / (n - 1.0);
    assert!(
        (mean[0] as f64 - 0.1 * m).abs() < 1e-5,
        "{} vs {}",
        mean[0],
        0.1 * m
    );
    assert!(
        (var[0] as f64 - (0.9 + 0.1 * v)).abs() < 1e-5,
        "{} vs {}",
        var[0],
        0.9 + 0.1 * v
    );
    assert_eq!(b.info().input_size, 64);
}
