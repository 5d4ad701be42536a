//! The exact threshold sweep shared by every ranking metric.
//!
//! Scores (f32) are mapped to order-preserving u32 keys ([`score_key`]); negatives are kept as a
//! sorted `Vec<u32>` of keys and positives as a sorted `Vec<u64>` of `key << 32 | tag` (the tag
//! is a region id for AUPRO, 0 otherwise). [`walk_descending`] then visits every distinct score
//! once, from the highest down, with the number of negatives and the positives tied at it:
//! one sort with ties grouped, then cumulative sums. [`walk_coarse`] visits the same groups but
//! merges each run of negative-only scores into one visit (same metrics, far fewer steps). [`RankingSweep`] turns that walk into
//! AUROC, AP and F1max exactly as scikit-learn defines them (counts are integers; AUROC is
//! accumulated exactly in u128, AP and F1 in f64).

use super::radix::radix_sort_by_key;

/// Maps a finite or infinite f32 to a u32 whose unsigned order is the float order. `-0.0` and
/// `+0.0` map to the same key (they are equal scores). NaN must be rejected by the caller.
#[inline]
pub(crate) fn score_key(score: f32) -> u32 {
    let bits = (score + 0.0).to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// The inverse of [`score_key`].
#[inline]
pub(crate) fn key_score(key: u32) -> f32 {
    let bits = if key & 0x8000_0000 != 0 {
        key & 0x7fff_ffff
    } else {
        !key
    };
    f32::from_bits(bits)
}

/// Splits `(scores, labels)` into sorted negative keys and sorted positive `key << 32` entries.
/// None when the lengths differ or a score is NaN.
pub(crate) fn sorted_keys(scores: &[f32], labels: &[bool]) -> Option<(Vec<u32>, Vec<u64>)> {
    if scores.len() != labels.len() || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let n_pos = labels.iter().filter(|&&l| l).count();
    let mut neg = Vec::with_capacity(scores.len() - n_pos);
    let mut pos = Vec::with_capacity(n_pos);
    for (&s, &l) in scores.iter().zip(labels) {
        if l {
            pos.push((score_key(s) as u64) << 32);
        } else {
            neg.push(score_key(s));
        }
    }
    radix_sort_by_key(&mut neg, |&k| k);
    radix_sort_by_key(&mut pos, |&p| (p >> 32) as u32);
    Some((neg, pos))
}

/// Visits every distinct key of `neg` (ascending u32 keys) and `pos` (ascending `key << 32 | tag`)
/// from the highest key down: `visit(key, negatives_at_key, positives_at_key)`.
pub(crate) fn walk_descending(neg: &[u32], pos: &[u64], mut visit: impl FnMut(u32, u64, &[u64])) {
    let (mut i, mut j) = (neg.len(), pos.len());
    while i > 0 || j > 0 {
        let neg_top = if i > 0 { Some(neg[i - 1]) } else { None };
        let pos_top = if j > 0 {
            Some((pos[j - 1] >> 32) as u32)
        } else {
            None
        };
        let key = neg_top.max(pos_top).unwrap_or(0);
        let i_end = i;
        while i > 0 && neg[i - 1] == key {
            i -= 1;
        }
        let j_end = j;
        while j > 0 && (pos[j - 1] >> 32) as u32 == key {
            j -= 1;
        }
        visit(key, (i_end - i) as u64, &pos[j..j_end]);
    }
}

/// Smallest `idx <= end` such that `pred` holds for every entry of `sorted[idx..end]`, where
/// `pred` holds on a suffix of the ascending `sorted[..end]`: exponential steps down from
/// `end`, then a binary search, so the cost grows with the log of the distance moved.
fn gallop_down(sorted: &[u32], end: usize, pred: impl Fn(u32) -> bool) -> usize {
    let (mut hi, mut step) = (end, 1);
    let lo = loop {
        if hi < step {
            break 0;
        }
        let probe = hi - step;
        if pred(sorted[probe]) {
            hi = probe;
            step *= 2;
        } else {
            break probe;
        }
    };
    lo + sorted[lo..hi].partition_point(|&k| !pred(k))
}

/// Like [`walk_descending`], but every run of negatives between two positive keys is visited
/// once, as a single group with no positives (its key is the run's lowest). Metrics that only
/// accumulate on negative-only groups (AUROC, AP, F1max, AUPRO) are unchanged by this
/// coarsening, and the walk costs O(P log(N / P)) instead of O(N).
pub(crate) fn walk_coarse(neg: &[u32], pos: &[u64], mut visit: impl FnMut(u32, u64, &[u64])) {
    let (mut i, mut j) = (neg.len(), pos.len());
    while j > 0 {
        let key = (pos[j - 1] >> 32) as u32;
        let above = gallop_down(neg, i, |k| k > key);
        if above < i {
            visit(neg[above], (i - above) as u64, &[]);
        }
        let equal = gallop_down(neg, above, |k| k >= key);
        let j_end = j;
        while j > 0 && (pos[j - 1] >> 32) as u32 == key {
            j -= 1;
        }
        visit(key, (above - equal) as u64, &pos[j..j_end]);
        i = equal;
    }
    if i > 0 {
        visit(neg[0], i as u64, &[]);
    }
}

/// The best F1 over all thresholds of the precision-recall curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct F1Max {
    /// The maximum F1.
    pub f1: f64,
    /// The score threshold reaching it (anomalous iff score >= threshold); among equal F1 values
    /// the lowest threshold, as scikit-learn's argmax over its ascending thresholds picks.
    pub threshold: f32,
    /// Precision at that threshold.
    pub precision: f64,
    /// Recall at that threshold.
    pub recall: f64,
}

