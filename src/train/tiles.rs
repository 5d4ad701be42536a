//! Training on tiles (`cras train --tile`, [`crate::data::Tiling`]): the working side resolved
//! from the data, one label per network input, and the center bank's rows.
//!
//! Input: the run's [`TrainConfig`], its training images (per image: class index k) and class
//! names. Output: the configuration with the tiling's working side set (0 = "the first training
//! image's longer side"), the cache rows' labels `[images * T]` (tile j of an image of class k:
//! bank row k, or `k * T + j` with per-tile centers) and the bank rows' names.

use std::path::PathBuf;

use super::config::TrainConfig;
use crate::data::Preprocess;
use crate::{Error, Result};

/// The center-bank row of every network input of images of classes `labels`, in cache order
/// (each image's tiles in a row).
pub fn row_labels(labels: &[usize], pre: &Preprocess) -> Vec<usize> {
    let views = pre.views_per_image();
    labels
        .iter()
        .flat_map(|&k| (0..views).map(move |j| pre.tiling.map_or(k, |t| t.center_row(k, j))))
        .collect()
}

/// One view (tile) of each of `images` images of `views` views each, their positions cycling
/// from `first`: the rows `i * views + (first + i) % views` of the batch's tensor (BatchNorm
/// recalibration samples as many network inputs as images).
pub fn one_view_each(images: usize, views: usize, first: usize) -> Vec<usize> {
    (0..images)
        .map(|i| i * views + (first + i) % views)
        .collect()
}

/// Names of the center bank's rows: the classes, or with per-tile centers `class#tile`.
pub fn center_row_names(classes: &[String], pre: &Preprocess) -> Vec<String> {
    let rows = pre.center_rows_per_class();
    if rows == 1 {
        return classes.to_vec();
    }
    classes
        .iter()
        .flat_map(|c| (0..rows).map(move |j| format!("{c}#{j}")))
        .collect()
}

/// A tiled configuration whose working side is left to the data (0) gets the longer side of the
/// first training image, checked (None: nothing to resolve).
pub fn with_tile_image_size(cfg: &TrainConfig, train: &[PathBuf]) -> Result<Option<TrainConfig>> {
    let Some(tiling) = cfg.preprocess.tiling.filter(|t| t.image_size == 0) else {
        return Ok(None);
    };
    let first = train.first().ok_or_else(|| {
        Error::Other("no training images to take the tile image size from".into())
    })?;
    let header = crate::data::decode::open_file(first)?.header()?;
    let (w, h) = (header.width, header.height);
    let mut out = cfg.clone();
    out.preprocess.tiling = Some(crate::data::Tiling {
        image_size: w.max(h),
        ..tiling
    });
    out.preprocess.validate()?;
    tracing::info!(
        image_size = w.max(h),
        tile = tiling.tile,
        overlap = tiling.overlap,
        tiles = out.preprocess.views_per_image(),
        "tiling: images are worked on at the first training image's side ({})",
        first.display()
    );
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Tiling;

    #[test]
    fn per_tile_centers_give_every_tile_of_a_class_its_own_row() {
        let mut pre = Preprocess::reference();
        assert_eq!(row_labels(&[1, 0], &pre), vec![1, 0]);
        // 64 px in tiles of 32 without overlap: 4 tiles.
        let mut tiling = Tiling {
            image_size: 64,
            tile: 32,
            overlap: 0,
            centers_per_tile: false,
        };
        pre.tiling = Some(tiling);
        assert_eq!(row_labels(&[1, 0], &pre), vec![1, 1, 1, 1, 0, 0, 0, 0]);
        let names = ["a".to_string(), "b".to_string()];
        assert_eq!(center_row_names(&names, &pre), names.to_vec());
        tiling.centers_per_tile = true;
        pre.tiling = Some(tiling);
        assert_eq!(row_labels(&[1, 0], &pre), vec![4, 5, 6, 7, 0, 1, 2, 3]);
        let rows = center_row_names(&names, &pre);
        assert_eq!((rows.len(), rows[5].as_str()), (8, "b#1"));
    }
}
