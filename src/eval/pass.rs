//! The scoring pass of an evaluation: every test image of a dataset scored once.
//!
//! Input: a [`Predictor`], a [`Dataset`] (its test split; classes of the model) and the
//! [`EvalOptions`] (class choice, threshold override, map side, batch size, gallery size).
//! Output: a [`ScoringPass`]: per class an [`EvalAccumulator`] (scores, labels, maps `[S, S]`
//! and masks `[S, S]`) and one [`ImageRecord`] per image (score, classes, threshold in force and
//! the decision at it); plus the gallery panels chosen on the way ([`GalleryQuota`]: the maps
//! are not kept, so panels are taken while their image is at hand).

use std::path::PathBuf;

use crate::data::{decode, loader, ClassSplit, Dataset, Preprocess, TestItem};
use crate::infer::{decide, ClassChoice, Decision, Predictor, ThresholdChoice};
use crate::metrics::EvalAccumulator;
use crate::report::gallery::GalleryEntry;
use crate::Result;

use super::EvalOptions;

/// A gallery panel chosen during the scoring pass.
pub struct GalleryItem {
    pub(super) entry: GalleryEntry,
    pub(super) image: image::RgbImage,
    pub(super) mask: Option<Vec<u8>>,
    pub(super) map: Vec<f32>,
}

/// One scored test image (everything but its map, which went into the accumulator).
pub struct ImageRecord {
    pub path: PathBuf,
    pub defect: String,
    pub anomalous: bool,
    /// Class index of the global match.
    pub matched: usize,
    /// Class index the image was aligned with (the match, the stated or the voted class).
    pub class: usize,
    pub score: f32,
    /// The threshold in force for the image's class, if any.
    pub threshold: Option<f32>,
    pub decision: Decision,
}

/// The scoring pass's result for one class.
pub struct ClassScores {
    pub name: String,
    /// The class's index in the model.
    pub index: usize,
    pub n_train: usize,
    /// Scores, labels, maps and masks of every test image, for the metrics.
    pub acc: EvalAccumulator,
    /// One record per test image, in the dataset's order.
    pub images: Vec<ImageRecord>,
    /// Defect images without a mask (their pixel metrics cannot be computed).
    pub unmasked_defects: usize,
}

/// The scoring pass over a test split: per class, every image scored once.
pub struct ScoringPass {
    pub classes: Vec<ClassScores>,
    /// Side of the maps and masks in the accumulators.
    pub map_size: usize,
    /// Panels chosen for the gallery (defective first, then good, per class).
    pub gallery: Vec<GalleryItem>,
    pub seconds: f64,
}

/// The preprocessing, map sides and thresholds one pass works with.
struct PassSetup<'a> {
    predictor: &'a Predictor,
    opts: &'a EvalOptions,
    /// The model's preprocessing with the evaluation's mask mode.
    pre: Preprocess,
    /// Ground truth and gallery images under the geometry of the maps the metrics see.
    truth: Preprocess,
    /// The model's map side and the side the metrics see.
    native: usize,
    side: usize,
    thresholds: ThresholdChoice,
}

