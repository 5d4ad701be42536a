//! Tiling of high-resolution images (`cras train --tile SIZE`): geometry and tile extraction.
//!
//! A tiled model sees an image as a grid of overlapping square tiles instead of one downscaled
//! whole. Input: an 8-bit RGB image of any size. The image is first resized (Pillow bilinear,
//! aspect ratio not kept, as [`super::ResizeMode::Square`]) to the working square
//! `image_size x image_size` (`--tile-image-size`, by default the training images' own side), then
//! cut into `tile x tile` windows whose starts step by `tile - overlap`; the last window of a row
//! or column is moved back to end flush with the image, so the windows cover every pixel and
//! every image has the same [`Tiling::count`] = T windows, row-major. Each window is resized to
//! the network's input `S x S` (the model's crop) and normalised as a whole image would be.
//! Output: [`Tiling::views`] `[T, 3, S, S]` f32, row-major.
//!
//! The tiles' anomaly maps are blended back into one `[image_size, image_size]` map by the
//! inference layer (its `tiled` module); the image score is the maximum over the tiles. The model stores its
//! [`Tiling`] in its preprocessing, so every inference path tiles as training did.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::resize::{normalize, resize_bilinear_pil, resize_crop_bilinear_pil};
use crate::{Error, Result};

/// Largest working side accepted (a 16384 x 16384 RGB image is 768 MiB).
pub const MAX_IMAGE_SIZE: u32 = 16384;

/// How an image is cut into tiles; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tiling {
    /// Side of the working square the image is resized to before tiling, in pixels.
    pub image_size: u32,
    /// Side of one tile in working pixels.
    pub tile: u32,
    /// Overlap of neighbouring tiles in working pixels (`< tile`).
    pub overlap: u32,
    /// One center map per class AND tile position (`--tile-centers per-tile`; bank row of class
    /// k, tile j: `k * T + j`) instead of one per class shared by every tile (the default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub centers_per_tile: bool,
}

/// One tile's window in the working image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileWindow {
    pub x: u32,
    pub y: u32,
    pub side: u32,
}

impl Tiling {
    /// The default overlap for a tile side: one eighth of it.
    pub fn default_overlap(tile: u32) -> u32 {
        tile / 8
    }

    /// Checks the sizes: `16 <= tile <= image_size <= MAX_IMAGE_SIZE`, `overlap < tile`.
    pub fn validate(&self) -> Result<()> {
        if self.image_size == 0 || self.image_size > MAX_IMAGE_SIZE {
            return Err(Error::config(
                "tile-image-size",
                self.image_size,
                format!("must be between 16 and {MAX_IMAGE_SIZE} pixels"),
            ));
        }
        if self.tile < 16 || self.tile > self.image_size {
            return Err(Error::config(
                "tile",
                self.tile,
                format!(
                    "the tile side must be at least 16 pixels and at most the working image side \
                     ({} px; set it with --tile-image-size)",
                    self.image_size
                ),
            ));
        }
        if self.overlap >= self.tile {
            return Err(Error::config(
                "tile-overlap",
                self.overlap,
                format!("must be smaller than the tile side ({})", self.tile),
            ));
        }
        Ok(())
    }

    /// Starts of the windows along one side (the last one flush with the end).
    pub fn starts(&self) -> Vec<u32> {
        let (n, t) = (self.image_size, self.tile.min(self.image_size));
        let stride = (t - self.overlap.min(t - 1)).max(1);
        let mut out = Vec::new();
        let mut s = 0u32;
        while s + t < n {
            out.push(s);
            s += stride;
        }
        out.push(n - t);
        out
    }

    /// Every window, row-major.
    pub fn windows(&self) -> Vec<TileWindow> {
        let starts = self.starts();
        starts
            .iter()
            .flat_map(|&y| {
                starts.iter().map(move |&x| TileWindow {
                    x,
                    y,
                    side: self.tile,
                })
            })
            .collect()
    }

    /// Number of tiles T per image.
    pub fn count(&self) -> usize {
        self.starts().len().pow(2)
    }

    /// Center-bank rows per class: T with per-tile centers, else 1.
    pub fn center_rows_per_class(&self) -> usize {
        if self.centers_per_tile {
            self.count()
        } else {
            1
        }
    }

    /// The center-bank row of tile `j` of an image of class `k`.
    pub fn center_row(&self, k: usize, j: usize) -> usize {
        if self.centers_per_tile {
            k * self.count() + j
        } else {
            k
        }
    }

