//! Per-region overlap (PRO) metrics on pixel anomaly maps with ground-truth masks.
//!
//! Inputs: `maps[i]` are `width * height` row-major f32 anomaly scores, `masks[i]` the matching
//! 0/1 ground truth (any nonzero byte counts as defect). Regions are the 8-connected components
//! of each mask ([`label_regions`], as `skimage.measure.label`).
//!
//! [`aupro`] is the standard, exact AUPRO: for every distinct score t (pixel anomalous iff
//! score >= t), FPR(t) over all defect-free pixels of all images and PRO(t) = mean over ALL
//! regions of all images of the fraction of the region at or above t; the (FPR, PRO) points are
//! joined by straight lines from (0, 0), integrated up to `fpr_limit` (interpolated there) and
//! divided by `fpr_limit`. [`aupro_reference`] reproduces the CRAS authors' `compute_pro`.
//!
//! Memory of the exact sweep: 4 bytes per defect-free pixel (u32 key) and 8 bytes per defect
//! pixel (u64 key << 32 | global region id), twice while radix sorting, plus 12 bytes per region.

use super::radix::radix_sort_by_key;
use super::sweep::{score_key, walk_coarse};
use rayon::prelude::*;

/// Labels the 8-connected components of the nonzero pixels of `mask` (`width * height`,
/// row-major). Returns per-pixel labels (0 = background, regions numbered 1.. in raster order
/// of their first pixel) and the pixel count of each region (`sizes[label - 1]`).
pub fn label_regions(mask: &[u8], width: usize, height: usize) -> (Vec<u32>, Vec<u32>) {
    let mut labels = vec![0u32; width * height];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..(width * height).min(mask.len()) {
        if mask[start] == 0 || labels[start] != 0 {
            continue;
        }
        sizes.push(0u32);
        let label = sizes.len() as u32;
        labels[start] = label;
        stack.push(start);
        while let Some(p) = stack.pop() {
            sizes[label as usize - 1] += 1;
            let (x, y) = (p % width, p / width);
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let q = ny * width + nx;
                    if mask[q] != 0 && labels[q] == 0 {
                        labels[q] = label;
                        stack.push(q);
                    }
                }
            }
        }
    }
    (labels, sizes)
}

/// Sorted pixel keys of many images: negatives (mask 0) as u32 keys, positives as
/// `key << 32 | global region id`, and every region's pixel count.
pub(crate) struct PixelKeys {
    pub neg: Vec<u32>,
    pub pos: Vec<u64>,
    pub region_sizes: Vec<u32>,
}

/// One image for [`pixel_keys`]: its map, its mask (None = all defect-free) and its width.
pub(crate) struct PixelImage<'a> {
    pub map: &'a [f32],
    pub mask: Option<&'a [u8]>,
    pub width: usize,
}

