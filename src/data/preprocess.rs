//! Geometric and photometric preprocessing, identical to the reference's torchvision pipeline.
//!
//! Input: an 8-bit RGB image (or a binary 0/255 mask) of any size. Output, for
//! [`ResizeMode::ShorterSideThenCenterCrop`] (the reference, `Resize(resize)` + `CenterCrop(crop)`
//! + `ToTensor` + `Normalize(ImageNet)`):
//! - [`Preprocess::resized_rgb`]: the uint8 image after resize and crop, `crop x crop`;
//! - [`Preprocess::image`]: `[3, crop, crop]` f32 CHW, `(v/255 - mean) / std` per channel;
//! - [`Preprocess::mask`]: `[crop, crop]` u8 in {0, 1}, the mask under the same geometry.
//!
//! [`ResizeMode::Square`] resizes straight to `crop x crop` (no crop, aspect ratio not kept).
//!
//! With a [`Tiling`] (high-resolution models), [`Preprocess::views`] gives each image's T tiles
//! `[T, 3, crop, crop]`, and masks and [`Preprocess::resized_rgb`] are at the tiling's working
//! side ([`Preprocess::map_side`]).
//!
//! The resize is Pillow's BILINEAR with antialiasing ([`super::resize`]).

use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

use super::resize::{normalize, resize_crop_bilinear_pil};
use super::tiling::Tiling;
use crate::{Error, Result};

/// How an image is brought to the network's square input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResizeMode {
    /// torchvision `Resize(resize)` (shorter side to `resize`) then `CenterCrop(crop)`.
    ShorterSideThenCenterCrop,
    /// Resize straight to `crop x crop`, ignoring the aspect ratio; `resize` is unused.
    Square,
}

/// How a ground-truth mask file becomes a binary mask under the model's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum MaskMode {
    /// Every nonzero pixel of the file is defective; that binary mask is resized and a pixel
    /// is defective when its resized value is >= 0.5.
    #[default]
    Binarize,
    /// The reference's behaviour: the file's raw grey levels are resized, and only resized
    /// values of exactly 1.0 (255) count as defective.
    ReferenceTruncate,
}

/// Preprocessing settings; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Target length of the shorter side before cropping.
    pub resize: u32,
    /// Side of the square output.
    pub crop: u32,
    /// Geometry.
    pub mode: ResizeMode,
    /// Mask binarisation.
    pub mask_mode: MaskMode,
    /// High-resolution tiling (None: the whole image is one input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiling: Option<Tiling>,
}

impl Preprocess {
    /// The reference's settings: `Resize(329)`, `CenterCrop(288)`, masks binarised at 0.5.
    pub fn reference() -> Self {
        Preprocess {
            resize: 329,
            crop: 288,
            mode: ResizeMode::ShorterSideThenCenterCrop,
            mask_mode: MaskMode::Binarize,
            tiling: None,
        }
    }

    /// The reference's resize for a crop side: the shorter side goes to `crop * 329 / 288`
    /// (rounded; 329 for the paper's 288). The default of every command's `--resize`.
    pub fn reference_resize(crop: u32) -> u32 {
        u32::try_from((u64::from(crop) * 329 + 144) / 288).unwrap_or(u32::MAX)
    }

    /// Side of the square output, in pixels.
    pub fn output_size(&self) -> u32 {
        self.crop
    }

    /// Checks that the sizes are usable: `crop` a positive multiple of 16 (the backbone's
    /// layer2 and layer3 strides must divide it), at most 4096, and `crop <= resize` when
    /// cropping.
    pub fn validate(&self) -> Result<()> {
        if self.crop == 0 || !self.crop.is_multiple_of(16) || self.crop > 4096 {
            return Err(Error::config(
                "crop",
                self.crop,
                "the input size must be a positive multiple of 16 (the feature maps are 1/8 and \
                 1/16 of it), at most 4096; e.g. 288 or 128",
            ));
        }
        if self.mode == ResizeMode::ShorterSideThenCenterCrop && self.resize < self.crop {
            return Err(Error::config(
                "resize",
                self.resize,
                format!(
                    "must be >= crop ({}) so that the center crop fits",
                    self.crop
                ),
            ));
        }
        if let Some(t) = &self.tiling {
            t.validate()?;
        }
        Ok(())
    }

    /// Center-bank rows per class: the tile count of a model with per-tile centers, else 1.
    pub fn center_rows_per_class(&self) -> usize {
        self.tiling.map_or(1, |t| t.center_rows_per_class())
    }

