//! Scoring of tiled models ([`crate::data::Tiling`]): the inference half of tiling, all of it
//! ([`TileGeometry::predict`]): per-tile predictions to one prediction per image. (The data half,
//! window geometry and the tiles' views, is [`crate::data::tiling`].)
//!
//! Input: the T tiles of each of B images, scored as ordinary inputs `[B * T, 3, S, S]` (each a
//! [`Prediction`] with its `[S, S]` map). Per image:
//! - class: with the global match, every tile votes with its own match and the image takes the
//!   majority (ties: the smallest index, as [`batch_vote`]); tiles that matched another class are
//!   scored again aligned with the image's class, so every tile of an image is aligned with the
//!   same class. A stated class applies to all the image's tiles. With per-tile centers
//!   ([`Tiling::centers_per_tile`]) a tile's bank row is `class * T + tile`: its match votes for
//!   `row / T`, and a tile is scored again unless it matched its own position's row.
//! - image score: the maximum over its tiles (so the maximum patch score of the image);
//! - map `[N, N]` (N = the working side): each tile's map resized bilinearly to the tile's window
//!   and the windows averaged where they overlap ([`blend`]);
//! - patch scores: the tiles' patch scores one after the other, `[T, g, g]`;
//! - class similarity: the mean over its tiles.
//!
//! By default the center bank is shared by all tile positions: one `[P, D]` center map per class,
//! the mean over every tile of the class's training images (see the README, "High-resolution
//! images").

use candle_core::Tensor;

use super::decision::ThresholdOf;
use super::scoring::{batch_vote, ClassChoice, Prediction};
use crate::data::loader::select_rows;
use crate::data::Tiling;
use crate::maps::{map_of, upsample_bilinear};
use crate::{Error, Result};

/// Network inputs scored in one pass (whole images of tiles; at least one image).
pub const TILES_PER_PASS: usize = 64;

/// The scoring of network inputs `[N, 3, S, S]`, one prediction per input (the predictor's
/// engine), with the threshold in force for input i scored with bank row r.
pub type ScoreInputs<'a> =
    &'a dyn Fn(&Tensor, &ClassChoice, ThresholdOf<'_>) -> Result<Vec<Prediction>>;

/// A tiled model's geometry as its scoring needs it.
#[derive(Clone, Copy, Debug)]
pub struct TileGeometry {
    pub tiling: Tiling,
    /// Number of classes of the model.
    pub classes: usize,
    /// Side of a tile's patch grid.
    pub grid: usize,
    /// The network's input side S (a tile's side after resizing).
    pub side: usize,
}

impl TileGeometry {
    /// Scores the tiles of B images, `[B * T, 3, S, S]` (each image's tiles in a row), with
    /// `score`, and returns one prediction per image (see the module docs): a first pass over
    /// every tile, a second over the tiles aligned with another class than their image's vote,
    /// then [`combine`]. `threshold_of(i, k)` is the threshold of image i scored as class k.
    pub fn predict(
        &self,
        images: &Tensor,
        choice: &ClassChoice,
        threshold_of: ThresholdOf,
        score: ScoreInputs,
    ) -> Result<Vec<Prediction>> {
        let tiling = &self.tiling;
        let t = tiling.count();
        let n = images.dim(0)?;
        if n % t != 0 {
            return Err(Error::Other(format!(
                "{n} inputs are not whole images of {t} tiles each"
            )));
        }
        if let ClassChoice::Stated(c) = choice {
            if c.len() != n / t {
                return Err(Error::Other(format!(
                    "{} stated classes for {} images",
                    c.len(),
                    n / t
                )));
            }
        }
        // Thresholds are per class; a bank row r belongs to class r / rows.
        let rows = tiling.center_rows_per_class();
        let per_tile = |i: usize, r: usize| threshold_of(i / t, r / rows);
        let mut tiles = self.first_pass(images, choice, &per_tile, score)?;
        let (votes, again) = tile_votes(&tiles, tiling, self.classes, choice);
        rescore(images, &again, &mut tiles, &per_tile, score)?;
        combine(tiles, &votes, tiling, self.grid, self.side)
    }

