//! Scoring: patch descriptors to predictions, with a trained head (inference, evaluation,
//! threshold calibration and the test-set probe all score here; none calls the training step).
//!
//! Input: descriptors g [B, P, D], a [`HeadRef`] (adaptor, discriminator in evaluation mode,
//! center bank), the model's [`Ablation`] flags and a [`ClassChoice`]. Per image: adaptor
//! f [P, D] -> class by global match (or stated, or the batch's vote) -> local alignment
//! R [P, D] ([`crate::model::CenterBank::align`]) -> discriminator on `[f ; f - R]` -> patch
//! scores `[P]` (both [`HeadRef::score_adapted`]) -> image score = max patch score. Output: one [`Prediction`] per image, in order.

use candle_core::Tensor;

use crate::model::{Ablation, HeadRef};
use crate::{Error, Result};

/// How the class of each image is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassChoice {
    /// Per-image global match against every class's center map (our default).
    Match,
    /// The caller states each image's class (one index per image).
    Stated(Vec<usize>),
    /// The reference's test protocol: every image gets the batch's majority match (parity only).
    BatchVote,
}

/// The result for one image.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// Class index used for alignment.
    pub class: usize,
    /// Class index of the global match (equal to `class` unless the class was stated or voted).
    pub matched: usize,
    /// Cosine similarity of the image's feature map with the matched class's center map.
    pub class_similarity: f32,
    /// Image anomaly score: the maximum patch score.
    pub score: f32,
    /// Patch scores [grid * grid], row-major.
    pub patch_scores: Vec<f32>,
    /// The anomaly map [S * S] when the engine computed it (exported graphs do); otherwise
    /// [`crate::infer::Predictor::anomaly_map`] computes it from the patch scores.
    pub map: Option<Vec<f32>>,
}

/// The classes used for alignment, from the matched ones and the caller's choice.
pub(crate) fn classes_for(
    choice: &ClassChoice,
    matched: &[usize],
    n_classes: usize,
) -> Result<Vec<usize>> {
    let b = matched.len();
    Ok(match choice {
        ClassChoice::Match => matched.to_vec(),
        ClassChoice::Stated(c) => {
            if c.len() != b {
                return Err(Error::Other(format!(
                    "{} stated classes for {b} images",
                    c.len()
                )));
            }
            if let Some(&bad) = c.iter().find(|&&k| k >= n_classes) {
                return Err(Error::config("class index", bad, "out of range"));
            }
            c.clone()
        }
        ClassChoice::BatchVote => vec![batch_vote(matched, n_classes); b],
    })
}

/// The majority class of `matched`; among ties the smallest index (as `torch.mode`).
pub fn batch_vote(matched: &[usize], n_classes: usize) -> usize {
    let mut counts = vec![0usize; n_classes];
    for &k in matched {
        if let Some(c) = counts.get_mut(k) {
            *c += 1;
        }
    }
    (0..counts.len())
        .max_by_key(|&k| (counts[k], std::cmp::Reverse(k)))
        .unwrap_or(0)
}

/// Scores descriptors g [B, P, D] with `head` wired per `ablation`.
pub fn score_descriptors(
    head: HeadRef<'_>,
    ablation: Ablation,
    g: &Tensor,
    choice: &ClassChoice,
) -> Result<Vec<Prediction>> {
    let (b, p, d) = g.dims3()?;
    // Every matrix product runs on one image at a time: gemm's blocking (and so its rounding)
    // depends on the number of rows, and an image's score must not depend on its batch
    // (served, batched and single predictions agree bit for bit).
    let f: Vec<Tensor> = (0..b)
        .map(|i| -> Result<Tensor> {
            Ok(head
                .adaptor
                .forward(&g.get(i)?.reshape((p, d))?)?
                .reshape((1, p, d))?)
        })
        .collect::<Result<_>>()?;
    let (mut matched, mut sims) = (Vec::with_capacity(b), Vec::with_capacity(b));
    for fi in &f {
        let (m, s) = head.bank.global_match(fi)?;
        matched.extend(m);
        sims.extend(s);
    }
    let classes = classes_for(choice, &matched, head.bank.classes())?;
    let mut out = Vec::with_capacity(b);
    for (i, fi) in f.iter().enumerate() {
        let patch_scores = head.score_adapted(fi, &classes[i..=i], ablation)?;
        out.push(Prediction {
            class: classes[i],
            matched: matched[i],
            class_similarity: sims[i],
            score: patch_scores
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max),
            patch_scores,
            map: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_vote_takes_the_majority_and_the_smallest_among_ties() {
        assert_eq!(batch_vote(&[2, 1, 2, 0], 3), 2);
        assert_eq!(batch_vote(&[1, 0, 1, 0], 3), 0);
        assert_eq!(
            classes_for(&ClassChoice::BatchVote, &[2, 1, 2], 3).unwrap(),
            vec![2, 2, 2]
        );
        assert!(classes_for(&ClassChoice::Stated(vec![3]), &[0], 3).is_err());
        assert!(classes_for(&ClassChoice::Stated(vec![0, 0]), &[0], 3).is_err());
    }
}