/// Builds [`PixelKeys`] in parallel over images; both key arrays are sorted ascending.
/// Scores must not be NaN (callers validate).
pub(crate) fn pixel_keys(images: &[PixelImage]) -> PixelKeys {
    // Defect pixels with image-local region ids, and region sizes, per image.
    let per_image: Vec<(Vec<u64>, Vec<u32>)> = images
        .par_iter()
        .map(|img| match img.mask {
            Some(mask) if mask.iter().any(|&m| m != 0) => {
                let height = img.map.len() / img.width.max(1);
                let (labels, sizes) = label_regions(mask, img.width, height);
                let pos = img
                    .map
                    .iter()
                    .zip(&labels)
                    .filter(|(_, &l)| l != 0)
                    .map(|(&s, &l)| (score_key(s) as u64) << 32 | (l - 1) as u64)
                    .collect();
                (pos, sizes)
            }
            _ => (Vec::new(), Vec::new()),
        })
        .collect();
    let n_pos: usize = per_image.iter().map(|(p, _)| p.len()).sum();
    let n_total: usize = images.iter().map(|img| img.map.len()).sum();

    // Negatives: each image fills its own slice of one preallocated array.
    let mut neg = vec![0u32; n_total - n_pos];
    let mut slices = Vec::with_capacity(images.len());
    let mut rest: &mut [u32] = &mut neg;
    for (img, (pos, _)) in images.iter().zip(&per_image) {
        let (head, tail) = rest.split_at_mut(img.map.len() - pos.len());
        slices.push(head);
        rest = tail;
    }
    slices
        .into_par_iter()
        .zip(images.par_iter())
        .for_each(|(out, img)| match img.mask {
            Some(mask) => {
                let kept = img.map.iter().zip(mask).filter(|(_, &m)| m == 0);
                for (o, (&s, _)) in out.iter_mut().zip(kept) {
                    *o = score_key(s);
                }
            }
            None => {
                for (o, &s) in out.iter_mut().zip(img.map) {
                    *o = score_key(s);
                }
            }
        });

    // Positives with global region ids.
    let mut pos = Vec::with_capacity(n_pos);
    let mut region_sizes = Vec::new();
    for (img_pos, sizes) in &per_image {
        let offset = region_sizes.len() as u64;
        pos.extend(img_pos.iter().map(|&p| p + offset));
        region_sizes.extend_from_slice(sizes);
    }
    drop(per_image);
    rayon::join(
        || radix_sort_by_key(&mut neg, |&k| k),
        || radix_sort_by_key(&mut pos, |&p| (p >> 32) as u32),
    );
    PixelKeys {
        neg,
        pos,
        region_sizes,
    }
}

/// Integrates the (FPR, PRO) polyline along a descending walk, up to `limit`.
pub(crate) struct ProSweep {
    region_weight: Vec<f64>,
    n_neg: f64,
    fp: u64,
    pro: f64,
    last: (f64, f64),
    area: f64,
    limit: f64,
    done: bool,
}

impl ProSweep {
    /// None when there is no region, no defect-free pixel, or `limit` is not in (0, 1].
    pub(crate) fn new(region_sizes: &[u32], n_neg: usize, limit: f64) -> Option<Self> {
        if region_sizes.is_empty() || n_neg == 0 || !(limit > 0.0 && limit <= 1.0) {
            return None;
        }
        let n_regions = region_sizes.len() as f64;
        Some(ProSweep {
            region_weight: region_sizes
                .iter()
                .map(|&s| 1.0 / (s as f64 * n_regions))
                .collect(),
            n_neg: n_neg as f64,
            fp: 0,
            pro: 0.0,
            last: (0.0, 0.0),
            area: 0.0,
            limit,
            done: false,
        })
    }

    /// Adds one tie group: `d_neg` defect-free pixels and the defect pixels `positives`.
    #[inline]
    pub(crate) fn step(&mut self, d_neg: u64, positives: &[u64]) {
        if self.done {
            return;
        }
        for &p in positives {
            self.pro += self.region_weight[(p & 0xffff_ffff) as usize];
        }
        self.fp += d_neg;
        let (x0, y0) = self.last;
        let (x1, y1) = (self.fp as f64 / self.n_neg, self.pro);
        if x1 >= self.limit {
            let y_at = y0 + (y1 - y0) * (self.limit - x0) / (x1 - x0);
            self.area += (self.limit - x0) * (y0 + y_at) / 2.0;
            self.done = true;
        } else {
            self.area += (x1 - x0) * (y0 + y1) / 2.0;
        }
        self.last = (x1, y1);
    }

    /// The normalised area, in [0, 1].
    pub(crate) fn finish(&self) -> f64 {
        (self.area / self.limit).clamp(0.0, 1.0)
    }
}

/// Checks shapes and NaNs shared by [`aupro`] and [`aupro_reference`].
fn valid_inputs(maps: &[&[f32]], masks: &[&[u8]], width: usize, height: usize) -> bool {
    let n = width * height;
    !maps.is_empty()
        && n > 0
        && maps.len() == masks.len()
        && maps
            .iter()
            .all(|m| m.len() == n && !m.iter().any(|s| s.is_nan()))
        && masks.iter().all(|m| m.len() == n)
}

