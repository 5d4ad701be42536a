//! MVTec AD 2 as published: `<root>/<class>/train/good/*` (training),
//! `<root>/<class>/validation/good/*` (rows of split `val`: thresholds are calibrated on them
//! instead of a hold-out carved from train), `<root>/<class>/test_public/good/*` and
//! `<root>/<class>/test_public/bad/*` (test), with the masks of the bad images at
//! `<root>/<class>/test_public/ground_truth/bad/<stem>_mask.png`. The private test sets
//! (`test_private*`, without labels) are not read. A bad image without a mask is read
//! without one (pixel metrics are then `null`).

use std::path::Path;

use super::folders::masks_by_stem;
use super::{normal_rows, train_and_val_rows};
use crate::data::dataset::{file_stem, image_files, subfolders};
use crate::data::manifest::{Sample, Split, GOOD};
use crate::Result;

/// The rows of the MVTec AD 2 dataset at `root`.
pub fn samples(root: &Path) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for class in subfolders(root)? {
        let dir = root.join(&class);
        if !dir.join("test_public").is_dir() && !dir.join("train").is_dir() {
            continue;
        }
        out.extend(train_and_val_rows(
            &class,
            &dir,
            "MVTec AD 2 classes hold train/good",
        )?);
        let test = dir.join("test_public");
        out.extend(normal_rows(&class, Split::Test, &test.join(GOOD))?);
        if test.join("bad").is_dir() {
            let mut masks = masks_by_stem(&test.join("ground_truth").join("bad"))?;
            for p in image_files(&test.join("bad"))? {
                let mask = masks.remove(&format!("{}_mask", file_stem(&p)));
                out.push(Sample::anomalous(
                    &class,
                    "bad",
                    p,
                    mask.into_iter().collect(),
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(crate::Error::dataset(
            root,
            "no MVTec AD 2 class folders found; expected <root>/<class>/train/good and \
             <root>/<class>/test_public",
        ));
    }
    Ok(out)
}
