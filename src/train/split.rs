//! Step 1 of training ([`super::pipeline`]): the dataset of a run, read (only the splits
//! training uses) and split into training images and the normal images that calibrate the
//! thresholds. Per class, its `val` images (MVTec AD 2, LOCO, manifests) are the calibration
//! set and every training image trains; a class without any holds out a seeded share
//! (`--holdout`) of its training images, chosen by an RNG seeded from `(seed, class)`: the same
//! seed gives the same split, so a resumed run trains and calibrates on the images the
//! interrupted one used.

use std::path::PathBuf;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

use super::config::{Setting, TrainConfig};
use super::fit::derive_seed;
use crate::data::{layouts, Dataset, Splits};
use crate::{Error, Result};

/// The dataset of a run, split.
pub struct Split {
    pub dataset: Dataset,
    pub classes: Vec<String>,
    /// Training images, grouped by class, and each one's class index.
    pub train: Vec<PathBuf>,
    pub labels: Vec<usize>,
    /// Held-out normal images per class (threshold calibration).
    pub holdout: Vec<Vec<PathBuf>>,
}

/// Step 1: reads the dataset; per class, its `val` images are the calibration set, or, when it
/// has none, `cfg.holdout` of its training images are held out. Only the train side (train and
/// val rows) is read and checked, unless the test-set probe (`eval_every`) reads the test split
/// too.
pub fn split(cfg: &TrainConfig) -> Result<Split> {
    let splits = if cfg.eval_every > 0 {
        Splits::Both
    } else {
        Splits::Train
    };
    let dataset = layouts::load_splits(&cfg.data, cfg.format, cfg.classes.as_deref(), splits)?;
    let classes = dataset.class_names();
    if cfg.setting == Setting::Single && classes.len() != 1 {
        return Err(Error::config(
            "setting",
            "single",
            format!("single-class training takes exactly one class (--classes NAME); the dataset has {}", classes.len()),
        ));
    }
    let (mut train, mut labels, mut holdout) = (Vec::new(), Vec::new(), Vec::new());
    for (k, c) in dataset.classes.iter().enumerate() {
        let (t, h) = if c.val.is_empty() {
            split_holdout(&c.train, cfg.holdout, cfg.fit.seed, k)
        } else {
            (c.train.clone(), c.val.clone())
        };
        labels.extend(std::iter::repeat_n(k, t.len()));
        train.extend(t);
        holdout.push(h);
    }
    tracing::info!(
        classes = classes.len(),
        train = train.len(),
        holdout = holdout.iter().map(Vec::len).sum::<usize>(),
        "dataset"
    );
    Ok(Split {
        dataset,
        classes,
        train,
        labels,
        holdout,
    })
}

/// Splits sorted paths into (train, holdout) deterministically.
fn split_holdout(
    paths: &[PathBuf],
    share: f64,
    seed: u64,
    class: usize,
) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut idx: Vec<usize> = (0..paths.len()).collect();
    idx.shuffle(&mut ChaCha12Rng::seed_from_u64(derive_seed(&[
        seed,
        3,
        class as u64,
    ])));
    let n_hold = if share > 0.0 && paths.len() >= 4 {
        ((paths.len() as f64 * share).round() as usize).clamp(1, paths.len() / 2)
    } else {
        0
    };
    let mut hold: Vec<usize> = idx[..n_hold].to_vec();
    let mut train: Vec<usize> = idx[n_hold..].to_vec();
    hold.sort_unstable();
    train.sort_unstable();
    (
        train.into_iter().map(|i| paths[i].clone()).collect(),
        hold.into_iter().map(|i| paths[i].clone()).collect(),
    )
}
