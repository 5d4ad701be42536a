//! [`EvalAccumulator`]: collects one group of test images and computes its [`MetricSet`].
//!
//! Per image it keeps the image score (f32), the label, the square pixel map (`side * side`
//! f32, row-major) and, only when it has defect pixels, the 0/1 mask (u8). Retained memory:
//! 4 bytes per pixel of a defect-free image, 5 per pixel of an image with a defect mask.
//! [`EvalAccumulator::compute`] adds, transiently, the sorted keys (4 bytes per defect-free
//! pixel, 8 per defect pixel, see [`super::pro`]) and the radix sort's buffer of the same size:
//! about 12.5 bytes per pixel at peak in all (measured: 1.80 GiB peak RSS for 149 M pixels,
//! `examples/metrics_bench.rs`).

use super::pro::{pixel_keys, PixelImage, ProSweep};
use super::sweep::{sorted_keys, walk_coarse, RankingSweep};
use super::MetricSet;
use crate::{Error, Result};

/// Everything needed to compute a [`MetricSet`] for one group of test images.
#[derive(Clone, Debug, Default)]
pub struct EvalAccumulator {
    map_side: usize,
    scores: Vec<f32>,
    labels: Vec<bool>,
    /// Per image: side of its square map (images merged from another accumulator keep theirs).
    sides: Vec<usize>,
    /// Per image: start of its map in `maps`.
    map_starts: Vec<usize>,
    /// Per image: start of its mask in `masks`, None when it has no defect pixel.
    mask_starts: Vec<Option<usize>>,
    maps: Vec<f32>,
    masks: Vec<u8>,
}

impl EvalAccumulator {
    /// An empty accumulator for maps of `map_side * map_side` pixels.
    pub fn new(map_side: usize) -> Self {
        EvalAccumulator {
            map_side,
            ..Default::default()
        }
    }

    /// Adds one image: its `score`, its label (`anomalous`), its pixel `map`
    /// (`map_side * map_side` scores) and its ground-truth `mask` (same size, 0/1; None = all 0).
    /// Errors on a wrong length, a NaN score or a mask value other than 0 and 1.
    pub fn push(
        &mut self,
        score: f32,
        anomalous: bool,
        map: &[f32],
        mask: Option<&[u8]>,
    ) -> Result<()> {
        let n = self.map_side * self.map_side;
        let image = self.scores.len();
        if score.is_nan() {
            return Err(Error::config(
                &format!("image {image} score"),
                "NaN",
                "an image score must be a number",
            ));
        }
        if map.len() != n {
            return Err(Error::config(
                &format!("image {image} anomaly map length"),
                map.len(),
                format!("expected {n} = {0} x {0}", self.map_side),
            ));
        }
        if let Some(p) = map.iter().position(|s| s.is_nan()) {
            return Err(Error::config(
                &format!("image {image} anomaly map pixel {p}"),
                "NaN",
                "pixel scores must be numbers",
            ));
        }
        let mut mask_start = None;
        if let Some(mask) = mask {
            if mask.len() != n {
                return Err(Error::config(
                    &format!("image {image} mask length"),
                    mask.len(),
                    format!("expected {n} = {0} x {0}", self.map_side),
                ));
            }
            if let Some(p) = mask.iter().position(|&m| m > 1) {
                return Err(Error::config(
                    &format!("image {image} mask pixel {p}"),
                    mask[p],
                    "masks must be binarised to 0/1",
                ));
            }
            if mask.contains(&1) {
                mask_start = Some(self.masks.len());
                self.masks.extend_from_slice(mask);
            }
        }
        self.scores.push(score);
        self.labels.push(anomalous);
        self.sides.push(self.map_side);
        self.map_starts.push(self.maps.len());
        self.mask_starts.push(mask_start);
        self.maps.extend_from_slice(map);
        Ok(())
    }

    /// Number of images pushed (or merged).
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// True when no image was pushed.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Appends every image of `other` (for pooled all-class metrics). Images keep their own
    /// map side, so groups evaluated at different resolutions can still be pooled.
    pub fn merge(&mut self, other: &EvalAccumulator) {
        let (map_base, mask_base) = (self.maps.len(), self.masks.len());
        self.scores.extend_from_slice(&other.scores);
        self.labels.extend_from_slice(&other.labels);
        self.sides.extend_from_slice(&other.sides);
        self.map_starts
            .extend(other.map_starts.iter().map(|s| s + map_base));
        self.mask_starts
            .extend(other.mask_starts.iter().map(|s| s.map(|s| s + mask_base)));
        self.maps.extend_from_slice(&other.maps);
        self.masks.extend_from_slice(&other.masks);
    }

    /// The image scores and labels, in push order.
    pub fn image_scores(&self) -> (&[f32], &[bool]) {
        (&self.scores, &self.labels)
    }

