//! The ONE decision rule (OK / defect) and the run-time choice of thresholds, shared by
//! `cras eval` (scores.csv, the report's figures at the threshold, the gallery), `cras predict`
//! and `cras serve`.
//!
//! Rule ([`decide`]), for an image score and the threshold in force for its class:
//! - no threshold (none stored, none given, or a non-finite one) -> [`Decision::NoThreshold`];
//! - a non-finite score (NaN, +inf, -inf) -> [`Decision::Defect`]: an image the model cannot
//!   score is never passed as good (fail safe); JSON outputs show such a score as `null`;
//! - otherwise `score >= threshold` -> [`Decision::Defect`], below -> [`Decision::Ok`].
//!
//! Thresholds ([`ThresholdChoice`]): the model's stored ones (per class, else global), one
//! override for every class, or per-class thresholds re-derived from the held-out normal
//! scores for a false-alarm rate ([`false_alarm_thresholds`]).
//!
//! Reduced precision ([`near_threshold`]): a bf16 engine's score is a screen; an image whose
//! score lies within a band of its threshold (in logits, where scores near 1 keep their
//! resolution) is re-scored in f32 before it is decided, so precision does not flip decisions
//! (see [`crate::infer::engine::graph_engine`]). The caller says which threshold is in force
//! for each image with a [`ThresholdOf`].

use crate::model::ModelMeta;
use crate::{Error, Result};

/// The verdict on one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Ok,
    Defect,
    /// No threshold is in force: only the score is reported.
    NoThreshold,
}

impl Decision {
    /// `Some(true)` for a defect, `Some(false)` for OK, None without a threshold.
    pub fn is_anomalous(self) -> Option<bool> {
        match self {
            Decision::Ok => Some(false),
            Decision::Defect => Some(true),
            Decision::NoThreshold => None,
        }
    }

    /// The word used in JSON and CSV outputs: "ok", "defect" or "no threshold".
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Ok => "ok",
            Decision::Defect => "defect",
            Decision::NoThreshold => "no threshold",
        }
    }
}

/// The decision for `score` at `threshold` (see the module documentation for the rule; the
/// comparison itself is [`crate::metrics::ranking::flags_defect`]).
pub fn decide(score: f32, threshold: Option<f32>) -> Decision {
    match threshold.filter(|t| t.is_finite()) {
        None => Decision::NoThreshold,
        Some(t) if crate::metrics::ranking::flags_defect(score, t) => Decision::Defect,
        Some(_) => Decision::Ok,
    }
}

/// The threshold in force for image `i` of a batch scored as class `k`: `(i, k) -> threshold`.
pub type ThresholdOf<'a> = &'a (dyn Fn(usize, usize) -> Option<f32> + Sync);

/// `ln(p / (1 - p))` in f64 (infinite at 0 and 1).
pub(crate) fn logit(p: f32) -> f64 {
    let p = f64::from(p);
    (p / (1.0 - p)).ln()
}

/// Whether `score` is too close to `threshold` to be decided on at reduced precision:
/// |logit(score) - logit(threshold)| < `band`, or the score is not a number. False without a
/// (finite) threshold: there is no decision to protect.
pub fn near_threshold(score: f32, threshold: Option<f32>, band: f32) -> bool {
    let Some(t) = threshold.filter(|t| t.is_finite()) else {
        return false;
    };
    if score.is_nan() {
        return true;
    }
    let (a, b) = (logit(score), logit(t));
    a == b || (a - b).abs() < f64::from(band)
}

/// Where the threshold of each class comes from at run time.
#[derive(Clone, Debug, PartialEq)]
pub enum ThresholdChoice {
    /// The model's calibrated thresholds (per class, else global); none if uncalibrated.
    Stored,
    /// One threshold for every class.
    Override(f32),
    /// One threshold per class, in the model's class order.
    PerClass(Vec<f32>),
}