    /// Network inputs per image: the tile count T of a tiled model, else 1.
    pub fn views_per_image(&self) -> usize {
        self.tiling.map_or(1, |t| t.count())
    }

    /// Images per batch so that a batch holds about `inputs` network inputs: `inputs` images,
    /// or whole tiled images (at least one).
    pub fn images_per_batch(&self, inputs: usize) -> usize {
        (inputs / self.views_per_image()).max(1)
    }

    /// Every network input of `img`: `[T, 3, crop, crop]` (tiled) or `[1, 3, crop, crop]`.
    pub fn views(&self, img: &RgbImage) -> Vec<f32> {
        match &self.tiling {
            Some(t) => t.views(img, self.crop),
            None => self.image(img),
        }
    }

    /// Side of an image's anomaly map and of its ground truth: the working side of a tiled
    /// model, else the crop.
    pub fn map_side(&self) -> u32 {
        self.tiling.map_or(self.crop, |t| t.image_size)
    }

    /// The same preprocessing with maps and masks of `side x side` (evaluation at another
    /// resolution): the working side of a tiled model, else the crop with the resize scaled
    /// alike, so the mask covers the same region of the image.
    pub fn with_map_side(&self, side: u32) -> Self {
        let mut out = self.clone();
        match &mut out.tiling {
            Some(t) => t.image_size = side,
            None => {
                let scaled = (u64::from(self.resize) * u64::from(side) + u64::from(self.crop) / 2)
                    / u64::from(self.crop.max(1));
                out.resize = u32::try_from(scaled).unwrap_or(u32::MAX).max(side);
                out.crop = side;
            }
        }
        out
    }

    /// Resize and crop geometry for an input of `w x h`: `(resized_w, resized_h, left, top)`.
    pub fn geometry(&self, w: u32, h: u32) -> (u32, u32, u32, u32) {
        match self.mode {
            ResizeMode::Square => (self.crop, self.crop, 0, 0),
            ResizeMode::ShorterSideThenCenterCrop => {
                let (rw, rh) = shorter_side_size(w, h, self.resize);
                let left = center_crop_offset(rw, self.crop);
                let top = center_crop_offset(rh, self.crop);
                (rw, rh, left, top)
            }
        }
    }

    /// The uint8 image after resize and crop, `crop x crop` (a tiled model's working image,
    /// `map_side() x map_side()`).
    pub fn resized_rgb(&self, img: &RgbImage) -> RgbImage {
        if let Some(t) = &self.tiling {
            return t.working_rgb(img);
        }
        let out = self.resize_and_crop(img.as_raw(), img.width(), img.height(), 3);
        RgbImage::from_raw(self.crop, self.crop, out).expect("buffer sized crop*crop*3")
    }

    /// The network input: `[3, crop, crop]` CHW, `(v/255 - mean) / std`, in f32 as torchvision
    /// computes it.
    pub fn image(&self, img: &RgbImage) -> Vec<f32> {
        let resized = self.resized_rgb(img);
        let plane = (self.crop * self.crop) as usize;
        let mut out = vec![0f32; 3 * plane];
        for (i, px) in resized.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = normalize(px[c], c);
            }
        }
        out
    }

    /// The ground truth under the same geometry: `[crop, crop]` values in {0, 1}. The mask is
    /// resized as a Pillow "L" image (as torchvision does), then thresholded per [`MaskMode`].
    pub fn mask(&self, mask: &GrayImage) -> Vec<u8> {
        let resized = match &self.tiling {
            Some(t) => t.working_gray(mask.as_raw(), mask.width(), mask.height()),
            None => self.resize_and_crop(mask.as_raw(), mask.width(), mask.height(), 1),
        };
        // v/255 >= 0.5  <=>  v >= 128 ;  v/255 == 1.0  <=>  v == 255
        let threshold = match self.mask_mode {
            MaskMode::Binarize => 128,
            MaskMode::ReferenceTruncate => 255,
        };
        resized
            .into_iter()
            .map(|v| u8::from(v >= threshold))
            .collect()
    }

    /// Reads the mask file at `path` per [`MaskMode`] (binarised first, or the raw grey levels
    /// for [`MaskMode::ReferenceTruncate`]) and returns [`Preprocess::mask`] of it.
    pub fn load_mask(&self, path: &std::path::Path) -> Result<Vec<u8>> {
        let m = match self.mask_mode {
            MaskMode::Binarize => crate::data::decode::decode_mask(path)?,
            MaskMode::ReferenceTruncate => crate::data::decode::decode_mask_gray(path)?,
        };
        Ok(self.mask(&m))
    }

    /// The union of an image's masks (several in MVTec LOCO), each loaded as [`Self::load_mask`];
    /// `None` when it has none.
    pub fn load_masks<'a>(
        &self,
        masks: impl Iterator<Item = &'a std::path::PathBuf>,
    ) -> Result<Option<Vec<u8>>> {
        let mut union: Option<Vec<u8>> = None;
        for m in masks {
            let mask = self.load_mask(m)?;
            match union.as_mut() {
                None => union = Some(mask),
                Some(u) => u.iter_mut().zip(&mask).for_each(|(a, b)| *a = (*a).max(*b)),
            }
        }
        Ok(union)
    }

    fn resize_and_crop(&self, src: &[u8], w: u32, h: u32, channels: usize) -> Vec<u8> {
        let (rw, rh, left, top) = self.geometry(w, h);
        resize_crop_bilinear_pil(
            src,
            (w, h),
            channels,
            (rw, rh),
            (left, top, self.crop, self.crop),
        )
    }
}