/// Standard exact AUPRO up to `fpr_limit` (usually 0.3), normalised to [0, 1]. None when the
/// shapes disagree, a score is NaN, no mask has a defect pixel, every pixel is a defect, or
/// `fpr_limit` is not in (0, 1].
pub fn aupro(
    maps: &[&[f32]],
    masks: &[&[u8]],
    width: usize,
    height: usize,
    fpr_limit: f64,
) -> Option<f64> {
    if !valid_inputs(maps, masks, width, height) {
        return None;
    }
    let images: Vec<PixelImage> = maps
        .iter()
        .zip(masks)
        .map(|(&map, &mask)| PixelImage {
            map,
            mask: Some(mask),
            width,
        })
        .collect();
    let keys = pixel_keys(&images);
    let mut sweep = ProSweep::new(&keys.region_sizes, keys.neg.len(), fpr_limit)?;
    walk_coarse(&keys.neg, &keys.pos, |_, d_neg, d_pos| {
        sweep.step(d_neg, d_pos)
    });
    Some(sweep.finish())
}

/// 5x5 maximum filter (window clipped at the borders): `max5(map) > t` is the 5x5 dilation of
/// `map > t`, as `cv2.dilate` with a 5x5 rectangle does.
fn max_filter5(map: &[f32], width: usize, height: usize) -> Vec<f32> {
    let window_max = |get: &dyn Fn(usize) -> f32, i: usize, n: usize| {
        (i.saturating_sub(2)..=(i + 2).min(n - 1))
            .map(get)
            .fold(f32::NEG_INFINITY, f32::max)
    };
    let mut rows = vec![0f32; map.len()];
    for y in 0..height {
        for x in 0..width {
            rows[y * width + x] = window_max(&|k| map[y * width + k], x, width);
        }
    }
    let mut out = vec![0f32; map.len()];
    for y in 0..height {
        for x in 0..width {
            out[y * width + x] = window_max(&|k| rows[k * width + x], y, height);
        }
    }
    out
}

/// Number of entries of ascending `sorted` strictly greater than `t`.
fn count_above(sorted: &[f32], t: f32) -> usize {
    sorted.len() - sorted.partition_point(|&v| v <= t)
}

