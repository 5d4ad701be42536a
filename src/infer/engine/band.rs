//! The confirmation band of a low-precision engine, measured on the model instead of guessed.
//!
//! A low-precision engine's image score is a screen: an image whose score lies within the band
//! of its threshold is re-scored at f32 before it is decided
//! ([`super::graph_engine::GraphEngine`]). How far low-precision scores stray depends on the
//! model (1.6 logits at most on the demo, 6 on realistic data with the whole graph at bf16), so
//! the band is measured per model and stored in it ([`PrecisionBand`]):
//!
//! - [`measure`]: score images (training's held-out normal images, else a sample of its
//!   training images) with the model at f32 and on the low-precision engine (class matched,
//!   no confirmation), take `|logit(low) - logit(f32)|` per image;
//! - [`band_of_errors`]: band = [`BAND_FACTOR`] x the [`BAND_QUANTILE`] quantile of those
//!   errors (at least [`MIN_BAND`]), with the figures, and the share of the images the band
//!   would send back to f32 at their stored thresholds;
//! - [`resolve_band`]: the band an engine uses: the one given (`--confirm-band`), else the
//!   measured one, else [`super::DEFAULT_CONFIRM_BAND`] (a model trained before bands were
//!   measured, or where the runtime was absent; logged). A measured band that would send more
//!   than [`MAX_CONFIRMED_SHARE`] of the images to f32 refuses the precision: most images
//!   would pay for both passes. A band measured on a CPU with other instruction sets (its
//!   [`HostCpu`] is stored with it) is used with a warning ([`other_cpu`]): the runtimes'
//!   low-precision kernels, and so their errors, differ between them.

use candle_core::Tensor;

use super::graph_engine::GraphEngine;
use super::{EngineKind, EngineOptions, Precision, DEFAULT_CONFIRM_BAND};
use crate::device::HostCpu;
use crate::export::export_onnx;
use crate::infer::decision::{logit, near_threshold};
use crate::infer::{ClassChoice, Predictor};
use crate::model::PrecisionBand;
use crate::{Error, Result};

/// The low-precision engines training measures (where their runtime and precision are
/// present).
pub const LOW_PRECISIONS: [(EngineKind, Precision); 3] = [
    (EngineKind::OpenVino, Precision::Bf16),
    (EngineKind::OpenVino, Precision::Int8),
    (EngineKind::OnnxRuntime, Precision::Int8),
];

/// The quantile of the measured errors the band is built on.
pub const BAND_QUANTILE: f64 = 0.99;
/// The band is this many times the quantile: the measurement sees tens of images, a test set
/// hundreds, and the largest of n errors grows with log n.
pub const BAND_FACTOR: f64 = 2.0;
/// The smallest band, in logits (an engine measured exact on a few images is not exact on all).
pub const MIN_BAND: f32 = 0.1;
/// A precision whose measured band would re-score more than this share of the images at f32
/// is refused (most images would pay for both passes).
pub const MAX_CONFIRMED_SHARE: f64 = 0.5;
/// A share measured on fewer images than this refuses nothing (the thresholds are quantiles of
/// those few images, which then all lie near them); the band is still used.
pub const MIN_IMAGES_TO_REFUSE: usize = 8;

/// `|logit(low) - logit(exact)|`, scores clamped to `[2^-24, 1 - 2^-24]` (the f32 resolution
/// next to 1) so that a saturated score counts as about 16.6 logits, not infinity; a NaN score
/// is an infinite error.
pub fn logit_error(low: f32, exact: f32) -> f64 {
    if low.is_nan() || exact.is_nan() {
        return f64::INFINITY;
    }
    let edge = 2f32.powi(-24);
    let clamp = |p: f32| p.clamp(edge, 1.0 - edge);
    (logit(clamp(low)) - logit(clamp(exact))).abs()
}

