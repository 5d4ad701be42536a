//! Real-IAD through its published JSON split files.
//!
//! Assumed layout (as distributed): `<root>/realiad_jsons/<class>.json` (or the nested
//! `<root>/realiad_jsons/realiad_jsons/<class>.json` of the archive), each an object with
//! `"meta"` (optional `"prefix"` and `"normal_class"`, default `"OK"`) and `"train"` /
//! `"test"` lists of records `{"category", "anomaly_class", "image_path", "mask_path"}`.
//! `anomaly_class` equal to the normal class marks a normal image; any other value is the
//! defect type. `mask_path` may be null. Image and mask paths are relative to a resolution
//! folder's class folder (`<root>/realiad_1024/<class>/<image_path>`); the first of
//! `realiad_1024`, `realiad_512`, `realiad_256`, `realiad_raw` and `<root>` itself that holds
//! the image is used, with and without the `<class>/` part. Each record is one image (the
//! single-view reading of a multi-view sample). Each record goes through the manifest's row
//! checks, named by its file and position (`test record 12`).

use std::path::{Path, PathBuf};

use crate::data::manifest::{RawRow, Sample};
use crate::{Error, Result};

/// Image folders tried, in order, below the root.
const IMAGE_FOLDERS: [&str; 5] = [
    "realiad_1024",
    "realiad_512",
    "realiad_256",
    "realiad_raw",
    "",
];

#[derive(serde::Deserialize, Default)]
struct Meta {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    normal_class: Option<String>,
}

#[derive(serde::Deserialize)]
struct Record {
    #[serde(default)]
    category: Option<String>,
    anomaly_class: String,
    image_path: String,
    #[serde(default)]
    mask_path: Option<String>,
}

#[derive(serde::Deserialize)]
struct SplitFile {
    #[serde(default)]
    meta: Option<Meta>,
    #[serde(default)]
    train: Vec<Record>,
    #[serde(default)]
    test: Vec<Record>,
}

/// The folder of the JSON split files under `root`.
pub fn json_dir(root: &Path) -> PathBuf {
    let nested = root.join("realiad_jsons").join("realiad_jsons");
    if nested.is_dir() {
        nested
    } else {
        root.join("realiad_jsons")
    }
}

/// The rows of the Real-IAD dataset at `root`.
pub fn samples(root: &Path) -> Result<Vec<Sample>> {
    let dir = json_dir(root);
    super::require_dir(
        &dir,
        "Real-IAD's realiad_jsons/ (pass the folder that holds it)",
    )?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::dataset(&dir, "no <class>.json split files found"));
    }
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let split: SplitFile = serde_json::from_str(&text)
            .map_err(|e| Error::dataset(&file, format!("not a Real-IAD split file: {e}")))?;
        let stem = crate::data::dataset::file_stem(&file);
        let meta = split.meta.unwrap_or_default();
        let normal = meta.normal_class.unwrap_or_else(|| "OK".to_string());
        let prefix = meta.prefix.unwrap_or_default();
        for (name, records) in [("train", split.train), ("test", split.test)] {
            for (i, r) in records.into_iter().enumerate() {
                let class = r.category.unwrap_or_else(|| stem.clone());
                let rel = |p: &str| format!("{prefix}{p}");
                let (image, base) = locate(root, &class, &rel(&r.image_path));
                let masks = r
                    .mask_path
                    .filter(|m| !m.is_empty())
                    .map(|m| base.join(rel(&m)))
                    .into_iter()
                    .collect();
                let anomalous = r.anomaly_class != normal;
                out.push(
                    RawRow {
                        source: file.clone(),
                        at: format!("{name} record {i}"),
                        class,
                        split: name.to_string(),
                        label: if anomalous { "anomalous" } else { "normal" }.to_string(),
                        defect: anomalous.then_some(r.anomaly_class),
                        image,
                        masks,
                    }
                    .into_sample()?,
                );
            }
        }
    }
    Ok(out)
}

/// The image `rel` of `class` and the folder its paths are relative to: the first candidate
/// (see the module docs) that holds it, else the first candidate (whose absence the row check
/// then reports).
fn locate(root: &Path, class: &str, rel: &str) -> (PathBuf, PathBuf) {
    let bases = IMAGE_FOLDERS
        .iter()
        .flat_map(|f| [root.join(f).join(class), root.join(f)]);
    let mut first = None;
    for base in bases {
        let image = base.join(rel);
        if image.is_file() {
            return (image, base);
        }
        first.get_or_insert((image, base));
    }
    first.unwrap_or_else(|| (root.join(rel), root.to_path_buf()))
}