/// Accumulates AUROC, AP and F1max along a descending walk.
pub(crate) struct RankingSweep {
    n_pos: u64,
    n_neg: u64,
    tp: u64,
    fp: u64,
    /// Twice the ROC area in count units: sum of dfp * (tp_before + tp_after).
    auc_twice: u128,
    ap: f64,
    best: Option<F1Max>,
}

impl RankingSweep {
    pub(crate) fn new(n_pos: u64, n_neg: u64) -> Self {
        RankingSweep {
            n_pos,
            n_neg,
            tp: 0,
            fp: 0,
            auc_twice: 0,
            ap: 0.0,
            best: None,
        }
    }

    /// Adds the tie group at `key` with `d_neg` negatives and `d_pos` positives.
    #[inline]
    pub(crate) fn step(&mut self, key: u32, d_neg: u64, d_pos: u64) {
        let tp_before = self.tp;
        self.tp += d_pos;
        self.fp += d_neg;
        self.auc_twice += d_neg as u128 * (tp_before + self.tp) as u128;
        if d_pos == 0 {
            // Only negatives: AP gains nothing and F1 can only fall.
            return;
        }
        let precision = self.tp as f64 / (self.tp + self.fp) as f64;
        self.ap += d_pos as f64 / self.n_pos as f64 * precision;
        let f1 = 2.0 * self.tp as f64 / (self.tp + self.fp + self.n_pos) as f64;
        if self.best.is_none_or(|b| f1 >= b.f1) {
            self.best = Some(F1Max {
                f1,
                threshold: key_score(key),
                precision,
                recall: self.tp as f64 / self.n_pos as f64,
            });
        }
    }

    /// AUROC: None unless both classes are present.
    pub(crate) fn auroc(&self) -> Option<f64> {
        (self.n_pos > 0 && self.n_neg > 0)
            .then(|| self.auc_twice as f64 / (2.0 * self.n_pos as f64 * self.n_neg as f64))
    }

    /// AP: None without positives (scikit-learn warns and returns a meaningless 0 there).
    pub(crate) fn average_precision(&self) -> Option<f64> {
        (self.n_pos > 0).then_some(self.ap)
    }

    /// F1max: None without positives.
    pub(crate) fn f1_max(&self) -> Option<F1Max> {
        self.best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_preserve_order_and_round_trip() {
        let values = [
            f32::NEG_INFINITY,
            -3.5e30,
            -1.0,
            -1e-40,
            0.0,
            1e-40,
            0.25,
            1.0,
            7e20,
            f32::INFINITY,
        ];
        for w in values.windows(2) {
            assert!(score_key(w[0]) < score_key(w[1]), "{} vs {}", w[0], w[1]);
        }
        for &v in &values {
            assert_eq!(key_score(score_key(v)), v);
        }
        assert_eq!(score_key(-0.0), score_key(0.0));
    }

    #[test]
    fn coarse_walk_gives_the_same_metrics_as_the_full_walk() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(3);
        for levels in [4u32, 50, 1 << 20] {
            let labels: Vec<bool> = (0..3000).map(|_| rng.gen_bool(0.2)).collect();
            let scores: Vec<f32> = labels
                .iter()
                .map(|&l| (rng.gen_range(0..levels) + l as u32 * levels / 4) as f32)
                .collect();
            let (neg, pos) = sorted_keys(&scores, &labels).unwrap();
            let run = |coarse: bool| {
                let mut s = RankingSweep::new(pos.len() as u64, neg.len() as u64);
                let mut total = 0;
                let mut f = |k, n, p: &[u64]| {
                    total += n + p.len() as u64;
                    s.step(k, n, p.len() as u64)
                };
                if coarse {
                    walk_coarse(&neg, &pos, &mut f);
                } else {
                    walk_descending(&neg, &pos, &mut f);
                }
                assert_eq!(total, 3000);
                (s.auroc(), s.average_precision(), s.f1_max())
            };
            assert_eq!(run(true), run(false), "levels {levels}");
        }
    }

    #[test]
    fn walk_groups_ties_across_both_classes() {
        let (neg, pos) = sorted_keys(&[0.5, 0.1, 0.5, 0.9], &[false, false, true, true]).unwrap();
        let mut groups = Vec::new();
        walk_descending(&neg, &pos, |k, n, p| {
            groups.push((key_score(k), n, p.len()))
        });
        assert_eq!(groups, vec![(0.9, 0, 1), (0.5, 1, 1), (0.1, 1, 0)]);
    }
}