/// The band of `engine` at `precision` from the scores of the same images at f32 (`exact`)
/// and at low precision (`low`); `thresholds[i]` is image i's stored threshold, if any.
pub fn band_of_errors(
    engine: EngineKind,
    precision: Precision,
    images_from: &str,
    exact: &[f32],
    low: &[f32],
    thresholds: &[Option<f32>],
) -> Result<PrecisionBand> {
    if exact.is_empty() || exact.len() != low.len() || exact.len() != thresholds.len() {
        return Err(Error::Other(format!(
            "measuring {engine} {precision}: {} f32 scores, {} low-precision scores and {} \
             thresholds (expected the same number, at least one)",
            exact.len(),
            low.len(),
            thresholds.len()
        )));
    }
    let errors: Vec<f64> = exact
        .iter()
        .zip(low)
        .map(|(&e, &l)| logit_error(l, e))
        .collect();
    if let Some(i) = errors.iter().position(|e| !e.is_finite()) {
        return Err(Error::Other(format!(
            "measuring {engine} {precision}: image {i} scored {} at f32 and {} at {precision}: \
             no band can cover a score that is not a number",
            exact[i], low[i]
        )));
    }
    let as_f32: Vec<f32> = errors.iter().map(|&e| e as f32).collect();
    let q = |q: f64| crate::metrics::threshold::quantile_threshold(&as_f32, q).map(f64::from);
    let quantile_error = q(BAND_QUANTILE)?;
    let band = ((BAND_FACTOR * quantile_error) as f32).max(MIN_BAND);
    let with_threshold: Vec<(f32, f32)> = low
        .iter()
        .zip(thresholds)
        .filter_map(|(&s, t)| t.filter(|t| t.is_finite()).map(|t| (s, t)))
        .collect();
    let confirmed_share = (!with_threshold.is_empty()).then(|| {
        let near = with_threshold
            .iter()
            .filter(|&&(s, t)| near_threshold(s, Some(t), band))
            .count();
        near as f64 / with_threshold.len() as f64
    });
    Ok(PrecisionBand {
        engine: engine.name().into(),
        precision: precision.name().into(),
        images_from: images_from.into(),
        images: errors.len(),
        median: q(0.5)?,
        mean: errors.iter().sum::<f64>() / errors.len() as f64,
        p90: q(0.9)?,
        max: errors.iter().copied().fold(0.0, f64::max),
        quantile: BAND_QUANTILE,
        quantile_error,
        factor: BAND_FACTOR,
        band,
        confirmed_share,
        measured_on: None,
    })
}

/// Measures `engine` at `precision` on `predictor`'s model: the f32 scores of `batches`
/// (preprocessed images, each `[B,3,S,S]`; `predictor` must score at f32) against the
/// engine's (built here, without confirmation), class matched, thresholds the stored ones.
/// An error when the engine cannot be built (runtime absent, precision unsupported here).
pub fn measure(
    predictor: &Predictor,
    engine: EngineKind,
    precision: Precision,
    images_from: &str,
    batches: &[Tensor],
) -> Result<PrecisionBand> {
    if predictor.precision() != Precision::F32 {
        return Err(Error::Other(format!(
            "measuring {engine} {precision} needs the f32 scores: the predictor runs at {}",
            predictor.precision()
        )));
    }
    let options = EngineOptions {
        choice: super::EngineChoice::Kind(engine),
        precision,
        threads: None,
        confirm_band: Some(0.0),
    };
    let export = |part: crate::export::GraphPart, precision: Precision| {
        export_onnx(predictor, &super::part_options(part, precision, None))
    };
    let (side, grid) = (predictor.input_size(), predictor.meta.grid);
    let low_engine = GraphEngine::new(
        engine,
        &export,
        &options,
        0.0,
        side,
        grid * grid,
        predictor.bank.classes(),
    )?;
    let (mut exact, mut low, mut thresholds) = (Vec::new(), Vec::new(), Vec::new());
    let none: &(dyn Fn(usize, usize) -> Option<f32> + Sync) = &|_, _| None;
    for batch in batches {
        let want = predictor.predict_batch(batch, &ClassChoice::Match)?;
        let got = predictor.predict_batch_on(&low_engine, batch, &ClassChoice::Match, none)?;
        thresholds.extend(want.iter().map(|p| predictor.meta.threshold(p.class)));
        exact.extend(want.iter().map(|p| p.score));
        low.extend(got.iter().map(|p| p.score));
    }
    let band = band_of_errors(engine, precision, images_from, &exact, &low, &thresholds)?;
    Ok(PrecisionBand {
        measured_on: Some(HostCpu::here()),
        ..band
    })
}

/// The confirmation band an engine of `kind` uses on a model (`meta`): the one `options`
/// gives, else the model's measured one (an error when it would re-score most images at
/// f32), else [`DEFAULT_CONFIRM_BAND`] (logged). 0 at f32.
pub fn resolve_band(
    meta: &crate::model::ModelMeta,
    kind: EngineKind,
    options: &EngineOptions,
) -> Result<f32> {
    let measured = meta.precision_band(kind.name(), options.precision.name());
    band_in_force(measured, kind, options)
}

