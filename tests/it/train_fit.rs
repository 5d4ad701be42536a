//! The training loop: learning happens, the same seed gives the same model, a run resumed from
//! a checkpoint reaches exactly the model of an uninterrupted run, and a diverging run stops.

use candle_core::{Device, Tensor};
use cras::features::cache::{CachePrecision, FeatureCache};
use cras::model::{file, Adaptor, CenterBank, Discriminator};
use cras::train::pipeline::center_bank;
use cras::train::{fit, FitConfig, FitObserver, HeadState};
use rand::{rngs::StdRng, SeedableRng};
use rand_distr::{Distribution, Normal};

const P: usize = 4;
const D: usize = 8;

/// 16 images of two classes whose descriptors scatter around different per-position means.
fn data() -> (FeatureCache, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(1);
    let noise = Normal::new(0f32, 0.3).unwrap();
    let mut cache = FeatureCache::new(16, P, D, CachePrecision::F32, u64::MAX, None).unwrap();
    let mut labels = Vec::new();
    for i in 0..16 {
        let class = i % 2;
        let v: Vec<f32> = (0..P * D)
            .map(|j| if class == 0 { (j % 3) as f32 } else { -((j % 5) as f32) } + noise.sample(&mut rng))
            .collect();
        cache
            .put(i, &Tensor::from_vec(v, (P, D), &Device::Cpu).unwrap())
            .unwrap();
        labels.push(class);
    }
    (cache, labels)
}

fn fresh(cfg: &FitConfig, cache: &FeatureCache, labels: &[usize]) -> (HeadState, CenterBank) {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let adaptor = Adaptor::new(&mut rng, D, &Device::Cpu).unwrap();
    let disc = Discriminator::new(&mut rng, D, &Device::Cpu).unwrap();
    let classes = ["a".to_string(), "b".to_string()];
    let bank = center_bank(&adaptor, cache, labels, &classes, &Device::Cpu).unwrap();
    (HeadState::new(adaptor, disc, cfg).unwrap(), bank)
}

fn weights_named(state: &HeadState) -> Vec<(String, Tensor)> {
    file::head_tensors(
        &state.adaptor,
        &state.discriminator,
        Some([&state.opt_adaptor, &state.opt_discriminator]),
    )
}

fn weights(state: &HeadState) -> Vec<Vec<f32>> {
    weights_named(state)
        .into_iter()
        .map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

fn run(
    state: &mut HeadState,
    bank: &CenterBank,
    cfg: &FitConfig,
    cache: &FeatureCache,
    labels: &[usize],
) -> Vec<cras::train::EpochStats> {
    let mut cb = |_: &HeadState, _: &cras::train::EpochStats| Ok(());
    let mut obs = FitObserver {
        log: None,
        progress: false,
        on_epoch: &mut cb,
    };
    fit(state, cache, labels, bank, cfg, &Device::Cpu, &mut obs).unwrap()
}

fn config(epochs: usize) -> FitConfig {
    FitConfig {
        epochs,
        batch_size: 4,
        noise: 0.5,
        lr_adaptor: 1e-3,
        lr_discriminator: 2e-3,
        seed: 5,
        ..Default::default()
    }
}

/// The bank training starts from: per class and position, the mean of the untrained adaptor's
/// output over the class's images, held as a constant (no autograd graph back to the adaptor,
/// which would send gradient through the centers at every step).
#[test]
fn center_bank_is_each_class_mean_of_adapted_descriptors_and_a_constant() {
    let (cache, labels) = data();
    let (state, bank) = fresh(&config(1), &cache, &labels);
    assert!(
        !bank.centers.track_op(),
        "the bank is attached to an autograd graph"
    );
    for k in 0..2 {
        let idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == k).collect();
        let g = cache.batch(&idx, &Device::Cpu).unwrap();
        let f = state
            .adaptor
            .forward(&g.reshape((idx.len() * P, D)).unwrap())
            .unwrap();
        let mean = f.reshape((idx.len(), P, D)).unwrap().mean(0).unwrap();
        let diff = (bank.centers.get(k).unwrap() - mean)
            .unwrap()
            .abs()
            .unwrap();
        let diff: f32 = diff.max_all().unwrap().to_scalar().unwrap();
        assert!(
            diff < 1e-5,
            "class {k}: centers differ from the mean by {diff}"
        );
    }
}

#[test]
fn learns_and_is_deterministic() {
    let (cache, labels) = data();
    let cfg = config(6);
    let (mut a, bank_a) = fresh(&cfg, &cache, &labels);
    let hist = run(&mut a, &bank_a, &cfg, &cache, &labels);
    assert!(
        hist.last().unwrap().loss < hist[0].loss * 0.9,
        "loss did not fall: {hist:?}"
    );
    let (mut b, bank_b) = fresh(&cfg, &cache, &labels);
    run(&mut b, &bank_b, &cfg, &cache, &labels);
    assert_eq!(weights(&a), weights(&b), "same seed, different model");
    let other = FitConfig {
        seed: 6,
        ..cfg.clone()
    };
    let (mut c, bank_c) = fresh(&other, &cache, &labels);
    run(&mut c, &bank_c, &other, &cache, &labels);
    assert_ne!(weights(&a), weights(&c));
}