    /// Every tile scored once, with the per-tile rows of [`tile_choice`]. At most
    /// [`TILES_PER_PASS`] inputs at a time (whole images), so that memory does not grow with the
    /// batch times the tile count; a batch vote needs every tile in one pass.
    fn first_pass(
        &self,
        images: &Tensor,
        choice: &ClassChoice,
        per_tile: ThresholdOf,
        score: ScoreInputs,
    ) -> Result<Vec<Prediction>> {
        let n = images.dim(0)?;
        let t = self.tiling.count();
        let tile_choice = tile_choice(choice, &self.tiling);
        let step = match tile_choice {
            ClassChoice::BatchVote => n,
            _ => (TILES_PER_PASS / t).max(1) * t,
        };
        let mut tiles = Vec::with_capacity(n);
        for start in (0..n).step_by(step.max(1)) {
            let len = step.min(n - start);
            let part = match &tile_choice {
                ClassChoice::Stated(c) => ClassChoice::Stated(c[start..start + len].to_vec()),
                other => other.clone(),
            };
            tiles.extend(score(&images.narrow(0, start, len)?, &part, &|i, r| {
                per_tile(start + i, r)
            })?);
        }
        Ok(tiles)
    }
}

/// Scores the tiles `again` (global index, bank row) once more, aligned with their row, and
/// puts the new predictions in `tiles`.
fn rescore(
    images: &Tensor,
    again: &[(usize, usize)],
    tiles: &mut [Prediction],
    per_tile: ThresholdOf,
    score: ScoreInputs,
) -> Result<()> {
    for part in again.chunks(TILES_PER_PASS) {
        let idx: Vec<usize> = part.iter().map(|&(i, _)| i).collect();
        let rescored = score(
            &select_rows(images, &idx)?,
            &ClassChoice::Stated(part.iter().map(|&(_, r)| r).collect()),
            &|j, r| per_tile(idx[j], r),
        )?;
        for (&i, p) in idx.iter().zip(rescored) {
            tiles[i] = p;
        }
    }
    Ok(())
}

/// The first pass's per-tile choice of bank rows, from a per-image class choice.
pub fn tile_choice(choice: &ClassChoice, tiling: &Tiling) -> ClassChoice {
    let t = tiling.count();
    match choice {
        ClassChoice::Stated(c) => ClassChoice::Stated(
            c.iter()
                .flat_map(|&k| (0..t).map(move |j| tiling.center_row(k, j)))
                .collect(),
        ),
        // Per-tile rows cannot all take one voted row: match first, vote per batch after.
        ClassChoice::BatchVote if tiling.centers_per_tile => ClassChoice::Match,
        other => other.clone(),
    }
}

/// Per image, the class its tiles vote for (stated: the stated class; batch vote: the batch's
/// majority), and the tiles (global indices) to score again with their center row, paired with
/// it: every tile whose first-pass row is not its image class's row for its position.
pub fn tile_votes(
    tiles: &[Prediction],
    tiling: &Tiling,
    n_classes: usize,
    choice: &ClassChoice,
) -> (Vec<usize>, Vec<(usize, usize)>) {
    let t = tiling.count();
    let rows = tiling.center_rows_per_class();
    let class_of: Vec<usize> = tiles.iter().map(|p| p.class / rows).collect();
    let batch = batch_vote(&class_of, n_classes);
    let mut votes = Vec::new();
    let mut again = Vec::new();
    for (i, image) in class_of.chunks(t).enumerate() {
        let class = match choice {
            ClassChoice::Match => batch_vote(image, n_classes),
            ClassChoice::BatchVote => batch,
            ClassChoice::Stated(c) => c[i],
        };
        for j in 0..image.len() {
            let row = tiling.center_row(class, j);
            if tiles[i * t + j].class != row {
                again.push((i * t + j, row));
            }
        }
        votes.push(class);
    }
    (votes, again)
}

/// One prediction per image from its `t` tile predictions (see the module docs). `grid` and `s`
/// are the tile's patch grid side and input side.
pub fn combine(
    tiles: Vec<Prediction>,
    votes: &[usize],
    tiling: &Tiling,
    grid: usize,
    s: usize,
) -> Result<Vec<Prediction>> {
    let t = tiling.count();
    if tiles.len() != votes.len() * t {
        return Err(Error::Other(format!(
            "{} tile predictions for {} images of {t} tiles",
            tiles.len(),
            votes.len()
        )));
    }
    let mut out = Vec::with_capacity(votes.len());
    let mut it = tiles.into_iter();
    for &class in votes {
        let image: Vec<Prediction> = it.by_ref().take(t).collect();
        let maps: Vec<Vec<f32>> = image
            .iter()
            .map(|p| {
                p.map
                    .clone()
                    .unwrap_or_else(|| map_of(&p.patch_scores, grid, s))
            })
            .collect();
        let score = image
            .iter()
            .map(|p| p.score)
            .fold(f32::NEG_INFINITY, f32::max);
        let sim = image.iter().map(|p| p.class_similarity).sum::<f32>() / t as f32;
        out.push(Prediction {
            class,
            matched: class,
            class_similarity: sim,
            score,
            patch_scores: image
                .iter()
                .flat_map(|p| p.patch_scores.iter().copied())
                .collect(),
            map: Some(blend(&maps, s, tiling)),
        });
    }
    Ok(out)
}