/// [`resolve_band`] with the model's measured band for `kind` at `options.precision`.
pub fn band_in_force(
    measured: Option<&PrecisionBand>,
    kind: EngineKind,
    options: &EngineOptions,
) -> Result<f32> {
    let precision = options.precision;
    if precision == Precision::F32 {
        return Ok(0.0);
    }
    if let Some(band) = options.confirm_band {
        return Ok(band);
    }
    let Some(m) = measured else {
        tracing::warn!(
            "the model has no measured {kind} {precision} error (trained without that runtime, \
             or by an older cras): confirming at the default band of {DEFAULT_CONFIRM_BAND} \
             logits, which may not keep every decision; retrain where the runtime is present, \
             or give --confirm-band"
        );
        return Ok(DEFAULT_CONFIRM_BAND);
    };
    let refusable = m.images >= MIN_IMAGES_TO_REFUSE;
    if let Some(share) = m
        .confirmed_share
        .filter(|&s| refusable && s > MAX_CONFIRMED_SHARE)
    {
        return Err(Error::config(
            "precision",
            precision,
            format!(
                "on this model {kind} {precision} moves image scores by up to {:.2} logits \
                 (median {:.2}, {} quantile {:.2}, over {} {}); its measured confirmation band \
                 of {:.2} logits would re-score {:.0}% of those images at f32, so most images \
                 would pay for both passes: use --precision f32 (or give --confirm-band to \
                 accept the cost)",
                m.max,
                m.median,
                m.quantile,
                m.quantile_error,
                m.images,
                m.images_from,
                m.band,
                100.0 * share
            ),
        ));
    }
    if let Some(warning) = other_cpu(m, &HostCpu::here()) {
        tracing::warn!("{warning}");
    }
    Ok(m.band)
}

