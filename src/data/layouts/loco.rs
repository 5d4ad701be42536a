//! MVTec LOCO AD as published: `<root>/<class>/train/good/*` (training),
//! `<root>/<class>/validation/good/*` (rows of split `val`, for threshold calibration),
//! `<root>/<class>/test/{good,logical_anomalies,structural_anomalies}/*` (test) and
//! `<root>/<class>/ground_truth/<defect>/<stem>/*.png` (`000.png`, `001.png`, ...): every mask
//! file of an image's folder is one defect region, and their union is its ground truth. A
//! defect image without a mask folder is read without masks (pixel metrics are then `null`).

use std::path::Path;

use super::{normal_rows, train_and_val_rows};
use crate::data::dataset::{file_stem, image_files, subfolders};
use crate::data::manifest::{Sample, Split, GOOD};
use crate::Result;

/// The rows of the MVTec LOCO dataset at `root`.
pub fn samples(root: &Path) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for class in subfolders(root)? {
        let dir = root.join(&class);
        if !dir.join("train").is_dir() && !dir.join("test").is_dir() {
            continue;
        }
        out.extend(train_and_val_rows(
            &class,
            &dir,
            "MVTec LOCO classes hold train/good",
        )?);
        let test = dir.join("test");
        if !test.is_dir() {
            continue;
        }
        for defect in subfolders(&test)? {
            if defect == GOOD {
                out.extend(normal_rows(&class, Split::Test, &test.join(GOOD))?);
                continue;
            }
            for p in image_files(&test.join(&defect))? {
                let mask_dir = dir.join("ground_truth").join(&defect).join(file_stem(&p));
                let masks = if mask_dir.is_dir() {
                    image_files(&mask_dir)?
                } else {
                    Vec::new()
                };
                out.push(Sample::anomalous(&class, &defect, p, masks));
            }
        }
    }
    if out.is_empty() {
        return Err(crate::Error::dataset(
            root,
            "no MVTec LOCO class folders found; expected <root>/<class>/train/good",
        ));
    }
    Ok(out)
}