/// The CRAS reference `compute_pro(masks, amaps, num_th)` (for parity only; `num_thresholds`
/// is 200 there). Its semantics: thresholds `np.arange(min, max, (max - min) / num_th)` in
/// f32; a pixel is anomalous iff score > t; the binary map is dilated by a 5x5 square before
/// measuring each region's overlap (not before the FPR); PRO = mean over all regions; only
/// thresholds with FPR < 0.3 are kept, their FPR is min-max rescaled to [0, 1] (+1e-10 in the
/// denominator) and the trapezoid area under PRO is returned. None where the reference raises
/// (and reports 0): constant maps, fewer than two kept thresholds, no region, bad shapes.
pub fn aupro_reference(
    maps: &[&[f32]],
    masks: &[&[u8]],
    width: usize,
    height: usize,
    num_thresholds: usize,
) -> Option<f64> {
    if !valid_inputs(maps, masks, width, height) || num_thresholds == 0 {
        return None;
    }
    let all = maps.iter().flat_map(|m| m.iter().copied());
    let min = all.clone().fold(f32::INFINITY, f32::min);
    let max = all.fold(f32::NEG_INFINITY, f32::max);
    let delta = (max - min) / num_thresholds as f32;
    if !(delta > 0.0 && delta.is_finite()) {
        return None;
    }
    // np.arange's length and fill, in the maps' dtype (f32).
    let count = (((max - min) / delta) as f64).ceil() as usize;
    let step = (min + delta) - min;
    let thresholds: Vec<f32> = (0..count)
        .map(|i| match i {
            0 => min,
            1 => min + delta,
            _ => min + i as f32 * step,
        })
        .collect();

    let mut region_dilated: Vec<Vec<f32>> = Vec::new();
    let mut negatives = Vec::new();
    for (&map, &mask) in maps.iter().zip(masks) {
        negatives.extend(
            map.iter()
                .zip(mask)
                .filter(|(_, &m)| m == 0)
                .map(|(&s, _)| s),
        );
        let (labels, sizes) = label_regions(mask, width, height);
        if sizes.is_empty() {
            continue;
        }
        let dilated = max_filter5(map, width, height);
        let first = region_dilated.len();
        region_dilated.extend(sizes.iter().map(|&s| Vec::with_capacity(s as usize)));
        for (&l, &d) in labels.iter().zip(&dilated) {
            if l != 0 {
                region_dilated[first + l as usize - 1].push(d);
            }
        }
    }
    if region_dilated.is_empty() {
        return None;
    }
    for r in region_dilated.iter_mut() {
        r.sort_unstable_by(f32::total_cmp);
    }
    negatives.sort_unstable_by(f32::total_cmp);

    let mut rows: Vec<(f64, f64)> = Vec::new(); // (fpr, pro), ascending threshold
    for &t in &thresholds {
        let fpr = count_above(&negatives, t) as f64 / negatives.len() as f64;
        if fpr.is_nan() || fpr >= 0.3 {
            continue;
        }
        let pro = region_dilated
            .iter()
            .map(|r| count_above(r, t) as f64 / r.len() as f64)
            .sum::<f64>()
            / region_dilated.len() as f64;
        rows.push((fpr, pro));
    }
    if rows.len() < 2 {
        return None;
    }
    let lo = rows.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let hi = rows.iter().map(|r| r.0).fold(f64::NEG_INFINITY, f64::max);
    let x: Vec<f64> = rows
        .iter()
        .map(|r| (r.0 - lo) / (hi - lo + 1e-10))
        .collect();
    // sklearn.metrics.auc: the x order must be monotonic; the area's sign follows it.
    let ascending = x.windows(2).all(|w| w[1] >= w[0]);
    let descending = x.windows(2).all(|w| w[1] <= w[0]);
    if !ascending && !descending {
        return None;
    }
    let trapz: f64 = x
        .windows(2)
        .zip(rows.windows(2))
        .map(|(xs, r)| (xs[1] - xs[0]) * (r[0].1 + r[1].1) / 2.0)
        .sum();
    Some(if ascending { trapz } else { -trapz })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_use_8_connectivity() {
        #[rustfmt::skip]
        let mask = [
            1, 0, 0, 1,
            0, 1, 0, 1,
            0, 0, 0, 0,
            1, 1, 0, 1,
        ];
        let (labels, sizes) = label_regions(&mask, 4, 4);
        assert_eq!(sizes, vec![2, 2, 2, 1]);
        assert_eq!(labels[0], labels[5]);
        assert_ne!(labels[0], labels[3]);
    }

    #[test]
    fn perfect_map_scores_one_and_inverted_map_scores_zero() {
        let mask = [0u8, 1, 1, 0, 0, 0, 0, 0, 1];
        let good: Vec<f32> = mask.iter().map(|&m| m as f32).collect();
        let bad: Vec<f32> = mask.iter().map(|&m| 1.0 - m as f32).collect();
        let one = aupro(&[&good], &[&mask], 3, 3, 0.3).unwrap();
        assert!((one - 1.0).abs() < 1e-12, "{one}");
        let zero = aupro(&[&bad], &[&mask], 3, 3, 0.3).unwrap();
        assert!(zero.abs() < 1e-12, "{zero}");
        assert_eq!(aupro(&[&good], &[&[0u8; 9]], 3, 3, 0.3), None);
        assert_eq!(aupro(&[&good], &[&mask], 3, 3, 0.0), None);
    }
}