impl ThresholdChoice {
    /// From the usual options: an override, else a false-alarm rate, else the stored ones.
    /// A non-finite override or a rate outside [0, 1] is an error naming the value.
    pub fn from_options(
        meta: &ModelMeta,
        threshold: Option<f32>,
        false_alarm_rate: Option<f64>,
    ) -> Result<Self> {
        match (threshold, false_alarm_rate) {
            (Some(t), _) if !t.is_finite() => {
                Err(Error::config("threshold", t, "must be a finite number"))
            }
            (Some(t), _) => Ok(Self::Override(t)),
            (None, Some(rate)) => Ok(Self::PerClass(false_alarm_thresholds(meta, rate)?)),
            (None, None) => Ok(Self::Stored),
        }
    }

    /// The threshold in force for class `k`, if any.
    pub fn for_class(&self, meta: &ModelMeta, k: usize) -> Option<f32> {
        match self {
            Self::Stored => meta.threshold(k),
            Self::Override(t) => Some(*t),
            Self::PerClass(v) => v.get(k).copied().or_else(|| meta.threshold(k)),
        }
    }

    /// True unless the thresholds are the model's stored ones.
    pub fn is_override(&self) -> bool {
        !matches!(self, Self::Stored)
    }
}

/// Per-class thresholds flagging at most `rate` of each class's held-out normal images (a class
/// without held-out images gets the threshold of all classes pooled).
pub fn false_alarm_thresholds(meta: &ModelMeta, rate: f64) -> Result<Vec<f32>> {
    let t = meta.thresholds.as_ref().ok_or_else(|| {
        Error::config(
            "false-alarm-rate",
            rate,
            "the model has no held-out normal scores (trained with --holdout 0)",
        )
    })?;
    let all: Vec<f32> = t.holdout_scores.iter().flatten().copied().collect();
    let global = crate::metrics::threshold::false_alarm_threshold(&all, rate)?;
    t.holdout_scores
        .iter()
        .map(|s| {
            if s.is_empty() {
                Ok(global)
            } else {
                crate::metrics::threshold::false_alarm_threshold(s, rate)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confirmation_band_is_measured_in_logits() {
        // 0.9996 and 0.9999 are 1.39 logits apart although 3e-4 apart as scores.
        assert!(near_threshold(0.9999, Some(0.9996), 2.0));
        assert!(!near_threshold(0.9999, Some(0.9996), 1.0));
        assert!(!near_threshold(0.5, Some(0.9996), 3.0));
        assert!(near_threshold(0.999, Some(0.9996), 3.0));
        // A score of exactly 1 is infinitely far from a threshold below 1, and at one of 1.
        assert!(!near_threshold(1.0, Some(0.9996), 3.0));
        assert!(near_threshold(1.0, Some(1.0), 3.0));
        assert!(near_threshold(f32::NAN, Some(0.5), 0.5));
        assert!(!near_threshold(0.5, None, 3.0));
        assert!(!near_threshold(0.5, Some(f32::NAN), 3.0));
        // A score exactly at its threshold is confirmed even with a zero band.
        assert!(near_threshold(0.5, Some(0.5), 0.0));
    }

    #[test]
    fn one_rule_for_every_score() {
        assert_eq!(decide(0.5, Some(0.5)), Decision::Defect);
        assert_eq!(decide(0.49, Some(0.5)), Decision::Ok);
        assert_eq!(decide(0.9, None), Decision::NoThreshold);
        assert_eq!(decide(0.9, Some(f32::NAN)), Decision::NoThreshold);
        assert_eq!(decide(f32::NAN, Some(0.5)), Decision::Defect);
        assert_eq!(decide(f32::INFINITY, Some(0.5)), Decision::Defect);
        assert_eq!(decide(f32::NEG_INFINITY, Some(0.5)), Decision::Defect);
        assert_eq!(decide(f32::NAN, None), Decision::NoThreshold);
        assert_eq!(Decision::Defect.is_anomalous(), Some(true));
        assert_eq!(Decision::NoThreshold.as_str(), "no threshold");
    }
}
