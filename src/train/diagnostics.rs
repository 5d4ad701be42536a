//! What an epoch of training looked like beyond its mean loss, for comparing runs (issue 25's
//! instruments): the distribution of the discriminator's scores of true and synthetic patches,
//! and how many patches moved to another center since the previous epoch.
//!
//! Input: every step's [`StepDetail`] (scores `[B*P]`, centers `[B*P]`) with the cached image
//! indices of its batch. Output: a [`ScoreSummary`] per kind of patch and the share of patches
//! (over all N images x P positions) whose aligned center differs from the previous epoch's.
//! Reading the figures changes nothing in training.

use crate::metrics::threshold::quantile_threshold;
use crate::model::step::StepDetail;
use crate::{Error, Result};

/// The quantiles a [`ScoreSummary`] reports.
pub const SUMMARY_QUANTILES: [f64; 5] = [0.05, 0.25, 0.5, 0.75, 0.95];

/// Mean and the [`SUMMARY_QUANTILES`] (linear interpolation, as numpy's) of a set of scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScoreSummary {
    pub mean: f64,
    pub q: [f64; 5],
}

impl ScoreSummary {
    /// Summary of `scores` (at least one, none NaN).
    pub fn of(scores: &[f32]) -> Result<Self> {
        if scores.is_empty() {
            return Err(Error::Other("no scores to summarise".into()));
        }
        let mean = scores.iter().map(|&v| v as f64).sum::<f64>() / scores.len() as f64;
        let mut q = [0.0; 5];
        for (slot, &level) in q.iter_mut().zip(SUMMARY_QUANTILES.iter()) {
            *slot = quantile_threshold(scores, level)? as f64;
        }
        Ok(Self { mean, q })
    }
}

/// Collects one epoch's step details.
pub struct EpochDiagnostics {
    rows: usize,
    true_scores: Vec<f32>,
    fake_scores: Vec<f32>,
    /// Center of each (image, position), image-major; `u32::MAX` until seen.
    centers: Vec<u32>,
    searched: bool,
}

impl EpochDiagnostics {
    /// For an epoch over `images` cached images of `rows` patches each.
    pub fn new(images: usize, rows: usize) -> Self {
        Self {
            rows,
            true_scores: Vec::with_capacity(images * rows),
            fake_scores: Vec::with_capacity(images * rows),
            centers: vec![u32::MAX; images * rows],
            searched: false,
        }
    }

    /// Adds the step over cached images `chunk` (in batch order).
    pub fn add(&mut self, chunk: &[usize], detail: &StepDetail) -> Result<()> {
        self.true_scores.extend_from_slice(&detail.true_scores);
        self.fake_scores.extend_from_slice(&detail.fake_scores);
        let Some(centers) = &detail.centers else {
            return Ok(());
        };
        if centers.len() != chunk.len() * self.rows {
            return Err(Error::Other(format!(
                "{} center indices for {} images of {} patches",
                centers.len(),
                chunk.len(),
                self.rows
            )));
        }
        self.searched = true;
        for (&image, row) in chunk.iter().zip(centers.chunks(self.rows)) {
            let at = image * self.rows;
            self.centers[at..at + self.rows].copy_from_slice(row);
        }
        Ok(())
    }

    /// The score summaries of the true and the synthetic patches (`None` for an empty epoch).
    pub fn scores(&self) -> Result<Option<(ScoreSummary, ScoreSummary)>> {
        if self.true_scores.is_empty() || self.fake_scores.is_empty() {
            return Ok(None);
        }
        Ok(Some((
            ScoreSummary::of(&self.true_scores)?,
            ScoreSummary::of(&self.fake_scores)?,
        )))
    }

    /// The epoch's center of every (image, position), if center search ran.
    pub fn into_centers(self) -> Option<Vec<u32>> {
        self.searched.then_some(self.centers)
    }
}

/// Share of (image, position) pairs whose center differs between two epochs' assignments.
pub fn share_changed(before: &[u32], after: &[u32]) -> Option<f64> {
    if before.len() != after.len() || before.is_empty() {
        return None;
    }
    let moved = before.iter().zip(after).filter(|(a, b)| a != b).count();
    Some(moved as f64 / before.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(t: &[f32], f: &[f32], c: Option<&[u32]>) -> StepDetail {
        StepDetail {
            true_scores: t.to_vec(),
            fake_scores: f.to_vec(),
            centers: c.map(|c| c.to_vec()),
        }
    }

    #[test]
    fn summary_matches_numpy_quantiles() {
        // numpy.quantile([0, 1, ..., 10], [.05, .25, .5, .75, .95]) = [0.5, 2.5, 5, 7.5, 9.5]
        let v: Vec<f32> = (0..=10).map(|i| i as f32).collect();
        let s = ScoreSummary::of(&v).unwrap();
        assert_eq!(s.q, [0.5, 2.5, 5.0, 7.5, 9.5]);
        assert_eq!(s.mean, 5.0);
        assert!(ScoreSummary::of(&[]).is_err());
    }

    #[test]
    fn centers_land_at_their_images_whatever_the_batch_order() {
        // 3 images of 2 patches, seen in the order 2, 0 | 1.
        let mut a = EpochDiagnostics::new(3, 2);
        a.add(&[2, 0], &detail(&[0.1; 4], &[0.9; 4], Some(&[5, 6, 1, 2])))
            .unwrap();
        a.add(&[1], &detail(&[0.2; 2], &[0.8; 2], Some(&[3, 4])))
            .unwrap();
        let (t, f) = a.scores().unwrap().unwrap();
        assert!((t.mean - (0.1 * 4.0 + 0.2 * 2.0) / 6.0).abs() < 1e-6);
        assert!((f.q[4] - 0.9).abs() < 1e-6);
        let first = a.into_centers().unwrap();
        assert_eq!(first, vec![1, 2, 3, 4, 5, 6]);
        // The next epoch in another order, one patch of image 1 moved.
        let mut b = EpochDiagnostics::new(3, 2);
        b.add(
            &[0, 1, 2],
            &detail(&[0.0; 6], &[1.0; 6], Some(&[1, 2, 3, 0, 5, 6])),
        )
        .unwrap();
        let second = b.into_centers().unwrap();
        assert_eq!(share_changed(&first, &second), Some(1.0 / 6.0));
        assert_eq!(share_changed(&first, &first), Some(0.0));
        assert_eq!(share_changed(&first, &second[..4]), None);
    }

    #[test]
    fn without_center_search_there_is_no_assignment() {
        let mut a = EpochDiagnostics::new(1, 2);
        a.add(&[0], &detail(&[0.1, 0.2], &[0.7, 0.8], None))
            .unwrap();
        assert!(a.into_centers().is_none());
        let mut bad = EpochDiagnostics::new(2, 2);
        assert!(bad
            .add(&[0, 1], &detail(&[0.1; 4], &[0.9; 4], Some(&[1, 2, 3])))
            .is_err());
    }
}
