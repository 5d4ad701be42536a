//! Deterministic synthetic multi-class benchmark in MVTec AD layout.
//!
//! [`generate`] writes, under an empty or new folder `out`, for each of the first
//! `cfg.classes` classes (the eight drawings of [`CLASS_NAMES`], textures and objects, then, up to
//! [`MAX_CLASSES`], the same eight in a second colourway named `<name>_alt`; see [`class_name`]):
//! `<class>/train/good/NNN.png`, `<class>/test/good/NNN.png`,
//! `<class>/test/<defect>/NNN.png` and `<class>/ground_truth/<defect>/NNN_mask.png`
//! (8-bit RGB images and 0/255 gray masks of `cfg.size` pixels square). Defect images cycle
//! through five kinds: scratch, hole, stain, crack (textures) or missing_part (objects), and
//! foreign (a patch of another class's normal surface); each mask marks exactly the repainted
//! pixels. Every image has its own seed derived from (seed, class, split, kind, index), so the
//! files are byte-identical for a given configuration whatever the thread count.

mod scene;

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use rayon::prelude::*;

use crate::{Error, Result};
use scene::{add_defect, finish, render_normal, Canvas, SynthRng};
pub use scene::{defect_name, is_object, CLASS_NAMES, DEFECT_KINDS};

/// Most classes [`generate`] writes: each drawing of [`CLASS_NAMES`] as drawn, then again in a
/// second colourway (its colour channels rotated), so a set can have as many classes as MVTec AD
/// (15).
pub const MAX_CLASSES: usize = 2 * CLASS_NAMES.len();

/// Folder name of class `class` (`0..MAX_CLASSES`): the drawing's name, with `_alt` for the
/// second colourway.
pub fn class_name(class: usize) -> String {
    let (base, alt) = drawing_of(class);
    if alt {
        format!("{}_alt", CLASS_NAMES[base])
    } else {
        CLASS_NAMES[base].to_string()
    }
}

/// Which drawing class `class` uses (an index into [`CLASS_NAMES`]), and whether it is drawn in
/// the second colourway: the one rule [`class_name`] and the drawing share.
fn drawing_of(class: usize) -> (usize, bool) {
    (class % CLASS_NAMES.len(), class >= CLASS_NAMES.len())
}