/// The tiles' maps (`[s, s]` each, row-major in the tiling's window order) blended into one
/// `[N, N]` map: each map resized bilinearly to its window, overlaps averaged.
pub fn blend(maps: &[Vec<f32>], s: usize, tiling: &Tiling) -> Vec<f32> {
    let n = tiling.image_size as usize;
    let mut sum = vec![0f32; n * n];
    let mut weight = vec![0u16; n * n];
    for (map, w) in maps.iter().zip(tiling.windows()) {
        let side = w.side as usize;
        let resized;
        let tile_map = if side == s {
            map
        } else {
            resized = upsample_bilinear(map, s, s, side, side);
            &resized
        };
        for (row, values) in tile_map.chunks_exact(side).enumerate() {
            let start = (w.y as usize + row) * n + w.x as usize;
            for (j, &v) in values.iter().enumerate() {
                sum[start + j] += v;
                weight[start + j] += 1;
            }
        }
    }
    sum.iter()
        .zip(&weight)
        .map(|(&v, &c)| v / f32::from(c.max(1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiling() -> Tiling {
        Tiling {
            image_size: 48,
            tile: 32,
            overlap: 16,
            centers_per_tile: false,
        }
    }

    #[test]
    fn blending_averages_overlaps_and_places_each_tile() {
        // 48 px, tiles of 32 at starts 0 and 16: 4 tiles. Tile k's map is the constant k.
        let t = tiling();
        let maps: Vec<Vec<f32>> = (0..4).map(|k| vec![k as f32; 16 * 16]).collect();
        let m = blend(&maps, 16, &t);
        assert_eq!(m.len(), 48 * 48);
        assert_eq!(m[0], 0.0); // only tile 0
        assert_eq!(m[47], 1.0); // top right: only tile 1
        assert_eq!(m[47 * 48], 2.0); // bottom left: only tile 2
        assert_eq!(m[48 * 48 - 1], 3.0); // bottom right: only tile 3
        assert_eq!(m[20 * 48 + 20], 1.5); // the centre: all four averaged
        assert_eq!(m[5 * 48 + 20], 0.5); // top middle: tiles 0 and 1
    }

    #[test]
    fn an_image_takes_its_tiles_majority_and_the_others_are_scored_again() {
        let p = |class: usize, score: f32| Prediction {
            class,
            matched: class,
            class_similarity: 0.5,
            score,
            patch_scores: vec![score; 4],
            map: None,
        };
        let tiles = vec![p(1, 0.1), p(0, 0.2), p(1, 0.9), p(1, 0.3)];
        let t = tiling();
        let (votes, again) = tile_votes(&tiles, &t, 2, &ClassChoice::Match);
        assert_eq!((votes.clone(), again), (vec![1], vec![(1, 1)]));
        let (_, again) = tile_votes(&tiles, &t, 2, &ClassChoice::Stated(vec![1]));
        assert_eq!(
            again,
            vec![(1, 1)],
            "a tile scored with another class than stated"
        );
        let out = combine(tiles.clone(), &votes, &t, 2, 16).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].score, 0.9);
        assert_eq!(out[0].class, 1);
        assert_eq!(out[0].patch_scores.len(), 16);
        assert_eq!(out[0].map.as_ref().map(Vec::len), Some(48 * 48));
        assert_eq!(
            tile_choice(&ClassChoice::Stated(vec![2, 0]), &t),
            ClassChoice::Stated(vec![2, 2, 2, 2, 0, 0, 0, 0])
        );

        // Per-tile centers: class k's tile j is bank row k * 4 + j.
        let per_tile = Tiling {
            centers_per_tile: true,
            ..t
        };
        assert_eq!(
            tile_choice(&ClassChoice::Stated(vec![1]), &per_tile),
            ClassChoice::Stated(vec![4, 5, 6, 7])
        );
        // First-pass matches: rows 5 (class 1, tile 1), 1 (class 0), 6, 7 -> class 1 wins; tile
        // 0 matched row 5 (class 1 but another position) and tile 1 row 1: both scored again.
        let rows = [5, 1, 6, 7].map(|r| p(r, 0.5));
        let (votes, again) = tile_votes(&rows, &per_tile, 2, &ClassChoice::Match);
        assert_eq!((votes, again), (vec![1], vec![(0, 4), (1, 5)]));
        assert_eq!(
            tile_choice(&ClassChoice::BatchVote, &per_tile),
            ClassChoice::Match
        );
    }
}
