//! Long-run training parity, cras side (driven by dev/long_run_parity.py; dev-only).
//!
//!     cargo run --example long_run_parity -- IN_STEM OUT_STEM
//!
//! IN_STEM.json + IN_STEM.bin (little-endian f32, the layout of tests/fixtures) hold what the
//! authors' loop saw: training descriptors `g` [N, P, D] and their class `labels` [N], the
//! initial head `init.<reference name>`, every epoch's image `order` [E, N] and every step's
//! noise `noise.<epoch>.<step>` [B*P, D], and test descriptors `test_g` [T, P, D]; the json's
//! `meta` gives epochs, batch_size, k and the learning rates. At realistic sizes the noise
//! (gigabytes over 40 epochs) is instead read step by step, in order, from IN_STEM.noise.bin
//! (the same f32 layout, steps concatenated) when the fixture holds no `noise.*`. The center
//! bank is computed by cras ([`center_bank`]) from the initial adaptor, then each epoch runs
//! [`train_step`] over the given batches with the given noise. Written to OUT_STEM.json + OUT_STEM.bin: after every
//! epoch `e<epoch>.<name>` (weights and BatchNorm running statistics) and `e<epoch>.adam.<a|d>
//! .<m|v>.<i>` (optimiser moments in parameter order), then `centers`, `test_scores` [T, P]
//! (scored as at inference: class by global match, local alignment, evaluation-mode
//! discriminator) and `test_class` [T]; with `meta.score_epochs` (0-based epochs) also
//! `test_scores.<epoch>` after each of those epochs.
//!
//!     cargo run --release --example long_run_parity -- --init-stats IN_STEM SEEDS [NOISE]
//!
//! The other mode (dev/fidelity_seeds.py `init`): for seeds 0..SEEDS, cras's own seeded start
//! as `cras train` makes it ([`init_head`]: adaptor, discriminator, center bank; epoch 0's
//! order; step 0's noise) on the descriptors `g` / `labels` of IN_STEM, then step 0
//! ([`train_step`]); prints one JSON line per seed: its loss, p_true and p_fake. Averaged over
//! many seeds, they test the initial distributions that the injected mode holds equal.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use cras::features::cache::{CachePrecision, FeatureCache};
use cras::model::synthesis::gaussian_noise;
use cras::model::{
    head::discriminator_input, step::train_step, Ablation, Adaptor, CenterBank, Discriminator,
};
use cras::train::config::TrainConfig;
use cras::train::fit::{derive_seed, epoch_order};
use cras::train::pipeline::{center_bank, init_head};
use cras::train::{FitConfig, HeadState};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Little-endian f32 values of a fixture's bytes.
fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn read(stem: &str) -> Res<(serde_json::Value, HashMap<String, Tensor>)> {
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(format!("{stem}.json"))?)?;
    let floats = f32s(&std::fs::read(format!("{stem}.bin"))?);
    let mut out = HashMap::new();
    for (name, e) in meta["tensors"].as_object().ok_or("no tensors index")? {
        let shape: Vec<usize> = serde_json::from_value(e["shape"].clone())?;
        let off = e["offset"].as_u64().ok_or("no offset")? as usize;
        let n: usize = shape.iter().product();
        let data = floats.get(off..off + n).ok_or("bin too short")?.to_vec();
        out.insert(name.clone(), Tensor::from_vec(data, shape, &Device::Cpu)?);
    }
    Ok((meta, out))
}

fn write(stem: &str, tensors: &[(String, Tensor)]) -> Res<()> {
    let (mut index, mut bytes) = (serde_json::Map::new(), Vec::new());
    for (name, t) in tensors {
        let v: Vec<f32> = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        index.insert(
            name.clone(),
            serde_json::json!({"shape": t.dims(), "offset": bytes.len() / 4}),
        );
        bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    }
    std::fs::write(format!("{stem}.bin"), bytes)?;
    let meta = serde_json::json!({ "tensors": index });
    std::fs::write(format!("{stem}.json"), serde_json::to_vec(&meta)?)?;
    Ok(())
}

