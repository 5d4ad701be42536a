//! Streaming batch loader.
//!
//! Input: image paths, a [`Preprocess`], a batch size. Output: an iterator of [`Batch`]es in the
//! paths' order, each holding `[B * V, 3, S, S]` f32 (S = `pre.output_size()`, B = batch size, the
//! last batch possibly smaller, V = `pre.views_per_image()`: the tiles of a tiled model, else 1). A background thread decodes and preprocesses each batch's images in
//! parallel (rayon); at most [`BATCHES_IN_FLIGHT`] finished batches wait for the consumer, so
//! memory stays bounded whatever the dataset size. The first error (naming its file) ends the
//! stream. An indicatif progress bar counts images when asked.

use std::path::PathBuf;
use std::sync::mpsc;

use rayon::prelude::*;

use crate::data::decode::decode_rgb;
use crate::data::preprocess::Preprocess;
use crate::{Error, Result};

/// Finished batches buffered ahead of the consumer.
pub const BATCHES_IN_FLIGHT: usize = 2;

/// One batch of preprocessed images.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Source files, in order.
    pub paths: Vec<PathBuf>,
    /// `[B * views, 3, size, size]` row-major f32: each image's views (tiles) in a row.
    pub images: Vec<f32>,
    /// Side of each view.
    pub size: u32,
    /// Network inputs per image (the tile count of a tiled model, else 1).
    pub views: usize,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The views as a `[B * views, 3, size, size]` f32 tensor on `dev`.
    pub fn to_tensor(&self, dev: &candle_core::Device) -> candle_core::Result<candle_core::Tensor> {
        let s = self.size as usize;
        candle_core::Tensor::from_slice(&self.images, (self.len() * self.views, 3, s, s), dev)
    }
}

/// The rows `rows` of a `[N, ...]` tensor (e.g. some of a batch's views), in that order.
pub fn select_rows(x: &candle_core::Tensor, rows: &[usize]) -> Result<candle_core::Tensor> {
    let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
    let idx = candle_core::Tensor::from_vec(idx, rows.len(), x.device())?;
    Ok(x.index_select(&idx, 0)?)
}

/// Decodes and preprocesses one batch (in parallel).
pub fn load_batch(paths: Vec<PathBuf>, pre: &Preprocess) -> Result<Batch> {
    let per_image = paths
        .par_iter()
        .map(|p| decode_rgb(p).map(|img| pre.views(&img)))
        .collect::<Result<Vec<Vec<f32>>>>()?;
    Ok(Batch {
        paths,
        images: per_image.concat(),
        size: pre.output_size(),
        views: pre.views_per_image(),
    })
}

/// Streams `paths` as batches of `batch_size` (see the module docs).
pub fn batches(
    paths: Vec<PathBuf>,
    pre: Preprocess,
    batch_size: usize,
    progress: bool,
) -> impl Iterator<Item = Result<Batch>> {
    let (tx, rx) = mpsc::sync_channel::<Result<Batch>>(BATCHES_IN_FLIGHT);
    let setup_error = if batch_size == 0 {
        Some(Error::config("batch_size", 0, "must be at least 1"))
    } else {
        pre.validate().err()
    };
    if let Some(e) = setup_error {
        let _ = tx.send(Err(e));
    } else {
        std::thread::spawn(move || {
            let bar = if progress {
                let bar = indicatif::ProgressBar::new(paths.len() as u64);
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} images [{elapsed_precise} < {eta_precise}]",
                ) {
                    bar.set_style(style);
                }
                bar
            } else {
                indicatif::ProgressBar::hidden()
            };
            for chunk in paths.chunks(batch_size) {
                let result = load_batch(chunk.to_vec(), &pre);
                let failed = result.is_err();
                bar.inc(chunk.len() as u64);
                // A send error means the consumer dropped the iterator: stop quietly.
                if tx.send(result).is_err() || failed {
                    break;
                }
            }
            bar.finish_and_clear();
        });
    }
    rx.into_iter()
}