/// The second colourway: every colour's channels rotated (R, G, B) -> (B, R, G).
fn recolour(c: &mut Canvas) {
    for px in c.rgb.iter_mut().chain(c.background.iter_mut()) {
        *px = [px[2], px[0], px[1]];
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthConfig {
    /// Number of classes (1..=[`MAX_CLASSES`]), named by [`class_name`].
    pub classes: usize,
    /// Normal training images per class.
    pub train_per_class: usize,
    /// Normal test images per class.
    pub test_good_per_class: usize,
    /// Defective test images per class (cycling through the defect kinds).
    pub test_defect_per_class: usize,
    /// Side of every image in pixels (32..=2048).
    pub size: u32,
    /// Defect extent in pixels, `(lo, hi)`, whatever the size (None: a share of the side,
    /// 4-25% of it). Small defects on large images: `Some((10, 30))` at 2048 px.
    pub defect_px: Option<(u32, u32)>,
    /// Seed of everything.
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            classes: 6,
            train_per_class: 40,
            test_good_per_class: 10,
            test_defect_per_class: 20,
            size: 256,
            defect_px: None,
            seed: 0,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthSummary {
    /// Class names, in order.
    pub classes: Vec<String>,
    /// Number of images written (masks not counted).
    pub images: usize,
    /// Wall-clock time.
    pub seconds: f64,
}

impl SynthConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.classes == 0 || self.classes > MAX_CLASSES {
            return Err(Error::config(
                "classes",
                self.classes,
                format!("must be between 1 and {MAX_CLASSES}"),
            ));
        }
        if self.train_per_class == 0 {
            return Err(Error::config(
                "train",
                0,
                "each class needs at least one training image",
            ));
        }
        if !(32..=2048).contains(&self.size) {
            return Err(Error::config(
                "size",
                self.size,
                "must be between 32 and 2048 pixels",
            ));
        }
        if let Some((lo, hi)) = self.defect_px {
            if lo < 2 || lo > hi || hi > self.size / 4 {
                return Err(Error::config(
                    "defect-px",
                    format!("{lo}-{hi}"),
                    format!(
                        "must be LO-HI pixels with 2 <= LO <= HI <= a quarter of the image side ({})",
                        self.size / 4
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// One image to draw.
#[derive(Clone, Copy, Debug)]
enum Job {
    Train {
        class: usize,
        index: usize,
    },
    TestGood {
        class: usize,
        index: usize,
    },
    TestDefect {
        class: usize,
        kind: usize,
        index: usize,
    },
}

fn jobs(cfg: &SynthConfig) -> Vec<Job> {
    let mut out = Vec::new();
    for class in 0..cfg.classes {
        out.extend((0..cfg.train_per_class).map(|index| Job::Train { class, index }));
        out.extend((0..cfg.test_good_per_class).map(|index| Job::TestGood { class, index }));
        out.extend((0..cfg.test_defect_per_class).map(|i| Job::TestDefect {
            class,
            kind: i % DEFECT_KINDS,
            index: i / DEFECT_KINDS,
        }));
    }
    out
}

/// A drawn file: its path relative to the dataset root and its raw pixels.
type DrawnFile = (PathBuf, Vec<u8>);

/// Draws one image (and its mask for defects) in memory: the RGB image and, for defects, the mask.
fn draw(cfg: &SynthConfig, job: Job) -> (PathBuf, Vec<u8>, Option<DrawnFile>) {
    let size = cfg.size as usize;
    let (class, split, kind, index) = match job {
        Job::Train { class, index } => (class, 0, 0, index),
        Job::TestGood { class, index } => (class, 1, 0, index),
        Job::TestDefect { class, kind, index } => (class, 2, kind, index),
    };
    let mut rng = SynthRng::from_parts(&[cfg.seed, class as u64, split, kind as u64, index as u64]);
    let (base, alt) = drawing_of(class);
    let mut canvas = render_normal(base, size, &mut rng);
    if alt {
        recolour(&mut canvas);
    }
    let class_dir = PathBuf::from(class_name(class));
    let file = format!("{index:03}.png");
    match job {
        Job::Train { .. } => (
            class_dir.join("train/good").join(file),
            finish(&canvas, &mut rng),
            None,
        ),
        Job::TestGood { .. } => (
            class_dir.join("test/good").join(file),
            finish(&canvas, &mut rng),
            None,
        ),
        Job::TestDefect { .. } => {
            let foreign = (kind == DEFECT_KINDS - 1).then(|| {
                let other = (base + 1 + rng.below(CLASS_NAMES.len() - 1)) % CLASS_NAMES.len();
                render_normal(other, size, &mut rng)
            });
            let extent = cfg.defect_px.map(|(lo, hi)| (lo as f32, hi as f32));
            let mask = add_defect(&mut canvas, base, kind, foreign.as_ref(), extent, &mut rng);
            let name = defect_name(base, kind);
            let mask_bytes = mask.iter().map(|&m| if m { 255 } else { 0 }).collect();
            let mask_path = class_dir
                .join("ground_truth")
                .join(name)
                .join(format!("{index:03}_mask.png"));
            let image_path = class_dir.join("test").join(name).join(file);
            (
                image_path,
                finish(&canvas, &mut rng),
                Some((mask_path, mask_bytes)),
            )
        }
    }
}

fn write_png(path: &Path, pixels: &[u8], size: u32, color: ExtendedColorType) -> Result<()> {
    let mut buf = Vec::new();
    PngEncoder::new_with_quality(&mut buf, CompressionType::Fast, FilterType::Adaptive)
        .write_image(pixels, size, size, color)
        .map_err(|e| Error::image(path, format!("cannot encode PNG: {e}")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(path, &buf).map_err(|e| Error::io(path, e))
}

/// Writes the benchmark described by `cfg` under `out` (which must be new or empty).
///
/// The files are written into a hidden staging folder next to `out`, renamed to `out` only once
/// complete: a failed or interrupted run never leaves a partial dataset behind (one rename makes
/// the whole dataset atomic, without the cost of a synced temp file per image).
pub fn generate(cfg: &SynthConfig, out: &Path) -> Result<SynthSummary> {
    cfg.validate()?;
    if out.exists() {
        let mut entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
        if entries.next().is_some() {
            return Err(Error::dataset(
                out,
                "output folder is not empty; choose a new folder (old files would mix with new ones)",
            ));
        }
    }
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".cras-synth-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let start = Instant::now();
    let jobs = jobs(cfg);
    jobs.par_iter().try_for_each(|&job| {
        let (path, rgb, mask) = draw(cfg, job);
        write_png(
            &staging.path().join(path),
            &rgb,
            cfg.size,
            ExtendedColorType::Rgb8,
        )?;
        if let Some((mask_path, mask)) = mask {
            write_png(
                &staging.path().join(mask_path),
                &mask,
                cfg.size,
                ExtendedColorType::L8,
            )?;
        }
        Ok::<(), Error>(())
    })?;
    if out.exists() {
        std::fs::remove_dir(out).map_err(|e| Error::io(out, e))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, out).map_err(|e| Error::io(out, e))?;
    Ok(SynthSummary {
        classes: (0..cfg.classes).map(class_name).collect(),
        images: jobs.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}
