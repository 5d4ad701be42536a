//! `cras quantize`: the int8 calibration of a model trained before cras measured one (or again,
//! on other images). Input: a model file and a dataset folder holding the model's classes.
//! Output: the model file with its int8 calibration ([`crate::backbone::Int8Calibration`], from
//! [`super::pipeline::PRECISION_SAMPLE`] training images spread over the classes) and the
//! measured bands of the int8 engines present here (on the same sample), written atomically.
//! Everything else in the model, bf16 bands included, is kept.

use std::path::Path;

use candle_core::Device;

use super::pipeline::{calibrate_int8, measure_precision};
use crate::data::{layouts, Splits};
use crate::infer::engine::band;
use crate::infer::engine::Precision;
use crate::infer::Predictor;
use crate::model::ModelMeta;
use crate::{Error, Result};

/// Calibrates `model` on the training images of `data` and writes the result to `out` (may be
/// `model`). Returns the new metadata.
pub fn quantize(model: &Path, data: &Path, out: &Path) -> Result<ModelMeta> {
    let mut predictor = Predictor::load(model, &Device::Cpu)?;
    let classes = predictor.meta.classes.clone();
    let dataset = layouts::load_splits(data, None, Some(&classes), Splits::Train)?;
    let found = dataset.class_names();
    if found != classes {
        return Err(Error::config(
            "data",
            data.display(),
            format!(
                "the model's classes are {}; the folder holds {}",
                classes.join(", "),
                found.join(", ")
            ),
        ));
    }
    let train: Vec<_> = dataset
        .classes
        .iter()
        .flat_map(|c| c.train.clone())
        .collect();
    if train.is_empty() {
        return Err(Error::config(
            "data",
            data.display(),
            "no training images to calibrate on",
        ));
    }
    predictor.meta.int8 = Some(calibrate_int8(&predictor, &train)?);
    let int8: Vec<_> = band::LOW_PRECISIONS
        .into_iter()
        .filter(|(_, p)| *p == Precision::Int8)
        .collect();
    let measured = measure_precision(&predictor, &[], &train, &int8)?;
    predictor
        .meta
        .precision_bands
        .retain(|b| b.precision != Precision::Int8.name());
    predictor.meta.precision_bands.extend(measured);
    predictor.save(out)?;
    Ok(predictor.meta)
}
