//! Parity of one CRAS training step with PyTorch: two steps of the reference's semantics on
//! given descriptors, centers and noise (fixture from dev/gen_train_fixtures.py). Checks the
//! aligned centers, the fake features, the loss, both optimisers' updated weights and the
//! discriminator's BatchNorm running statistics, within 1e-5 relative.

use crate::common;

use cras::model::{
    optim::{AdamFamily, WeightDecay},
    step::train_step,
    synthesis::synthesize,
    Ablation, Adaptor, CenterBank, Discriminator,
};

#[test]
fn two_training_steps_match_pytorch() {
    let fx = common::Fixture::load("train/step");
    let (b, p, d) = (
        fx.meta["B"].as_u64().unwrap() as usize,
        fx.meta["P"].as_u64().unwrap() as usize,
        fx.meta["D"].as_u64().unwrap() as usize,
    );
    let k = fx.meta["k"].as_f64().unwrap();
    let init = fx.with_prefix("init.");
    let adaptor = Adaptor::from_named(&init).unwrap();
    let mut disc = Discriminator::from_named(&init).unwrap();
    let bank = CenterBank::new(fx.get("centers")).unwrap();
    let mut opt_a = AdamFamily::new(adaptor.vars(), 1e-4, WeightDecay::Decoupled(0.01)).unwrap();
    let mut opt_d = AdamFamily::new(disc.vars(), 2e-4, WeightDecay::Coupled(1e-5)).unwrap();
    let g_all = fx.get("g");
    let cls_all: Vec<Vec<f32>> = fx.get("classes").to_vec2().unwrap();
    let noise_all = fx.get("noise");
    let losses = fx.meta["losses"].as_array().unwrap();
    for step in 0..2 {
        let g = g_all.get(step).unwrap();
        let classes: Vec<usize> = cls_all[step].iter().map(|&c| c as usize).collect();
        let noise = noise_all.get(step).unwrap();
        // The intermediate quantities, with the weights as they are before this step.
        let f = adaptor.forward(&g.reshape((b * p, d)).unwrap()).unwrap();
        let r = bank
            .align(&f.reshape((b, p, d)).unwrap(), &classes, true)
            .unwrap()
            .reshape((b * p, d))
            .unwrap();
        let rel = common::max_rel_diff(&r, &fx.get(&format!("step{step}.r")));
        assert!(rel < 1e-6, "step {step}: aligned centers differ by {rel}");
        let fake = synthesize(&f, &r, &noise, k).unwrap();
        let rel = common::max_rel_diff(&fake, &fx.get(&format!("step{step}.fake")));
        // After the first update the adaptor bias carries Adam-amplified rounding noise (see
        // below), so step 1's fakes agree to the size of that noise only.
        let tol = if step == 0 { 1e-5 } else { 1e-3 };
        assert!(rel < tol, "step {step}: fake features differ by {rel}");

        let (stats, _) = train_step(
            &adaptor,
            &mut disc,
            &bank,
            &g,
            &classes,
            &noise,
            k,
            Ablation::default(),
            &mut opt_a,
            &mut opt_d,
        )
        .unwrap();
        let want = losses[step].as_f64().unwrap();
        assert!(
            ((stats.loss - want) / want).abs() < 1e-5,
            "step {step}: loss {} vs torch {want}",
            stats.loss
        );
    }
    let mut named = adaptor.named();
    named.extend(disc.named());
    assert_eq!(named.len(), 15);
    for (name, t) in named {
        let want = fx.get(&format!("final.{name}"));
        if let Some(lr) = zero_gradient_lr(&name) {
            // A bias followed (through linear maps) by a BatchNorm shifts every row of the
            // batch equally, and the BatchNorm removes any shift common to the batch: its
            // gradient is exactly zero analytically, and what torch and we compute is rounding
            // noise (~1e-9) that Adam's first steps turn into +-lr moves. Both implementations
            // share this; we check that the bias moved by at most lr per step.
            let init = fx.get(&format!("init.{name}"));
            let moved = (t - &init).unwrap().abs().unwrap().max_all().unwrap();
            let moved = moved.to_scalar::<f32>().unwrap();
            assert!(moved <= 2.0 * lr * 1.01, "{name} moved {moved}");
            continue;
        }
        if name.ends_with("running_mean") {
            // The batch means include the noisy biases above (momentum 0.1): absolute check
            // at the size that noise can reach (0.1 * 2 steps * 2 lr).
            let diff = (t - &want).unwrap().abs().unwrap().max_all().unwrap();
            let diff = diff.to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "{name}: absolute difference {diff}");
            continue;
        }
        let rel = common::max_rel_diff(&t, &want);
        assert!(rel < 1e-5, "{name}: relative difference {rel}");
    }
}

/// Learning rate of the parameters whose gradient is analytically zero (see the test).
fn zero_gradient_lr(name: &str) -> Option<f32> {
    match name {
        "pre_projection.layers.0fc.bias" => Some(1e-4),
        "discriminator.body.block1.0.bias" | "discriminator.body.block2.0.bias" => Some(2e-4),
        _ => None,
    }
}