/// Test patch scores [T, P] as at inference (class by global match, local alignment,
/// evaluation-mode discriminator) from test descriptors [T, P, D], with each image's class.
fn score_test(st: &HeadState, bank: &CenterBank, test: &Tensor) -> Res<(Tensor, Vec<usize>)> {
    let (nt, p, d) = test.dims3()?;
    let f = st
        .adaptor
        .forward(&test.reshape((nt * p, d))?)?
        .reshape((nt, p, d))?;
    let (cls, _) = bank.global_match(&f)?;
    let r = bank.align(&f, &cls, true)?.reshape((nt * p, d))?;
    let x = discriminator_input(&f.reshape((nt * p, d))?, &r, Ablation::default())?;
    // Detached: the head's weights are Vars, so the scores would otherwise hold the whole
    // forward graph (gigabytes at 256 test images) for as long as they are kept.
    Ok((
        st.discriminator
            .forward_eval(&x)?
            .reshape((nt, p))?
            .detach(),
        cls,
    ))
}

/// Descriptors `g` [N, P, D] of a fixture as a feature cache, with their `labels` and classes.
fn cache_of(
    input: &str,
    t: &HashMap<String, Tensor>,
    meta: &serde_json::Value,
) -> Res<(FeatureCache, Vec<usize>, Vec<String>)> {
    let get = |n: &str| t.get(n).cloned().ok_or(format!("{input}: no tensor {n}"));
    let classes: Vec<String> = serde_json::from_value(meta["meta"]["classes"].clone())?;
    let g = get("g")?;
    let (n, p, d) = g.dims3()?;
    let labels: Vec<usize> = get("labels")?
        .to_vec1::<f32>()?
        .iter()
        .map(|&c| c as usize)
        .collect();
    let mut cache = FeatureCache::new(n, p, d, CachePrecision::F32, u64::MAX, None)?;
    for i in 0..n {
        cache.put(i, &g.get(i)?)?;
    }
    Ok((cache, labels, classes))
}

