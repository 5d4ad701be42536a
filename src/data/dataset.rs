//! Dataset discovery in MVTec AD layout.
//!
//! Input: a root folder laid out as
//! `<root>/<class>/train/good/*`, `<root>/<class>/test/<good|defect>/*` and
//! `<root>/<class>/ground_truth/<defect>/<stem>_mask.png` (or `<stem>.png`).
//! Output: a [`Dataset`] whose classes are all subfolders sorted by name, or exactly the user's
//! list in the user's order (the order indexes the model's center bank). Within a class, train
//! paths are sorted; test items are sorted by defect type then file name, each defect image
//! paired with its mask by file stem; good test images have no mask.
//!
//! Discovery reads only file headers, and only those of the [`Splits`] asked for: training reads
//! the train split, evaluation the test split, so neither refuses a dataset for a problem in a
//! split it never reads. It fails with an error naming the path and saying what to do on: a
//! requested class that does not exist, a class or defect folder whose name is not UTF-8;
//! for the train split, a missing `train/good` or a class without training images; for the test
//! split, a defect image without a mask, a mask without an image, a mask whose size differs from
//! its image; in either, a file whose header cannot be read or declares more pixels than the
//! decoders take ([`crate::data::decode::DEFAULT_MAX_PIXELS`]). The format is read from the
//! content, as the decoders do, whatever the extension. [`discover_layout`] finds the files
//! without reading any (for `cras data inspect`, which lists every problem instead of stopping
//! at the first). Stray non-image files (`.DS_Store`, `Thumbs.db`, `.txt`, ...) are skipped with a
//! debug log line; a broken symbolic link named like an image (dangling, or a loop of links) is
//! skipped with a warning naming it ([`crate::data::links`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::data::decode::{check_pixels, open_file, DEFAULT_MAX_PIXELS};
use crate::data::links;
use crate::{Error, Result};

/// The splits a command reads, so discovery checks those and no others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Splits {
    /// `train/good` only (training). The test split is not read: [`ClassSplit::test`] is empty.
    Train,
    /// The test split and its masks (evaluation). `train/good` is listed if present (its count
    /// goes in the report) but neither required nor read.
    Test,
    /// Both (training with a test-set probe, `cras data inspect`).
    Both,
}

impl Splits {
    /// Whether the train side (train images, and `val` images in other layouts) is read.
    pub fn train(self) -> bool {
        self != Splits::Test
    }

    /// Whether the test split is read.
    pub fn test(self) -> bool {
        self != Splits::Train
    }
}

/// File extensions (lower case) treated as images.
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// A discovered dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The folder it was discovered in.
    pub root: PathBuf,
    /// Its classes, in model order.
    pub classes: Vec<ClassSplit>,
}

/// One class: its normal training images and its test images.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassSplit {
    /// Folder name of the class.
    pub name: String,
    /// `train/good` images, sorted.
    pub train: Vec<PathBuf>,
    /// Normal images set aside for threshold calibration (`val` rows; none in MVTec AD
    /// layout, where training holds out a share of `train` instead).
    pub val: Vec<PathBuf>,
    /// Test images, sorted by defect type then path.
    pub test: Vec<TestItem>,
}

/// One test image.
#[derive(Clone, Debug, PartialEq)]
pub struct TestItem {
    /// The image.
    pub path: PathBuf,
    /// Its defect type (the folder name); `"good"` for normal images.
    pub defect: String,
    /// Its ground-truth mask; `None` for good images (and defect images without masks,
    /// outside the MVTec AD layout).
    pub mask: Option<PathBuf>,
    /// Further masks of the same image (MVTec LOCO): the defect region is their union.
    pub more_masks: Vec<PathBuf>,
}

impl TestItem {
    /// Whether the image shows a defect.
    pub fn is_anomalous(&self) -> bool {
        self.defect != "good"
    }

    /// Every mask of the image (`mask`, then `more_masks`).
    pub fn masks(&self) -> impl Iterator<Item = &PathBuf> {
        self.mask.iter().chain(&self.more_masks)
    }
}

impl Dataset {
    /// Class names in model order.
    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name.clone()).collect()
    }
}

impl ClassSplit {
    /// Defect types present in the test split, sorted, `"good"` excluded.
    pub fn defect_types(&self) -> Vec<String> {
        let mut d: Vec<String> = self
            .test
            .iter()
            .filter(|t| t.is_anomalous())
            .map(|t| t.defect.clone())
            .collect();
        d.sort();
        d.dedup();
        d
    }
}

/// Discovers the dataset under `root`, both splits. `classes`: `None` = every subfolder, sorted;
/// `Some(list)` = exactly those classes in that order.
pub fn discover(root: &Path, classes: Option<&[String]>) -> Result<Dataset> {
    discover_splits(root, classes, Splits::Both)
}

