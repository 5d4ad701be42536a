//! VisA as published: `<root>/split_csv/1cls.csv` with columns `object,split,label,image,mask`
//! (split `train`/`test`, label `normal`/`anomaly`, paths relative to `<root>`, mask empty for
//! normal images), e.g. `candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,
//! candle/Data/Masks/Anomaly/000.png`. The file is read by the manifest reader (with `object`
//! as the class column), so every row gets the manifest's checks. VisA's masks hold 0/1 (some
//! copies 0/255): the default mask mode counts every nonzero pixel as defective, so both
//! read right (`--reference-masks` would not: it only counts 255). Anomalous rows carry no
//! defect type; they are reported as `anomalous`.

use std::path::Path;

use crate::data::manifest::{read_csv_rows, RawRow, Sample};
use crate::Result;

/// The split file of VisA under `root`.
pub fn split_file(root: &Path) -> std::path::PathBuf {
    root.join("split_csv").join("1cls.csv")
}

/// The rows of the VisA dataset at `root`.
pub fn samples(root: &Path) -> Result<Vec<Sample>> {
    let file = split_file(root);
    super::require_dir(root, "the VisA root (the folder holding split_csv/)")?;
    if !file.is_file() {
        return Err(crate::Error::dataset(
            &file,
            "VisA split file not found; --data must be the folder holding split_csv/1cls.csv",
        ));
    }
    read_csv_rows(&file, root)?
        .into_iter()
        .map(RawRow::into_sample)
        .collect()
}