/// `--init-stats`: step 0 from cras's own seeded start, for many seeds.
fn init_stats(input: &str, seeds: u64, noise: f64) -> Res<()> {
    let dev = Device::Cpu;
    let (meta, t) = read(input)?;
    let (cache, labels, classes) = cache_of(input, &t, &meta)?;
    let batch = meta["meta"]["batch_size"]
        .as_u64()
        .ok_or("meta.batch_size missing")? as usize;
    for seed in 0..seeds {
        let mut cfg = TrainConfig::paper(".");
        cfg.descriptor.dims = cache.dims();
        cfg.fit.seed = seed;
        cfg.fit.noise = noise;
        let (mut st, bank) = init_head(&cfg, &cache, &labels, &classes, &dev)?;
        let chunk: Vec<usize> = epoch_order(cache.len(), seed, 0)
            .into_iter()
            .take(batch)
            .collect();
        let mut rng = ChaCha12Rng::seed_from_u64(derive_seed(&[seed, 2, 0, 0]));
        let noise = gaussian_noise(
            &mut rng,
            chunk.len() * cache.rows(),
            cache.dims(),
            noise,
            &dev,
        )?;
        let cls: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
        let (s, _) = train_step(
            &st.adaptor,
            &mut st.discriminator,
            &bank,
            &cache.batch(&chunk, &dev)?,
            &cls,
            &noise,
            cfg.fit.k,
            Ablation::default(),
            &mut st.opt_adaptor,
            &mut st.opt_discriminator,
        )?;
        println!(
            "{}",
            serde_json::json!({"seed": seed, "loss": s.loss, "p_true": s.p_true, "p_fake": s.p_fake})
        );
    }
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--init-stats") {
        let input = args
            .get(2)
            .ok_or("usage: long_run_parity --init-stats IN_STEM SEEDS [NOISE]")?;
        let seeds = args.get(3).ok_or("SEEDS missing")?.parse()?;
        let noise = args.get(4).map(|x| x.parse()).transpose()?.unwrap_or(0.015);
        return init_stats(input, seeds, noise);
    }
    let [_, input, output] = &args[..] else {
        return Err("usage: long_run_parity IN_STEM OUT_STEM".into());
    };
    let dev = Device::Cpu;
    let (meta, t) = read(input)?;
    let get = |n: &str| t.get(n).cloned().ok_or(format!("{input}: no tensor {n}"));
    let m = &meta["meta"];
    let num = |k: &str| m[k].as_f64().ok_or(format!("{input}: meta.{k} missing"));
    let cfg = FitConfig {
        epochs: num("epochs")? as usize,
        batch_size: num("batch_size")? as usize,
        lr_adaptor: num("lr")?,
        lr_discriminator: 2.0 * num("lr")?,
        k: num("k")?,
        ..FitConfig::default()
    };
    let (cache, labels, classes) = cache_of(input, &t, &meta)?;
    let (p, d) = (cache.rows(), cache.dims());
    let init: HashMap<String, Tensor> = t
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("init.").map(|s| (s.to_string(), v.clone())))
        .collect();
    let adaptor = Adaptor::from_named(&init)?;
    let bank = center_bank(&adaptor, &cache, &labels, &classes, &dev)?;
    let mut st = HeadState::new(adaptor, Discriminator::from_named(&init)?, &cfg)?;
    let order: Vec<Vec<f32>> = get("order")?.to_vec2()?;
    // Epochs (0-based) after which the test set is also scored (`meta.score_epochs`, optional).
    let score_epochs: Vec<u64> = m["score_epochs"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
        .unwrap_or_default();
    let mut sidecar = if t.contains_key("noise.0.0") {
        None
    } else {
        let path = format!("{input}.noise.bin");
        let f = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        Some(std::io::BufReader::new(f))
    };
    let mut noise_of = |e: usize, s: usize, rows: usize| -> Res<Tensor> {
        let Some(r) = sidecar.as_mut() else {
            return Ok(get(&format!("noise.{e}.{s}"))?);
        };
        let mut bytes = vec![0u8; rows * d * 4];
        std::io::Read::read_exact(r, &mut bytes)
            .map_err(|err| format!("{input}.noise.bin: epoch {e} step {s}: {err}"))?;
        Ok(Tensor::from_vec(f32s(&bytes), (rows, d), &dev)?)
    };
    let mut out = Vec::new();
    for (e, ord) in order.iter().enumerate().take(cfg.epochs) {
        let ord: Vec<usize> = ord.iter().map(|&i| i as usize).collect();
        for (s, chunk) in ord.chunks(cfg.batch_size).enumerate() {
            let cls: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
            train_step(
                &st.adaptor,
                &mut st.discriminator,
                &bank,
                &cache.batch(chunk, &dev)?,
                &cls,
                &noise_of(e, s, chunk.len() * p)?,
                cfg.k,
                Ablation::default(),
                &mut st.opt_adaptor,
                &mut st.opt_discriminator,
            )?;
        }
        let mut named = st.adaptor.named();
        named.extend(st.discriminator.named());
        // Copies: a Var's tensor shares its storage, which later steps overwrite in place.
        for (k, v) in named {
            out.push((format!("e{e}.{k}"), v.copy()?));
        }
        for (tag, opt) in [("a", &st.opt_adaptor), ("d", &st.opt_discriminator)] {
            let (ms, vs) = opt.moments();
            for (i, (m, v)) in ms.iter().zip(vs).enumerate() {
                out.push((format!("e{e}.adam.{tag}.m.{i}"), m.clone()));
                out.push((format!("e{e}.adam.{tag}.v.{i}"), v.clone()));
            }
        }
        if score_epochs.contains(&(e as u64)) {
            out.push((
                format!("test_scores.{e}"),
                score_test(&st, &bank, &get("test_g")?)?.0,
            ));
        }
        eprintln!("epoch {e} done");
    }
    let test = get("test_g")?;
    let (scores, cls) = score_test(&st, &bank, &test)?;
    let cls: Vec<f32> = cls.iter().map(|&c| c as f32).collect();
    out.push(("centers".into(), bank.centers.clone()));
    out.push(("test_scores".into(), scores));
    out.push(("test_class".into(), Tensor::new(cls, &dev)?));
    write(output, &out)
}
