//! Load-time checks of a model file: a file that loads is a model that scores.
//!
//! [`crate::model::file::load`] runs [`check_tensors`] (every tensor finite) and [`check_meta`]
//! (the metadata's preprocessing is usable, its grid follows from its crop and descriptor
//! layers, and the center bank and head have the shapes its descriptor width and grid imply)
//! before returning; [`crate::model::TrainedModel::load`] then runs a test forward pass. Every
//! error is a [`crate::Error::Checkpoint`] naming the file and what is wrong, so that every
//! command (and a `cras serve` reload) refuses a bad model instead of failing per image.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use super::file::ModelMeta;
use super::head::{Adaptor, Discriminator};
use super::CenterBank;
use crate::backbone::Layer;
use crate::{Error, Result};

/// Refuses a model holding a NaN or infinite value (names the first such tensor, sorted).
pub fn check_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        let bad = non_finite(&tensors[name])
            .map_err(|e| Error::checkpoint(path, format!("tensor {name}: {e}")))?;
        if bad > 0 {
            return Err(Error::checkpoint(
                path,
                format!(
                    "tensor {name} holds {bad} NaN or infinite value(s): the model is damaged \
                     (a diverged training run?); retrain it"
                ),
            ));
        }
    }
    Ok(())
}

/// Number of non-finite values of `t`.
pub fn non_finite(t: &Tensor) -> Result<usize> {
    let v: Vec<f32> = t
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    Ok(v.iter().filter(|x| !x.is_finite()).count())
}

/// Checks the metadata against itself and the head's tensors against the metadata.
pub fn check_meta(
    path: &Path,
    meta: &ModelMeta,
    bank: &CenterBank,
    adaptor: &Adaptor,
    discriminator: &Discriminator,
) -> Result<()> {
    let bad = |msg: String| Error::checkpoint(path, msg);
    meta.preprocess
        .validate()
        .map_err(|e| bad(format!("model metadata: preprocessing: {e}")))?;
    let d = meta.descriptor.dims;
    if d < 2 {
        return Err(bad(format!(
            "model metadata: descriptor width {d}, expected at least 2"
        )));
    }
    let stride = meta
        .descriptor
        .layers
        .first()
        .copied()
        .unwrap_or(Layer::L2)
        .stride();
    let grid = meta.preprocess.crop as usize / stride;
    if meta.grid != grid {
        return Err(bad(format!(
            "model metadata: grid {} but crop {} / stride {stride} of {} gives {grid}",
            meta.grid,
            meta.preprocess.crop,
            meta.descriptor.layers.first().copied().unwrap_or(Layer::L2)
        )));
    }
    let rows = meta.preprocess.center_rows_per_class();
    let (k, p) = (meta.classes.len() * rows, grid * grid);
    let centers = bank.centers.dims();
    if centers != [k, p, d] {
        let per_tile = if rows > 1 {
            format!(" x {rows} tile positions")
        } else {
            String::new()
        };
        return Err(bad(format!(
            "center bank has shape {centers:?}, the metadata implies [{k}, {p}, {d}] \
             ({} classes{per_tile}, grid {grid}x{grid}, descriptor width {d}): tensors and \
             metadata come from different models",
            meta.classes.len()
        )));
    }
    let h = d / 2;
    let mut expected: HashMap<String, Vec<usize>> = [
        ("pre_projection.layers.0fc.weight", vec![d, d]),
        ("pre_projection.layers.0fc.bias", vec![d]),
        ("discriminator.body.block1.0.weight", vec![d, 2 * d]),
        ("discriminator.body.block1.0.bias", vec![d]),
        ("discriminator.body.block2.0.weight", vec![h, d]),
        ("discriminator.body.block2.0.bias", vec![h]),
        ("discriminator.tail.0.weight", vec![1, h]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    for part in ["weight", "bias", "running_mean", "running_var"] {
        expected.insert(format!("discriminator.body.block1.1.{part}"), vec![d]);
        expected.insert(format!("discriminator.body.block2.1.{part}"), vec![h]);
    }
    let mut named = adaptor.named();
    named.extend(discriminator.named());
    for (name, t) in &named {
        if let Some(want) = expected.get(name) {
            if t.dims() != want.as_slice() {
                return Err(bad(format!(
                    "tensor {name} has shape {:?}, the metadata's descriptor width {d} implies \
                     {want:?}: tensors and metadata come from different models",
                    t.dims()
                )));
            }
        }
    }
    Ok(())
}
