//! Your own folders, masks optional.
//!
//! Several products: `<root>/<class>/good/*` are the normal training images of each class;
//! optionally `<root>/<class>/test/good/*` (normal) and `<root>/<class>/test/<defect>/*`
//! (anomalous, one folder per defect type) are the test set, and
//! `<root>/<class>/ground_truth/<defect>/<stem>_mask.png` (or `<stem>.png`) their masks where
//! there are some. One product: the same with `<root>` itself as the class folder
//! (`<root>/good/*`, `<root>/test/...`); the class is named after the folder.
//!
//! Defect images without a mask are allowed: evaluation then reports image metrics and leaves
//! the pixel metrics `null`, saying why. A mask without an image is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::normal_rows;
use crate::data::dataset::{file_stem, image_files, subfolders};
use crate::data::manifest::{Sample, Split, GOOD};
use crate::{Error, Result};

/// The rows of the folders at `root` (see the module docs).
pub fn samples(root: &Path) -> Result<Vec<Sample>> {
    if root.join(GOOD).is_dir() {
        let name = root
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty())
            .unwrap_or("product")
            .to_string();
        return class_samples(root, &name);
    }
    let mut out = Vec::new();
    for class in subfolders(root)? {
        let dir = root.join(&class);
        if dir.join(GOOD).is_dir() {
            out.extend(class_samples(&dir, &class)?);
        } else {
            tracing::debug!("skipping {} (no good/ folder)", dir.display());
        }
    }
    if out.is_empty() {
        return Err(Error::dataset(
            root,
            "no class folders with a good/ folder found; expected <root>/<class>/good/* (or \
             <root>/good/* for one product)",
        ));
    }
    Ok(out)
}

/// The rows of one class folder: `good/` for training, `test/` and `ground_truth/` if present.
fn class_samples(dir: &Path, class: &str) -> Result<Vec<Sample>> {
    let mut out = normal_rows(class, Split::Train, &dir.join(GOOD))?;
    let test = dir.join("test");
    if !test.is_dir() {
        return Ok(out);
    }
    for defect in subfolders(&test)? {
        if defect == GOOD {
            out.extend(normal_rows(class, Split::Test, &test.join(GOOD))?);
            continue;
        }
        let mut masks = masks_by_stem(&dir.join("ground_truth").join(&defect))?;
        for p in image_files(&test.join(&defect))? {
            let stem = file_stem(&p);
            let mask = masks
                .remove(&format!("{stem}_mask"))
                .or_else(|| masks.remove(&stem));
            out.push(Sample::anomalous(
                class,
                &defect,
                p,
                mask.into_iter().collect(),
            ));
        }
        if let Some(orphan) = masks.values().next() {
            return Err(Error::dataset(
                orphan,
                format!(
                    "mask has no test image; expected an image with the same stem (without \
                     '_mask') in {}, or remove the mask",
                    test.join(&defect).display()
                ),
            ));
        }
    }
    Ok(out)
}

/// The image files of `dir` (none if it does not exist) by file stem.
pub(crate) fn masks_by_stem(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    if !dir.is_dir() {
        return Ok(BTreeMap::new());
    }
    Ok(image_files(dir)?
        .into_iter()
        .map(|p| (file_stem(&p), p))
        .collect())
}