    /// The working image: `img` resized to `image_size x image_size` (unchanged when it is
    /// that size already).
    pub fn working_rgb(&self, img: &RgbImage) -> RgbImage {
        let n = self.image_size;
        if img.width() == n && img.height() == n {
            return img.clone();
        }
        let out = resize_bilinear_pil(img.as_raw(), img.width(), img.height(), 3, n, n);
        RgbImage::from_raw(n, n, out).expect("buffer sized n*n*3")
    }

    /// A mask (one byte per pixel, `w x h`) under the working geometry: `[image_size^2]` bytes.
    pub fn working_gray(&self, src: &[u8], w: u32, h: u32) -> Vec<u8> {
        let n = self.image_size;
        if w == n && h == n {
            return src.to_vec();
        }
        resize_bilinear_pil(src, w, h, 1, n, n)
    }

    /// The network inputs of every tile of `img`: `[T, 3, s, s]` f32 CHW, normalised.
    pub fn views(&self, img: &RgbImage, s: u32) -> Vec<f32> {
        let work = self.working_rgb(img);
        let plane = (s * s) as usize;
        let mut out = Vec::with_capacity(self.count() * 3 * plane);
        for w in self.windows() {
            let px = resize_crop_bilinear_pil(
                &crop_rgb(&work, w),
                (w.side, w.side),
                3,
                (s, s),
                (0, 0, s, s),
            );
            let start = out.len();
            out.resize(start + 3 * plane, 0.0);
            for (i, p) in px.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    out[start + c * plane + i] = normalize(p[c], c);
                }
            }
        }
        out
    }
}

/// The pixels of window `w` of `img`, interleaved RGB.
fn crop_rgb(img: &RgbImage, w: TileWindow) -> Vec<u8> {
    image::imageops::crop_imm(img, w.x, w.y, w.side, w.side)
        .to_image()
        .into_raw()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::resize::{IMAGENET_MEAN, IMAGENET_STD};

    fn tiling(image_size: u32, tile: u32, overlap: u32) -> Tiling {
        Tiling {
            image_size,
            tile,
            overlap,
            centers_per_tile: false,
        }
    }

    #[test]
    fn windows_cover_the_image_and_the_last_one_is_flush() {
        // 100 px, tiles of 32 overlapping by 8: starts 0, 24, 48, then 68 (flush).
        let t = tiling(100, 32, 8);
        assert_eq!(t.starts(), vec![0, 24, 48, 68]);
        assert_eq!(t.count(), 16);
        let mut covered = vec![false; 100 * 100];
        for w in t.windows() {
            assert!(w.x + w.side <= 100 && w.y + w.side <= 100);
            for y in w.y..w.y + w.side {
                for x in w.x..w.x + w.side {
                    covered[(y * 100 + x) as usize] = true;
                }
            }
        }
        assert!(covered.iter().all(|&c| c));
        // Exact fit: no extra window; one tile for a tile as large as the image.
        assert_eq!(tiling(96, 32, 0).starts(), vec![0, 32, 64]);
        assert_eq!(tiling(64, 64, 8).count(), 1);
    }

    #[test]
    fn bad_sizes_are_named() {
        let e = tiling(64, 128, 0).validate().unwrap_err().to_string();
        assert!(e.contains("tile") && e.contains("128"), "{e}");
        let e = tiling(256, 64, 64).validate().unwrap_err().to_string();
        assert!(e.contains("tile-overlap"), "{e}");
        assert!(tiling(256, 64, 8).validate().is_ok());
    }

    #[test]
    fn each_view_is_its_window_of_the_working_image() {
        // A 64 px image whose left half is black and right half white, tiles of 32 without
        // overlap and no resize: tile 0 is all black, tile 1 all white.
        let img = RgbImage::from_fn(64, 64, |x, _| {
            image::Rgb(if x < 32 { [0, 0, 0] } else { [255, 255, 255] })
        });
        let t = tiling(64, 32, 0);
        let v = t.views(&img, 32);
        assert_eq!(v.len(), 4 * 3 * 32 * 32);
        let black = (0.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
        let white = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
        let tile_plane = 3 * 32 * 32;
        assert!(v[..32 * 32].iter().all(|&p| (p - black).abs() < 1e-6));
        assert!(v[tile_plane..tile_plane + 32 * 32]
            .iter()
            .all(|&p| (p - white).abs() < 1e-6));
        // Downscaled views of a uniform image keep its value.
        let grey = RgbImage::from_pixel(200, 100, image::Rgb([128, 128, 128]));
        let v = tiling(128, 64, 16).views(&grey, 32);
        let g = (128.0 / 255.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
        assert!(v[..32 * 32].iter().all(|&p| (p - g).abs() < 1e-6));
    }
}