/// Scores every test image of `ds` (classes in the dataset's order, each a class of the model)
/// with the class choice and thresholds of `opts`.
pub fn scoring_pass(
    predictor: &Predictor,
    ds: &Dataset,
    opts: &EvalOptions,
) -> Result<ScoringPass> {
    let started = std::time::Instant::now();
    let meta = &predictor.meta;
    let native = predictor.map_size();
    let side = opts.map_size.unwrap_or(native);
    let pre = Preprocess {
        mask_mode: opts.mask_mode.unwrap_or(meta.preprocess.mask_mode),
        ..meta.preprocess.clone()
    };
    let setup = PassSetup {
        predictor,
        opts,
        truth: pre.with_map_side(side as u32),
        pre,
        native,
        side,
        thresholds: ThresholdChoice::from_options(meta, opts.threshold, None)?,
    };
    let total_images: usize = ds.classes.iter().map(|c| c.test.len()).sum();
    let bar = progress_bar(opts.progress, total_images);
    let mut classes = Vec::with_capacity(ds.classes.len());
    let mut gallery: Vec<GalleryItem> = Vec::new();
    for class in &ds.classes {
        bar.set_message(class.name.clone());
        classes.push(setup.score_class(class, &mut gallery, &bar)?);
    }
    bar.finish_and_clear();
    Ok(ScoringPass {
        classes,
        map_size: side,
        gallery,
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl PassSetup<'_> {
    /// The class choice of a batch of `n` images of class `k`.
    fn choice(&self, k: usize, n: usize) -> ClassChoice {
        if self.opts.class_given {
            ClassChoice::Stated(vec![k; n])
        } else if self.opts.batch_vote {
            ClassChoice::BatchVote
        } else {
            ClassChoice::Match
        }
    }

    /// Images per batch: a vote covers exactly one batch, so batch-vote batches are the vote
    /// groups. (A tiled model's batch counts its tiles: batch-size network inputs, at least
    /// one image.)
    fn images_per_batch(&self) -> usize {
        if self.opts.batch_vote && !self.opts.class_given {
            self.opts.vote_group
        } else {
            self.pre.images_per_batch(self.opts.batch_size)
        }
    }

    /// Scores every test image of `class`, adding the panels its quota takes to `gallery`.
    fn score_class(
        &self,
        class: &ClassSplit,
        gallery: &mut Vec<GalleryItem>,
        bar: &indicatif::ProgressBar,
    ) -> Result<ClassScores> {
        let predictor = self.predictor;
        let meta = &predictor.meta;
        let k = meta.class_index(&class.name)?;
        let threshold = self.thresholds.for_class(meta, k);
        let mut acc = EvalAccumulator::new(self.side);
        let mut images = Vec::with_capacity(class.test.len());
        let paths: Vec<PathBuf> = class.test.iter().map(|t| t.path.clone()).collect();
        let mut quota = GalleryQuota::new(self.opts.gallery_per_class);
        let batches = loader::batches(
            paths,
            self.pre.clone(),
            self.images_per_batch().max(1),
            false,
        );
        for batch in batches {
            let batch = batch?;
            let t = batch.to_tensor(&predictor.device)?;
            let choice = self.choice(k, batch.len());
            // The image is decided at its dataset class's threshold.
            for p in predictor.predict_batch_at(&t, &choice, &|_, _| threshold)? {
                let item = &class.test[images.len()];
                let mask = self.truth.load_masks(item.masks())?;
                let map = resized_map(predictor.anomaly_map(&p), self.native, self.side);
                let anomalous = item.is_anomalous();
                acc.push(p.score, anomalous, &map, mask.as_deref())?;
                let record = ImageRecord {
                    path: item.path.clone(),
                    defect: item.defect.clone(),
                    anomalous,
                    matched: p.matched,
                    class: p.class,
                    score: p.score,
                    threshold,
                    decision: decide(p.score, threshold),
                };
                images.push(record);
                if quota.take(anomalous) {
                    let record = &images[images.len() - 1];
                    let panel = Panel { mask, map };
                    gallery.push(self.gallery_item(
                        &class.name,
                        item,
                        record,
                        images.len(),
                        panel,
                    )?);
                }
                bar.inc(1);
            }
        }
        Ok(ClassScores {
            name: class.name.clone(),
            index: k,
            n_train: class.train.len(),
            acc,
            images,
            unmasked_defects: class
                .test
                .iter()
                .filter(|t| t.is_anomalous() && t.mask.is_none())
                .count(),
        })
    }

    /// The gallery panel of the `number`-th test image of class `class` (1-based, in the
    /// dataset's order): its entry (with the decision taken in the pass), the image under the
    /// metrics' geometry, its mask and map.
    fn gallery_item(
        &self,
        class: &str,
        item: &TestItem,
        record: &ImageRecord,
        number: usize,
        panel: Panel,
    ) -> Result<GalleryItem> {
        let file = format!(
            "{}_{}_{}.png",
            sanitize(class),
            sanitize(&item.defect),
            number
        );
        Ok(GalleryItem {
            entry: GalleryEntry {
                class: class.to_string(),
                defect: item.defect.clone(),
                file,
                source: item.path.display().to_string(),
                score: record.score,
                threshold: record.threshold,
                verdict: record.decision.is_anomalous(),
                matched_class: self
                    .predictor
                    .meta
                    .classes
                    .get(record.matched)
                    .cloned()
                    .unwrap_or_default(),
            },
            image: self.truth.resized_rgb(&decode::decode_rgb(&item.path)?),
            mask: panel.mask,
            map: panel.map,
        })
    }
}

/// An image's ground truth and anomaly map under the metrics' geometry.
struct Panel {
    mask: Option<Vec<u8>>,
    map: Vec<f32>,
}

/// Which test images of a class become gallery panels: the first `per_class - per_class / 2`
/// defective ones and the first `per_class / 2` good ones, in the dataset's order.
struct GalleryQuota {
    defect_left: usize,
    good_left: usize,
}

impl GalleryQuota {
    fn new(per_class: usize) -> Self {
        Self {
            defect_left: per_class - per_class / 2,
            good_left: per_class / 2,
        }
    }

    /// Whether the next image (defective or not) is shown; counts it when it is.
    fn take(&mut self, anomalous: bool) -> bool {
        let left = if anomalous {
            &mut self.defect_left
        } else {
            &mut self.good_left
        };
        let shown = *left > 0;
        if shown {
            *left -= 1;
        }
        shown
    }
}

fn progress_bar(show: bool, len: usize) -> indicatif::ProgressBar {
    let bar = if show {
        indicatif::ProgressBar::new(len as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "evaluating [{bar:30}] {pos}/{len} images, ETA {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// A `[from, from]` map at `[to, to]` (bilinear; unchanged when the sides agree).
fn resized_map(map: Vec<f32>, from: usize, to: usize) -> Vec<f32> {
    if from == to {
        map
    } else {
        crate::maps::upsample_bilinear(&map, from, from, to, to)
    }
}

/// `s` with every character but ASCII letters, digits, `-` and `_` replaced by `_`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gallery_quota_takes_defects_first_then_good_images() {
        let mut q = GalleryQuota::new(3);
        // 3 panels: 2 defective, 1 good, the first of each in order.
        let taken: Vec<bool> = [true, false, true, true, false]
            .iter()
            .map(|&a| q.take(a))
            .collect();
        assert_eq!(taken, [true, true, true, false, false]);
        let mut none = GalleryQuota::new(0);
        assert!(!none.take(true) && !none.take(false));
    }
}