/// Discovers the dataset under `root`, reading and checking only `splits` (module docs).
pub fn discover_splits(root: &Path, classes: Option<&[String]>, splits: Splits) -> Result<Dataset> {
    let ds = discover_layout(root, classes, splits)?;
    check_files(&ds.classes, splits)?;
    Ok(ds)
}

/// Reads the header of every file of `classes` in `splits` (train and val images on the train
/// side, test images and their masks on the test side): each must be readable, under the
/// decoders' pixel limit, and every mask must have its image's size.
pub(crate) fn check_files(classes: &[ClassSplit], splits: Splits) -> Result<()> {
    for c in classes {
        if splits.train() {
            check_headers(&c.train)?;
            check_headers(&c.val)?;
        }
        if splits.test() {
            check_test_headers(&c.test)?;
        }
    }
    Ok(())
}

/// The dataset's folders and files, paired, without reading any file: the layout errors of
/// [`discover_splits`] but none of its header checks.
pub fn discover_layout(root: &Path, classes: Option<&[String]>, splits: Splits) -> Result<Dataset> {
    if !root.is_dir() {
        return Err(Error::dataset(
            root,
            "dataset folder not found; pass the folder that holds one subfolder per class \
             (MVTec AD layout), or create one with `cras synth --out DIR`",
        ));
    }
    let available = subfolders(root)?;
    let names: Vec<String> = match classes {
        None => {
            if available.is_empty() {
                return Err(Error::dataset(
                    root,
                    "no class folders found; expected <root>/<class>/train/good/*",
                ));
            }
            available
        }
        Some(list) => {
            if list.is_empty() {
                return Err(Error::dataset(root, "the list of classes is empty"));
            }
            for (i, name) in list.iter().enumerate() {
                if !available.contains(name) {
                    return Err(Error::dataset(
                        root.join(name),
                        format!(
                            "class '{name}' does not exist; available classes: {}",
                            available.join(", ")
                        ),
                    ));
                }
                if list[..i].contains(name) {
                    return Err(Error::dataset(
                        root.join(name),
                        format!("class '{name}' is listed twice"),
                    ));
                }
            }
            list.to_vec()
        }
    };
    let classes = names
        .iter()
        .map(|name| discover_class(&root.join(name), name, splits))
        .collect::<Result<Vec<_>>>()?;
    Ok(Dataset {
        root: root.to_path_buf(),
        classes,
    })
}

fn discover_class(dir: &Path, name: &str, splits: Splits) -> Result<ClassSplit> {
    let train_dir = dir.join("train").join("good");
    if !splits.train() {
        let train = if train_dir.is_dir() {
            image_files(&train_dir)?
        } else {
            Vec::new()
        };
        return Ok(ClassSplit {
            name: name.to_string(),
            train,
            val: Vec::new(),
            test: test_items(dir)?,
        });
    }
    if !train_dir.is_dir() {
        return Err(Error::dataset(
            &train_dir,
            format!(
                "missing train/good folder of class '{name}'; put its normal training images there"
            ),
        ));
    }
    let train = image_files(&train_dir)?;
    if train.is_empty() {
        return Err(Error::dataset(
            &train_dir,
            format!("class '{name}' is empty: no training images; add normal images or leave the class out"),
        ));
    }
    let test = if splits.test() {
        test_items(dir)?
    } else {
        Vec::new()
    };
    Ok(ClassSplit {
        name: name.to_string(),
        train,
        val: Vec::new(),
        test,
    })
}

/// The test split of the class folder `dir`, each defect image paired with its mask.
fn test_items(dir: &Path) -> Result<Vec<TestItem>> {
    let test_dir = dir.join("test");
    let gt_dir = dir.join("ground_truth");
    let mut test = Vec::new();
    let defect_dirs = if test_dir.is_dir() {
        subfolders(&test_dir)?
    } else {
        Vec::new()
    };
    for defect in &defect_dirs {
        let images = image_files(&test_dir.join(defect))?;
        if defect == "good" {
            test.extend(images.into_iter().map(|path| TestItem {
                path,
                defect: defect.clone(),
                mask: None,
                more_masks: Vec::new(),
            }));
        } else {
            test.extend(pair_masks(&gt_dir.join(defect), defect, images)?);
        }
    }
    // Masks of a defect type that has no test folder at all.
    if gt_dir.is_dir() {
        for gt in subfolders(&gt_dir)? {
            if gt != "good" && !defect_dirs.contains(&gt) {
                if let Some(mask) = image_files(&gt_dir.join(&gt))?.into_iter().next() {
                    return Err(orphan_mask(&mask, &test_dir.join(&gt)));
                }
            }
        }
    }
    Ok(test)
}