#[test]
fn resume_from_checkpoint_equals_uninterrupted_run() {
    let (cache, labels) = data();
    let full = config(4);
    let (mut whole, bank) = fresh(&full, &cache, &labels);
    run(&mut whole, &bank, &full, &cache, &labels);

    // Interrupted after 2 epochs, saved, read back into fresh modules, continued.
    let (mut first, bank) = fresh(&full, &cache, &labels);
    run(&mut first, &bank, &config(2), &cache, &labels);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let meta = serde_json::json!({"epochs_done": first.epochs_done,
        "steps": [first.opt_adaptor.step, first.opt_discriminator.step]});
    file::write_raw(&path, &meta, &weights_named(&first)).unwrap();
    let back = file::read_raw(&path).unwrap();
    let adaptor = Adaptor::from_named(&back.tensors).unwrap();
    let disc = Discriminator::from_named(&back.tensors).unwrap();
    let mut resumed = HeadState::new(adaptor, disc, &full).unwrap();
    let steps = back.meta["steps"].as_array().unwrap();
    for (i, tag) in file::OPTIMISERS.iter().enumerate() {
        let moments = |kind: &str| -> Vec<Tensor> {
            (0..)
                .map_while(|j| back.tensors.get(&file::optim_name(tag, kind, j)).cloned())
                .collect()
        };
        let opt = if i == 0 {
            &mut resumed.opt_adaptor
        } else {
            &mut resumed.opt_discriminator
        };
        opt.restore(moments("m"), moments("v"), steps[i].as_u64().unwrap())
            .unwrap();
    }
    resumed.epochs_done = back.meta["epochs_done"].as_u64().unwrap() as usize;
    assert_eq!(
        weights(&resumed),
        weights(&first),
        "checkpoint round trip changed the state"
    );
    let hist = run(&mut resumed, &bank, &full, &cache, &labels);
    assert_eq!(
        hist.len(),
        2,
        "resumed run must do only the remaining epochs"
    );
    // The model resumed from disk is the uninterrupted one, bit for bit: every weight, BatchNorm
    // statistic and optimiser moment, and so every score.
    let bits = |s: &HeadState| -> Vec<Vec<u32>> {
        weights(s)
            .iter()
            .map(|t| t.iter().map(|x| x.to_bits()).collect())
            .collect()
    };
    assert_eq!(resumed.opt_adaptor.step, whole.opt_adaptor.step);
    assert_eq!(resumed.opt_discriminator.step, whole.opt_discriminator.step);
    assert!(
        bits(&resumed) == bits(&whole),
        "resumed and uninterrupted states differ"
    );
    let g = cache
        .batch(&(0..16).collect::<Vec<_>>(), &Device::Cpu)
        .unwrap()
        .reshape((16 * P, D))
        .unwrap();
    let score = |s: &HeadState| -> Vec<u32> {
        let f = s.adaptor.forward(&g).unwrap();
        let x = Tensor::cat(&[&f, &f], 1).unwrap();
        let p: Vec<f32> = s
            .discriminator
            .forward_eval(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        p.iter().map(|x| x.to_bits()).collect()
    };
    assert_eq!(score(&resumed), score(&whole));
    let (untrained, _) = fresh(&full, &cache, &labels);
    assert_ne!(score(&untrained), score(&whole), "training changed nothing");
}

#[test]
fn diverging_loss_stops_with_an_error() {
    let (cache, labels) = data();
    let cfg = FitConfig {
        lr_adaptor: f64::INFINITY,
        ..config(3)
    };
    let (mut s, bank) = fresh(&cfg, &cache, &labels);
    let mut epochs_seen = 0;
    let mut cb = |_: &HeadState, _: &cras::train::EpochStats| {
        epochs_seen += 1;
        Ok(())
    };
    let mut obs = FitObserver {
        log: None,
        progress: false,
        on_epoch: &mut cb,
    };
    let err = fit(&mut s, &cache, &labels, &bank, &cfg, &Device::Cpu, &mut obs).unwrap_err();
    assert!(err.to_string().contains("diverged"), "{err}");
}

/// The epoch figures beyond the loss: a frozen adaptor never moves a patch to another center,
/// a learning one does; the trained discriminator scores true patches below synthetic ones;
/// without center search there is no assignment to follow.
#[test]
fn epoch_diagnostics_follow_the_centers_and_the_scores() {
    let (cache, labels) = data();
    let frozen = FitConfig {
        lr_adaptor: 0.0,
        ..config(4)
    };
    let (mut a, bank_a) = fresh(&frozen, &cache, &labels);
    let hist = run(&mut a, &bank_a, &frozen, &cache, &labels);
    assert_eq!(
        hist[0].center_changed, None,
        "first epoch has no previous one"
    );
    for e in &hist[1..] {
        assert_eq!(e.center_changed, Some(0.0), "frozen adaptor: {e:?}");
    }
    let learning = FitConfig {
        lr_adaptor: 0.05,
        ..config(8)
    };
    let (mut b, bank_b) = fresh(&learning, &cache, &labels);
    let hist = run(&mut b, &bank_b, &learning, &cache, &labels);
    let moved: f64 = hist[1..].iter().map(|e| e.center_changed.unwrap()).sum();
    assert!(moved > 0.0, "a learning adaptor moved no patch: {hist:?}");
    let last = hist.last().unwrap();
    let (t, f) = (last.true_scores.unwrap(), last.fake_scores.unwrap());
    assert!(t.q[2] < f.q[2], "true median {t:?} not below fake {f:?}");
    assert!(t.q.windows(2).all(|w| w[0] <= w[1]), "{t:?}");
    let ablated = FitConfig {
        ablation: cras::model::Ablation {
            center_search: false,
            ..Default::default()
        },
        ..config(3)
    };
    let (mut c, bank_c) = fresh(&ablated, &cache, &labels);
    let hist = run(&mut c, &bank_c, &ablated, &cache, &labels);
    assert!(hist.iter().all(|e| e.center_changed.is_none()), "{hist:?}");
    assert!(hist.iter().all(|e| e.true_scores.is_some()), "{hist:?}");
}