    /// The reference's PRO ([`super::pro::aupro_reference`] with `num_thresholds`) over every
    /// image of the group; None where that is undefined or the images' map sides differ.
    pub fn aupro_reference(&self, num_thresholds: usize) -> Option<f64> {
        let side = *self.sides.first()?;
        if self.sides.iter().any(|&s| s != side) {
            return None;
        }
        let n = side * side;
        let zeros = vec![0u8; n];
        let maps: Vec<&[f32]> = self
            .map_starts
            .iter()
            .map(|&s| &self.maps[s..s + n])
            .collect();
        let masks: Vec<&[u8]> = self
            .mask_starts
            .iter()
            .map(|s| s.map_or(&zeros[..], |s| &self.masks[s..s + n]))
            .collect();
        super::pro::aupro_reference(&maps, &masks, side, side, num_thresholds)
    }

    /// The seven metrics (and mAD) with AUPRO integrated up to `fpr_limit` (0.3 by convention).
    /// Metrics that are undefined for this group (see [`super::ranking`]) are None.
    pub fn compute(&self, fpr_limit: f64) -> MetricSet {
        let mut set = MetricSet::default();
        if let Some((neg, pos)) = sorted_keys(&self.scores, &self.labels) {
            let mut sweep = RankingSweep::new(pos.len() as u64, neg.len() as u64);
            walk_coarse(&neg, &pos, |k, d_neg, d_pos| {
                sweep.step(k, d_neg, d_pos.len() as u64)
            });
            set.image_auroc = sweep.auroc();
            set.image_ap = sweep.average_precision();
            set.image_f1max = sweep.f1_max().map(|b| b.f1);
        }
        if self.maps.is_empty() {
            return set.with_mad();
        }
        let images: Vec<PixelImage> = (0..self.len())
            .map(|i| {
                let n = self.sides[i] * self.sides[i];
                PixelImage {
                    map: &self.maps[self.map_starts[i]..self.map_starts[i] + n],
                    mask: self.mask_starts[i].map(|s| &self.masks[s..s + n]),
                    width: self.sides[i],
                }
            })
            .collect();
        let keys = pixel_keys(&images);
        let mut ranking = RankingSweep::new(keys.pos.len() as u64, keys.neg.len() as u64);
        let mut pro = ProSweep::new(&keys.region_sizes, keys.neg.len(), fpr_limit);
        walk_coarse(&keys.neg, &keys.pos, |k, d_neg, d_pos| {
            ranking.step(k, d_neg, d_pos.len() as u64);
            if let Some(pro) = pro.as_mut() {
                pro.step(d_neg, d_pos);
            }
        });
        set.pixel_auroc = ranking.auroc();
        set.pixel_ap = ranking.average_precision();
        set.pixel_f1max = ranking.f1_max().map(|b| b.f1);
        set.aupro = pro.map(|p| p.finish());
        set.with_mad()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{pro, ranking};

    #[test]
    fn push_rejects_bad_shapes_and_values() {
        let mut acc = EvalAccumulator::new(2);
        let err = acc.push(0.5, false, &[0.0; 3], None).unwrap_err();
        assert!(err.to_string().contains("anomaly map length = 3"), "{err}");
        let err = acc.push(0.5, true, &[0.0; 4], Some(&[0, 255, 0, 0]));
        assert!(err.unwrap_err().to_string().contains("0/1"));
        assert!(acc.push(f32::NAN, true, &[0.0; 4], None).is_err());
        assert!(acc
            .push(0.1, true, &[0.0, f32::NAN, 0.0, 0.0], None)
            .is_err());
        assert!(acc.is_empty());
    }

    #[test]
    fn compute_agrees_with_standalone_functions_and_merge_pools() {
        let maps: [[f32; 4]; 3] = [[0.1, 0.2, 0.2, 0.9], [0.3, 0.8, 0.1, 0.1], [0.2; 4]];
        let masks: [[u8; 4]; 3] = [[0, 0, 0, 1], [0, 1, 1, 0], [0; 4]];
        let (scores, labels) = ([0.9f32, 0.8, 0.2], [true, true, false]);
        let mut a = EvalAccumulator::new(2);
        let mut b = EvalAccumulator::new(2);
        for i in 0..3 {
            let target = if i < 2 { &mut a } else { &mut b };
            target
                .push(scores[i], labels[i], &maps[i], Some(&masks[i]))
                .unwrap();
        }
        assert_eq!(a.compute(0.3).image_auroc, None); // only anomalous images
        a.merge(&b);
        assert_eq!(a.len(), 3);
        let m = a.compute(0.3);
        let flat: Vec<f32> = maps.concat();
        let gt: Vec<bool> = masks.concat().iter().map(|&v| v == 1).collect();
        assert_eq!(m.image_auroc, Some(1.0));
        assert_eq!(m.pixel_auroc, ranking::auroc(&flat, &gt));
        assert_eq!(m.pixel_ap, ranking::average_precision(&flat, &gt));
        assert_eq!(m.pixel_f1max, ranking::f1_max(&flat, &gt).map(|b| b.f1));
        let map_refs: Vec<&[f32]> = maps.iter().map(|m| &m[..]).collect();
        let mask_refs: Vec<&[u8]> = masks.iter().map(|m| &m[..]).collect();
        assert_eq!(m.aupro, pro::aupro(&map_refs, &mask_refs, 2, 2, 0.3));
        assert!(m.mad.is_some());
    }
}