/// torchvision's `Resize(size)` output for an int size: the shorter side becomes `size`, the
/// longer `int(size * long / short)` (float division, truncated). Returns `(w, h)`.
pub fn shorter_side_size(w: u32, h: u32, size: u32) -> (u32, u32) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = ((size as u64 * long as u64) as f64 / short.max(1) as f64) as u32;
    if w <= h {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// torchvision's `CenterCrop` offset: `int(round((len - crop) / 2))`, Python rounding half to
/// even (41 -> 20, 43 -> 22). `len >= crop` is assumed (validated).
pub fn center_crop_offset(len: u32, crop: u32) -> u32 {
    let diff = len.saturating_sub(crop);
    let half = diff / 2;
    if !diff.is_multiple_of(2) && !half.is_multiple_of(2) {
        half + 1
    } else {
        half
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::resize::{IMAGENET_MEAN, IMAGENET_STD};

    #[test]
    fn several_masks_are_united() {
        let tmp = tempfile::tempdir().unwrap();
        let save = |name: &str, f: fn(u32, u32) -> bool| {
            let p = tmp.path().join(name);
            image::GrayImage::from_fn(4, 4, |x, y| image::Luma([if f(x, y) { 255 } else { 0 }]))
                .save(&p)
                .unwrap();
            p
        };
        let left = save("left.png", |x, _| x < 2);
        let top = save("top.png", |_, y| y < 1);
        let pre = Preprocess {
            resize: 4,
            crop: 4,
            mode: ResizeMode::Square,
            mask_mode: MaskMode::Binarize,
            tiling: None,
        };
        let u = pre.load_masks([left, top].iter()).unwrap().unwrap();
        // 8 left-half pixels plus the 2 top pixels of the right half.
        assert_eq!(u.iter().filter(|&&v| v == 1).count(), 10);
        assert_eq!(pre.load_masks([].iter()).unwrap(), None);
    }

    #[test]
    fn torchvision_sizes_and_offsets() {
        // MVTec 1024x1024 -> 329x329, offset round(20.5) = 20 (half to even).
        assert_eq!(shorter_side_size(1024, 1024, 329), (329, 329));
        assert_eq!(center_crop_offset(329, 288), 20);
        assert_eq!(center_crop_offset(331, 288), 22); // round(21.5) = 22
        assert_eq!(center_crop_offset(330, 288), 21);
        // VisA-like 1500x1000: long = int(329*1500/1000) = int(493.5) = 493.
        assert_eq!(shorter_side_size(1500, 1000, 329), (493, 329));
        assert_eq!(shorter_side_size(1000, 1500, 329), (329, 493));
    }

    #[test]
    fn validate_rejects_bad_sizes_and_names_multiple_of_16() {
        let mut p = Preprocess::reference();
        assert!(p.validate().is_ok());
        p.crop = 100;
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("multiple of 16"));
        p.crop = 352;
        assert!(p.validate().unwrap_err().to_string().contains("resize"));
        p.mode = ResizeMode::Square;
        assert!(p.validate().is_ok());
    }

    #[test]
    fn constant_image_stays_constant_and_normalises() {
        let img = RgbImage::from_pixel(50, 37, image::Rgb([10, 128, 250]));
        let p = Preprocess {
            resize: 40,
            crop: 32,
            ..Preprocess::reference()
        };
        let r = p.resized_rgb(&img);
        assert!(r.pixels().all(|px| px.0 == [10, 128, 250]));
        let t = p.image(&img);
        assert_eq!(t.len(), 3 * 32 * 32);
        let expect = (128f32 / 255.0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1];
        assert_eq!(t[32 * 32 + 5], expect);
    }
}
