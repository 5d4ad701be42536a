//! Exact ranking metrics on (score, label) pairs: AUROC, average precision, F1max, the ROC and
//! PR curves, and the confusion counts at one threshold.
//!
//! Inputs: `scores: &[f32]` and `labels: &[bool]` (true = anomalous / positive) of equal length.
//! Every function sorts once with ties grouped and sweeps cumulative counts (see
//! `metrics::sweep`); the values match scikit-learn's `roc_auc_score`,
//! `average_precision_score` (step sum, no interpolation) and `precision_recall_curve`.
//! Undefined cases return None instead of panicking or producing NaN: mismatched lengths, a
//! NaN score, AUROC / ROC curve without both classes, AP / F1max / PR curve without positives.
//! Constant scores with both classes are defined (AUROC 0.5, AP = positive fraction).

pub use super::sweep::F1Max;
use super::sweep::{sorted_keys, walk_coarse, walk_descending, RankingSweep};

fn sweep(scores: &[f32], labels: &[bool]) -> Option<RankingSweep> {
    let (neg, pos) = sorted_keys(scores, labels)?;
    let mut sweep = RankingSweep::new(pos.len() as u64, neg.len() as u64);
    walk_coarse(&neg, &pos, |key, d_neg, d_pos| {
        sweep.step(key, d_neg, d_pos.len() as u64)
    });
    Some(sweep)
}

/// Area under the ROC curve (trapezoids through every distinct threshold, ties as one step),
/// as `sklearn.metrics.roc_auc_score`. None without both classes.
pub fn auroc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    sweep(scores, labels)?.auroc()
}

/// Average precision, `sum_k (R_k - R_{k-1}) P_k` over distinct thresholds, as
/// `sklearn.metrics.average_precision_score`. None without positives.
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Option<f64> {
    sweep(scores, labels)?.average_precision()
}

/// The maximum of `2PR / (P + R)` over the thresholds of the precision-recall curve (points
/// with P + R = 0 count as F1 = 0). None without positives.
pub fn f1_max(scores: &[f32], labels: &[bool]) -> Option<F1Max> {
    sweep(scores, labels)?.f1_max()
}

/// The ROC curve as `(fpr, tpr)` points: `(0, 0)` then one point per distinct score, from the
/// highest down (so ending at `(1, 1)`). No collinear points are dropped. None without both
/// classes.
pub fn roc_curve(scores: &[f32], labels: &[bool]) -> Option<Vec<(f64, f64)>> {
    let (neg, pos) = sorted_keys(scores, labels)?;
    if neg.is_empty() || pos.is_empty() {
        return None;
    }
    let (n_neg, n_pos) = (neg.len() as f64, pos.len() as f64);
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0u64, 0u64);
    walk_descending(&neg, &pos, |_, d_neg, d_pos| {
        fp += d_neg;
        tp += d_pos.len() as u64;
        points.push((fp as f64 / n_neg, tp as f64 / n_pos));
    });
    Some(points)
}

/// The precision-recall curve as `(recall, precision)` points: `(0, 1)` then one point per
/// distinct score, from the highest down (scikit-learn's arrays, reversed). None without
/// positives.
pub fn pr_curve(scores: &[f32], labels: &[bool]) -> Option<Vec<(f64, f64)>> {
    let (neg, pos) = sorted_keys(scores, labels)?;
    if pos.is_empty() {
        return None;
    }
    let n_pos = pos.len() as f64;
    let mut points = vec![(0.0, 1.0)];
    let (mut tp, mut fp) = (0u64, 0u64);
    walk_descending(&neg, &pos, |_, d_neg, d_pos| {
        fp += d_neg;
        tp += d_pos.len() as u64;
        points.push((tp as f64 / n_pos, tp as f64 / (tp + fp) as f64));
    });
    Some(points)
}

/// The ONE decision rule at a threshold: a score is flagged anomalous (a defect) when it is
/// not finite (NaN, +inf, -inf: an image the model cannot score is never passed as good) or
/// when `score >= threshold`. The inference layer's `decide` and [`confusion_at`] both apply it.
pub fn flags_defect(score: f32, threshold: f32) -> bool {
    !score.is_finite() || score >= threshold
}

/// Confusion counts and rates at one threshold (anomalous per [`flags_defect`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Confusion {
    /// tp / (tp + fp); None when nothing is predicted anomalous.
    pub precision: Option<f64>,
    /// tp / (tp + fn); None when there are no positives.
    pub recall: Option<f64>,
    /// 2tp / (2tp + fp + fn); None when that denominator is 0 (no positives, none predicted).
    pub f1: Option<f64>,
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    pub fn_: usize,
}