/// Pairs each defect image with its mask `<stem>_mask.*` or `<stem>.*` in `mask_dir`, and checks
/// that every mask has an image.
fn pair_masks(mask_dir: &Path, defect: &str, images: Vec<PathBuf>) -> Result<Vec<TestItem>> {
    let masks = if mask_dir.is_dir() {
        image_files(mask_dir)?
    } else {
        Vec::new()
    };
    let mut by_stem: BTreeMap<String, PathBuf> = BTreeMap::new();
    for m in &masks {
        by_stem.insert(file_stem(m), m.clone());
    }
    let mut used = vec![false; masks.len()];
    let mut items = Vec::with_capacity(images.len());
    for path in images {
        let stem = file_stem(&path);
        let mask = by_stem
            .get(&format!("{stem}_mask"))
            .or_else(|| by_stem.get(&stem))
            .cloned()
            .ok_or_else(|| {
                Error::dataset(
                    &path,
                    format!(
                        "defect image has no mask; expected {} (or {stem}.png) in that folder",
                        mask_dir.join(format!("{stem}_mask.png")).display()
                    ),
                )
            })?;
        if let Some(i) = masks.iter().position(|m| *m == mask) {
            used[i] = true;
        }
        items.push(TestItem {
            path,
            defect: defect.to_string(),
            mask: Some(mask),
            more_masks: Vec::new(),
        });
    }
    if let Some(i) = used.iter().position(|u| !u) {
        return Err(orphan_mask(&masks[i], &mask_dir_to_test(mask_dir, defect)));
    }
    Ok(items)
}

/// Checks every test image's header and that each of its masks has the image's size.
fn check_test_headers(items: &[TestItem]) -> Result<()> {
    items.par_iter().try_for_each(|item| {
        let img_dims = header_dims(&item.path)?;
        item.masks()
            .try_for_each(|mask| check_mask_size(mask, header_dims(mask)?, &item.path, img_dims))
    })
}

/// Refuses a mask whose size differs from its image's.
pub fn check_mask_size(
    mask: &Path,
    mask_dims: (u32, u32),
    image: &Path,
    img_dims: (u32, u32),
) -> Result<()> {
    if img_dims == mask_dims {
        return Ok(());
    }
    Err(Error::dataset(
        mask,
        format!(
            "mask is {}x{} but its image {} is {}x{}; masks must have their image's size",
            mask_dims.0,
            mask_dims.1,
            image.display(),
            img_dims.0,
            img_dims.1
        ),
    ))
}

fn mask_dir_to_test(mask_dir: &Path, defect: &str) -> PathBuf {
    let class_dir = mask_dir.parent().and_then(Path::parent).unwrap_or(mask_dir);
    class_dir.join("test").join(defect)
}

fn orphan_mask(mask: &Path, test_dir: &Path) -> Error {
    Error::dataset(
        mask,
        format!(
            "mask has no test image; expected an image with the same stem (without '_mask') in {}, \
             or remove the mask",
            test_dir.display()
        ),
    )
}

/// Image width and height from the file header (format sniffed from the content), refused above
/// the decoders' pixel limit.
pub fn header_dims(path: &Path) -> Result<(u32, u32)> {
    let h = open_file(path)?.header()?;
    check_pixels(h.width, h.height, DEFAULT_MAX_PIXELS, path)?;
    Ok((h.width, h.height))
}

fn check_headers(paths: &[PathBuf]) -> Result<()> {
    paths
        .par_iter()
        .try_for_each(|p| header_dims(p).map(|_| ()))
}

pub(crate) fn file_stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn is_image_file(p: &Path) -> bool {
    p.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(dir, err)))
        .collect::<Result<Vec<_>>>()?;
    entries.sort();
    Ok(entries)
}

/// Image files directly in `dir`, sorted; a broken symbolic link named like an image is skipped
/// with a warning naming it ([`links::skip`]), other entries with a debug line.
pub(crate) fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in read_dir_sorted(dir)? {
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if p.is_file() && is_image_file(&p) && !hidden {
            out.push(p);
        } else if let Some(reason) = (is_image_file(&p) && !hidden)
            .then(|| links::broken(&p))
            .flatten()
        {
            links::skip(&p, reason);
        } else {
            tracing::debug!("skipping {} (not an image file)", p.display());
        }
    }
    Ok(out)
}

/// Names of the non-hidden subfolders of `dir`, sorted. A folder whose name is not UTF-8 is
/// an error naming it (class and defect names are text in the model and the reports; a lossy
/// name would point at a folder that does not exist).
pub(crate) fn subfolders(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in read_dir_sorted(dir)?.into_iter().filter(|p| p.is_dir()) {
        let Some(name) = p.file_name() else { continue };
        let name = name.to_str().ok_or_else(|| {
            Error::dataset(
                &p,
                "the folder name is not valid UTF-8; class and defect folders need text names, \
                 rename it",
            )
        })?;
        if !name.starts_with('.') {
            out.push(name.to_string());
        }
    }
    Ok(out)
}
