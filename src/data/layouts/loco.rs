//! MVTec LOCO AD as published: `<root>/<class>/train/good/*` (training),
//! `<root>/<class>/validation/good/*` (rows of split `val`, for threshold calibration),
//! `<root>/<class>/test/{good,logical_anomalies,structural_anomalies}/*` (test) and
//! `<root>/<class>/ground_truth/<defect>/<stem>/*.png` (`000.png`, `001.png`, ...): every mask
//! file of an image's folder is one defect region, and their union is its ground truth. A
//! defect image without a mask folder is read without masks (pixel metrics are then `null`).

use std::path::Path;

use crate::data::dataset::{file_stem, image_files, subfolders};
use crate::data::manifest::{Label, Sample, Split, GOOD};
use crate::Result;

/// The rows of the MVTec LOCO dataset at `root`.
pub fn samples(root: &Path) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for class in subfolders(root)? {
        let dir = root.join(&class);
        if !dir.join("train").is_dir() && !dir.join("test").is_dir() {
            continue;
        }
        let train = dir.join("train").join(GOOD);
        super::require_dir(&train, "MVTec LOCO classes hold train/good")?;
        let row = |split, label, defect: &str, image, masks| Sample {
            class: class.clone(),
            split,
            label,
            defect: defect.to_string(),
            image,
            masks,
        };
        for p in image_files(&train)? {
            out.push(row(Split::Train, Label::Normal, GOOD, p, Vec::new()));
        }
        let val = dir.join("validation").join(GOOD);
        if val.is_dir() {
            for p in image_files(&val)? {
                out.push(row(Split::Val, Label::Normal, GOOD, p, Vec::new()));
            }
        }
        let test = dir.join("test");
        if !test.is_dir() {
            continue;
        }
        for defect in subfolders(&test)? {
            let images = image_files(&test.join(&defect))?;
            for p in images {
                if defect == GOOD {
                    out.push(row(Split::Test, Label::Normal, GOOD, p, Vec::new()));
                    continue;
                }
                let mask_dir = dir.join("ground_truth").join(&defect).join(file_stem(&p));
                let masks = if mask_dir.is_dir() {
                    image_files(&mask_dir)?
                } else {
                    Vec::new()
                };
                out.push(row(Split::Test, Label::Anomalous, &defect, p, masks));
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