/// Counts at `threshold` (anomalous per [`flags_defect`]: `score >= threshold`, or a
/// non-finite score). Extra entries of the longer slice are ignored.
pub fn confusion_at(scores: &[f32], labels: &[bool], threshold: f32) -> Confusion {
    let predicted: Vec<bool> = scores.iter().map(|&s| flags_defect(s, threshold)).collect();
    confusion(&predicted, labels)
}

/// The confusion counts of `predicted` (true = flagged anomalous) against `labels`.
pub fn confusion(predicted: &[bool], labels: &[bool]) -> Confusion {
    let (mut tp, mut fp, mut tn, mut fn_) = (0usize, 0usize, 0usize, 0usize);
    for (&s, &l) in predicted.iter().zip(labels) {
        match (s, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let ratio = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
    Confusion {
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        f1: ratio(2 * tp, 2 * tp + fp + fn_),
        tp,
        fp,
        tn,
        fn_,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// O(n^2) Mann-Whitney statistic: P(score_pos > score_neg) + 0.5 P(equal).
    fn pairwise_auroc(scores: &[f32], labels: &[bool]) -> f64 {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (i, &li) in labels.iter().enumerate() {
            for (j, &lj) in labels.iter().enumerate() {
                if li && !lj {
                    pairs += 1.0;
                    if scores[i] > scores[j] {
                        wins += 1.0;
                    } else if scores[i] == scores[j] {
                        wins += 0.5;
                    }
                }
            }
        }
        wins / pairs
    }

    #[test]
    fn auroc_equals_pairwise_statistic_with_ties() {
        let scores = [0.1, 0.4, 0.4, 0.35, 0.8, 0.4, 0.1, 0.9, 0.0, 0.35];
        let labels = [
            false, true, false, true, true, false, true, false, false, true,
        ];
        let got = auroc(&scores, &labels).unwrap();
        assert!((got - pairwise_auroc(&scores, &labels)).abs() < 1e-12);
    }

    #[test]
    fn undefined_cases_are_none_and_constant_scores_are_defined() {
        assert_eq!(auroc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(auroc(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(average_precision(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(f1_max(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(auroc(&[0.1, f32::NAN], &[true, false]), None);
        assert_eq!(auroc(&[0.1], &[true, false]), None);
        assert_eq!(auroc(&[0.5; 4], &[true, false, true, false]), Some(0.5));
        assert_eq!(
            average_precision(&[0.5; 4], &[true, false, false, false]),
            Some(0.25)
        );
        assert_eq!(average_precision(&[0.3, 0.1], &[true, true]), Some(1.0));
    }

    #[test]
    fn f1_max_picks_best_threshold() {
        // Threshold 0.7 gives tp 2, fp 0, fn 1: F1 = 4/5; 0.2 gives tp 3, fp 1: F1 = 6/7.
        let scores = [0.9, 0.7, 0.5, 0.2, 0.1];
        let labels = [true, true, false, true, false];
        let best = f1_max(&scores, &labels).unwrap();
        assert!((best.f1 - 6.0 / 7.0).abs() < 1e-12);
        assert_eq!(best.threshold, 0.2);
        assert!((best.precision - 0.75).abs() < 1e-12 && best.recall == 1.0);
        let c = confusion_at(&scores, &labels, best.threshold);
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (3, 1, 1, 0));
        assert!((c.f1.unwrap() - best.f1).abs() < 1e-12);
    }

    #[test]
    fn a_non_finite_score_counts_as_a_defect_as_in_every_decision() {
        let scores = [f32::NAN, f32::NEG_INFINITY, 0.1, 0.9, f32::INFINITY];
        let labels = [true, false, false, true, false];
        let c = confusion_at(&scores, &labels, 0.5);
        assert_eq!((c.tp, c.fp, c.tn, c.fn_), (2, 2, 1, 0));
        assert!(flags_defect(f32::NAN, 0.5) && flags_defect(0.5, 0.5) && !flags_defect(0.4, 0.5));
    }

    #[test]
    fn curves_start_and_end_at_their_corners() {
        let scores = [0.9, 0.7, 0.7, 0.2];
        let labels = [true, false, true, false];
        let roc = roc_curve(&scores, &labels).unwrap();
        assert_eq!(roc, vec![(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]);
        let pr = pr_curve(&scores, &labels).unwrap();
        assert_eq!(pr[0], (0.0, 1.0));
        assert_eq!(pr[2], (1.0, 2.0 / 3.0));
        let c = confusion_at(&scores, &labels, 2.0);
        assert_eq!((c.precision, c.recall, c.f1), (None, Some(0.0), Some(0.0)));
    }
}
