//! Decision-threshold calibration from the scores of normal (defect-free) images.
//!
//! Input: `normal_scores: &[f32]`, one score per normal image (or pixel); no NaN. Output: an
//! f32 threshold for the rule "anomalous iff score >= threshold". Empty input, a NaN score or
//! a level outside its range is a [`crate::Error::Config`] naming the value.

use crate::{Error, Result};

fn sorted_normals(normal_scores: &[f32]) -> Result<Vec<f32>> {
    if normal_scores.is_empty() {
        return Err(Error::config(
            "normal_scores",
            "[]",
            "threshold calibration needs at least one normal score",
        ));
    }
    if let Some(i) = normal_scores.iter().position(|s| s.is_nan()) {
        return Err(Error::config(
            &format!("normal_scores[{i}]"),
            "NaN",
            "scores must be numbers",
        ));
    }
    let mut sorted = normal_scores.to_vec();
    sorted.sort_unstable_by(f32::total_cmp);
    Ok(sorted)
}

/// The `q`-quantile of the normal scores with linear interpolation between order statistics
/// (`numpy.quantile`'s default): position `(n - 1) q`, computed in f64. `q` must be in (0, 1).
pub fn quantile_threshold(normal_scores: &[f32], q: f64) -> Result<f32> {
    if !(q > 0.0 && q < 1.0) {
        return Err(Error::config(
            "quantile",
            q,
            "must be strictly between 0 and 1 (e.g. 0.99)",
        ));
    }
    let sorted = sorted_normals(normal_scores)?;
    let pos = (sorted.len() - 1) as f64 * q;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let (a, b) = (sorted[lo] as f64, sorted[hi] as f64);
    let value = if a == b {
        a
    } else {
        a + (b - a) * (pos - lo as f64)
    };
    Ok(value as f32)
}

/// The smallest f32 threshold `t` with `P(normal >= t) <= rate`, i.e. at most
/// `floor(rate * n)` normal scores at or above `t`: the next f32 above the
/// `(floor(rate * n) + 1)`-th largest normal score. `rate` must be in [0, 1).
pub fn false_alarm_threshold(normal_scores: &[f32], rate: f64) -> Result<f32> {
    if !(0.0..1.0).contains(&rate) {
        return Err(Error::config(
            "false_alarm_rate",
            rate,
            "must be in [0, 1) (e.g. 0.01 for 1% false alarms on normal images)",
        ));
    }
    let sorted = sorted_normals(normal_scores)?;
    let allowed = (rate * sorted.len() as f64).floor() as usize;
    let boundary = sorted[sorted.len() - 1 - allowed];
    Ok(boundary.next_up())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates_like_numpy() {
        let s = [4.0, 1.0, 3.0, 2.0, 5.0];
        // numpy.quantile([1,2,3,4,5], 0.9) = 4.6; 0.5 -> 3.
        assert!((quantile_threshold(&s, 0.9).unwrap() - 4.6).abs() < 1e-6);
        assert_eq!(quantile_threshold(&s, 0.5).unwrap(), 3.0);
        assert_eq!(quantile_threshold(&[7.0], 0.99).unwrap(), 7.0);
    }

    #[test]
    fn false_alarm_threshold_bounds_the_rate() {
        let s: Vec<f32> = (0..100).map(|i| (i % 50) as f32).collect(); // every value twice
        for rate in [0.0, 0.01, 0.02, 0.05, 0.5, 0.99] {
            let t = false_alarm_threshold(&s, rate).unwrap();
            let above = s.iter().filter(|&&v| v >= t).count();
            assert!(
                above as f64 <= rate * 100.0,
                "rate {rate}: {above} above {t}"
            );
            // Lowering t to the previous score would break the bound.
            let below = t.next_down();
            let above_lower = s.iter().filter(|&&v| v >= below).count();
            assert!(
                above_lower as f64 > rate * 100.0,
                "rate {rate}: not minimal"
            );
        }
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let err = quantile_threshold(&[], 0.5).unwrap_err().to_string();
        assert!(err.contains("at least one"), "{err}");
        let err = quantile_threshold(&[1.0], 1.0).unwrap_err().to_string();
        assert!(err.contains("quantile = 1"), "{err}");
        assert!(quantile_threshold(&[1.0], 0.0).is_err());
        assert!(false_alarm_threshold(&[1.0], 1.0).is_err());
        assert!(false_alarm_threshold(&[1.0], -0.1).is_err());
        let err = false_alarm_threshold(&[1.0, f32::NAN], 0.1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("normal_scores[1]"), "{err}");
    }
}