/// The warning for a band measured on a CPU whose instruction sets differ from `here`'s (None
/// when they are the same, or either is unknown).
pub fn other_cpu(m: &PrecisionBand, here: &HostCpu) -> Option<String> {
    let there = m.measured_on.as_ref()?;
    if !there.known() || !here.known() || there.isa == here.isa {
        return None;
    }
    Some(format!(
        "the {} {} confirmation band of this model ({:.2} logits) was measured on {}; this \
         CPU is {}: the runtime's low-precision kernels differ between instruction sets, so the \
         band may not cover the errors here. Measure it here (`cras quantize` for int8, \
         training for bf16) or give --confirm-band",
        m.engine,
        m.precision,
        m.band,
        there.describe(),
        here.describe()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sigmoid(x: f64) -> f32 {
        (1.0 / (1.0 + (-x).exp())) as f32
    }

    #[test]
    fn the_band_is_the_factor_times_the_quantile_of_the_logit_errors() {
        // 101 images: errors 0, 0.05, ..., 5 logits around logit 0.
        let exact: Vec<f32> = (0..101).map(|_| 0.5).collect();
        let low: Vec<f32> = (0..101).map(|i| sigmoid(0.05 * i as f64)).collect();
        let thresholds = vec![Some(0.5); 101];
        let b = band_of_errors(
            EngineKind::OpenVino,
            Precision::Bf16,
            "test",
            &exact,
            &low,
            &thresholds,
        )
        .unwrap();
        assert_eq!(
            (b.engine.as_str(), b.precision.as_str()),
            ("openvino", "bf16")
        );
        assert_eq!(b.images, 101);
        assert!((b.max - 5.0).abs() < 1e-4, "{b:?}");
        assert!((b.median - 2.5).abs() < 1e-4, "{b:?}");
        assert!((b.quantile_error - 4.95).abs() < 1e-4, "{b:?}");
        assert!((f64::from(b.band) - 9.9).abs() < 1e-3, "{b:?}");
        // Every image lies within 9.9 logits of the threshold.
        assert_eq!(b.confirmed_share, Some(1.0));
        // Without thresholds there is no share; a tiny error gets the floor.
        let b = band_of_errors(
            EngineKind::OpenVino,
            Precision::Bf16,
            "test",
            &[0.3, 0.4],
            &[0.3, 0.4],
            &[None, None],
        )
        .unwrap();
        assert_eq!((b.band, b.confirmed_share), (MIN_BAND, None));
    }

    #[test]
    fn the_measured_band_is_used_unless_one_is_given_and_refused_when_it_confirms_most() {
        let bf16 = |band: Option<f32>| EngineOptions {
            choice: super::super::EngineChoice::Kind(EngineKind::OpenVino),
            precision: Precision::Bf16,
            threads: None,
            confirm_band: band,
        };
        let exact = [0.5f32, 0.6, 0.7, 0.8].repeat(2);
        let low: Vec<f32> = exact
            .iter()
            .zip([4.0, -4.5, 3.5, -5.0].repeat(2))
            .map(|(&p, e)| sigmoid(logit(p) + e))
            .collect();
        // Thresholds 20 logits away: nothing near them.
        let far = vec![Some(1e-9f32); 8];
        let m = band_of_errors(
            EngineKind::OpenVino,
            Precision::Bf16,
            "t",
            &exact,
            &low,
            &far,
        )
        .unwrap();
        assert!(m.band > 9.0 && m.band <= 10.0, "{m:?}");
        assert_eq!(m.confirmed_share, Some(0.0));
        let kind = EngineKind::OpenVino;
        assert_eq!(band_in_force(Some(&m), kind, &bf16(None)).unwrap(), m.band);
        assert_eq!(
            band_in_force(Some(&m), kind, &bf16(Some(0.5))).unwrap(),
            0.5
        );
        assert_eq!(
            band_in_force(None, kind, &bf16(None)).unwrap(),
            DEFAULT_CONFIRM_BAND
        );
        let f32_options = EngineOptions {
            precision: Precision::F32,
            ..bf16(None)
        };
        assert_eq!(band_in_force(Some(&m), kind, &f32_options).unwrap(), 0.0);
        // At their own thresholds every image is near: the precision is refused, with the
        // figures, unless a band is given.
        let own: Vec<Option<f32>> = exact.iter().map(|&p| Some(p)).collect();
        let m = band_of_errors(
            EngineKind::OpenVino,
            Precision::Bf16,
            "t",
            &exact,
            &low,
            &own,
        )
        .unwrap();
        assert_eq!(m.confirmed_share, Some(1.0));
        let err = band_in_force(Some(&m), kind, &bf16(None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("100%") && err.contains("--precision f32"),
            "{err}"
        );
        assert!(err.contains(&format!("{:.2}", m.max)), "{err}");
        assert_eq!(
            band_in_force(Some(&m), kind, &bf16(Some(1.0))).unwrap(),
            1.0
        );
        // Measured on too few images, the share refuses nothing.
        let few = PrecisionBand { images: 2, ..m };
        assert_eq!(
            band_in_force(Some(&few), kind, &bf16(None)).unwrap(),
            few.band
        );
    }

    #[test]
    fn a_band_measured_on_other_instruction_sets_is_flagged_and_old_files_still_load() {
        let cpu = |model: &str, isa: &[&str]| HostCpu {
            model: model.into(),
            logical_cores: 2,
            isa: isa.iter().map(|f| f.to_string()).collect(),
        };
        let exact = vec![0.5f32; 10];
        let m = band_of_errors(
            EngineKind::OpenVino,
            Precision::Bf16,
            "test",
            &exact,
            &exact,
            &[None; 10],
        )
        .unwrap();
        let xeon = cpu(
            "Intel Xeon",
            &["avx2", "avx512f", "avx512_bf16", "amx_bf16"],
        );
        let epyc = cpu("AMD EPYC", &["avx2", "avx512f", "avx512_bf16"]);
        // Not recorded (a file from before): nothing to compare.
        assert_eq!(other_cpu(&m, &epyc), None);
        let on_xeon = PrecisionBand {
            measured_on: Some(xeon.clone()),
            ..m.clone()
        };
        let w = other_cpu(&on_xeon, &epyc).expect("AMX -> no AMX is flagged");
        assert!(
            w.contains("Intel Xeon") && w.contains("AMD EPYC, 2 logical cores"),
            "{w}"
        );
        assert!(
            w.contains("openvino bf16") && w.contains("--confirm-band"),
            "{w}"
        );
        // The same instruction sets under another name or core count: the same kernels.
        let other_xeon = HostCpu {
            logical_cores: 64,
            ..cpu(
                "Intel Xeon Gold",
                &["avx2", "avx512f", "avx512_bf16", "amx_bf16"],
            )
        };
        assert_eq!(other_cpu(&on_xeon, &other_xeon), None);
        assert_eq!(other_cpu(&on_xeon, &cpu("unknown aarch64", &[])), None);
        // Serialised with the CPU, read back; a file without the field reads as None.
        let json = serde_json::to_value(&on_xeon).unwrap();
        assert_eq!(json["measured_on"]["model"], "Intel Xeon");
        let back: PrecisionBand = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, on_xeon);
        let mut old = json;
        old.as_object_mut().unwrap().remove("measured_on");
        let back: PrecisionBand = serde_json::from_value(old).unwrap();
        assert_eq!(back.measured_on, None);
    }

    #[test]
    fn saturated_scores_count_as_large_finite_errors_and_nan_is_refused() {
        assert!(logit_error(1.0, 1.0) == 0.0);
        let e = logit_error(1.0, 0.5);
        assert!(e > 16.0 && e < 17.0, "{e}");
        let err = band_of_errors(
            EngineKind::OpenVino,
            Precision::Bf16,
            "test",
            &[0.5],
            &[f32::NAN],
            &[None],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a number"), "{err}");
    }
}
