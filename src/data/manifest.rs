//! Dataset rows ([`Sample`]) and the manifest file that lists them.
//!
//! Every dataset layout cras reads ([`super::layouts`]) is first turned into rows: one
//! [`Sample`] per image with its class, split (`train`, `val` for threshold calibration,
//! `test`), label (`normal` / `anomalous`), defect type, image path and mask paths (several
//! masks of one image are united). [`into_dataset`] builds the [`Dataset`] that training and
//! evaluation use from rows, so one code path serves every layout.
//!
//! A manifest is such a list written by hand or by `cras data manifest`:
//! - CSV (`.csv`), a header row then one row per image. Columns: `class`, `split`, `label`,
//!   `image` (required; `object` is accepted for `class`, as in VisA's split files), `mask`
//!   (optional; several masks separated by `;`) and `defect` (optional defect type;
//!   default `good` for normal rows, `anomalous` otherwise).
//! - JSON Lines (`.jsonl`), one object per line with the same keys; `mask` is a string or a
//!   list of strings.
//!
//! Relative paths are relative to the manifest's folder. Labels `good` and `anomaly` are
//! accepted for `normal` and `anomalous`, and split `validation` for `val`. Every bad row is an
//! error naming the manifest, the line and the value or file at fault: a missing image or mask
//! file (or a broken symbolic link in its place, said as such), an unknown split or label, an unknown column, a mask on a normal image, a class
//! without training images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::dataset::{check_files, ClassSplit, Dataset, Splits, TestItem};
use crate::{Error, Result};

/// Which part of the dataset an image belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    /// Normal training images.
    Train,
    /// Normal images for threshold calibration (instead of a hold-out carved from train).
    Val,
    /// Test images, normal or anomalous.
    Test,
}

impl Split {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    fn parse(s: &str) -> Option<Split> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Some(Split::Train),
            "val" | "validation" => Some(Split::Val),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
}

/// Whether an image shows a defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    Normal,
    Anomalous,
}

impl Label {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Normal => "normal",
            Label::Anomalous => "anomalous",
        }
    }

    fn parse(s: &str) -> Option<Label> {
        match s.trim().to_ascii_lowercase().as_str() {
            "normal" | "good" => Some(Label::Normal),
            "anomalous" | "anomaly" => Some(Label::Anomalous),
            _ => None,
        }
    }
}

/// Defect type of normal images (as in MVTec AD's `test/good`).
pub const GOOD: &str = "good";
/// Defect type of anomalous rows that name none.
pub const UNNAMED_DEFECT: &str = "anomalous";

/// One image of a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub class: String,
    pub split: Split,
    pub label: Label,
    /// Defect type; [`GOOD`] for normal images.
    pub defect: String,
    pub image: PathBuf,
    /// Ground-truth masks (their union is the defect region); empty when there is none.
    pub masks: Vec<PathBuf>,
}

impl Sample {
    /// A normal image of `class` in `split`.
    pub fn normal(class: &str, split: Split, image: PathBuf) -> Sample {
        Sample {
            class: class.to_string(),
            split,
            label: Label::Normal,
            defect: GOOD.to_string(),
            image,
            masks: Vec::new(),
        }
    }

    /// A test image of `class` showing `defect`, with its masks (possibly none).
    pub fn anomalous(class: &str, defect: &str, image: PathBuf, masks: Vec<PathBuf>) -> Sample {
        Sample {
            class: class.to_string(),
            split: Split::Test,
            label: Label::Anomalous,
            defect: defect.to_string(),
            image,
            masks,
        }
    }
}

/// A row as read from a manifest-like source, before it is checked.
pub(crate) struct RawRow {
    /// The file the row comes from and where in it ("line 7", "test record 3").
    pub source: PathBuf,
    pub at: String,
    pub class: String,
    pub split: String,
    pub label: String,
    pub defect: Option<String>,
    pub image: PathBuf,
    pub masks: Vec<PathBuf>,
}

/// Why the `what` (image or mask) file of a row is not there: a broken symbolic link says so
/// ([`super::links::broken`]), anything else is not found.
fn not_found(what: &str, path: &Path) -> String {
    match super::links::broken(path) {
        Some(reason) => format!(
            "{what} {} is {reason}; fix the link or remove the row",
            path.display()
        ),
        None => format!("{what} {} not found", path.display()),
    }
}

impl RawRow {
    fn error(&self, msg: impl std::fmt::Display) -> Error {
        Error::dataset(&self.source, format!("{}: {msg}", self.at))
    }

    /// Checks the row: known split and label, files present, no mask on a normal image.
    pub(crate) fn into_sample(self) -> Result<Sample> {
        if self.class.trim().is_empty() {
            return Err(self.error("the class is empty"));
        }
        let split = Split::parse(&self.split).ok_or_else(|| {
            self.error(format!(
                "unknown split '{}'; use train, val or test",
                self.split
            ))
        })?;
        let label = Label::parse(&self.label).ok_or_else(|| {
            self.error(format!(
                "unknown label '{}'; use normal or anomalous",
                self.label
            ))
        })?;
        if !self.image.is_file() {
            return Err(self.error(not_found("image", &self.image)));
        }
        if let Some(m) = self.masks.iter().find(|m| !m.is_file()) {
            return Err(self.error(not_found("mask", m)));
        }
        if label == Label::Normal && !self.masks.is_empty() {
            return Err(self.error(format!(
                "normal image {} has a mask ({}); masks mark defects: drop the mask or label \
                 the row anomalous",
                self.image.display(),
                self.masks[0].display()
            )));
        }
        if label == Label::Anomalous && split != Split::Test {
            return Err(self.error(format!(
                "anomalous image {} is in split {}; train and val take normal images only",
                self.image.display(),
                split.as_str()
            )));
        }
        let defect = match (label, self.defect.as_deref().map(str::trim)) {
            (Label::Normal, _) => GOOD.to_string(),
            (Label::Anomalous, None | Some("")) => UNNAMED_DEFECT.to_string(),
            (Label::Anomalous, Some(GOOD)) => {
                return Err(self.error("an anomalous image cannot have defect type 'good'"))
            }
            (Label::Anomalous, Some(d)) => d.to_string(),
        };
        Ok(Sample {
            class: self.class.trim().to_string(),
            split,
            label,
            defect,
            image: self.image,
            masks: self.masks,
        })
    }
}

/// Joins a path from a manifest to its base folder (absolute paths stay as they are).
fn resolve(base: &Path, p: &str) -> PathBuf {
    base.join(p.trim())
}

/// Reads a manifest (`.csv` or `.jsonl`, see the module docs).
pub fn read_manifest(path: &Path) -> Result<Vec<Sample>> {
    let base = path.parent().unwrap_or(Path::new("."));
    let rows = match extension(path).as_str() {
        "csv" => read_csv_rows(path, base)?,
        "jsonl" => read_jsonl_rows(path, base)?,
        _ => {
            return Err(Error::dataset(
                path,
                "a manifest must be a .csv or .jsonl file (see `cras data manifest`)",
            ))
        }
    };
    rows.into_iter().map(RawRow::into_sample).collect()
}

fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The rows of a CSV manifest (or of VisA's split file), paths joined to `base`.
pub(crate) fn read_csv_rows(path: &Path, base: &Path) -> Result<Vec<RawRow>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| Error::dataset(path, format!("cannot read the CSV file: {e}")))?;
    let header = reader
        .headers()
        .map_err(|e| Error::dataset(path, format!("cannot read the CSV header: {e}")))?
        .clone();
    let mut col: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, name) in header.iter().enumerate() {
        let key = match name.to_ascii_lowercase().as_str() {
            "class" | "object" => "class",
            "split" => "split",
            "label" => "label",
            "image" => "image",
            "mask" => "mask",
            "defect" => "defect",
            other => {
                return Err(Error::dataset(
                    path,
                    format!(
                        "line 1: unknown column '{other}'; columns are class, split, label, \
                         image, mask, defect"
                    ),
                ))
            }
        };
        col.insert(key, i);
    }
    for required in ["class", "split", "label", "image"] {
        if !col.contains_key(required) {
            return Err(Error::dataset(
                path,
                format!("line 1: the header has no '{required}' column"),
            ));
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let (record, line) = csv_record(path, record)?;
        let field = |k: &str| {
            col.get(k)
                .and_then(|&i| record.get(i))
                .unwrap_or("")
                .to_string()
        };
        let masks = field("mask")
            .split(';')
            .filter(|m| !m.trim().is_empty())
            .map(|m| resolve(base, m))
            .collect();
        let defect = field("defect");
        rows.push(RawRow {
            source: path.to_path_buf(),
            at: format!("line {line}"),
            class: field("class"),
            split: field("split"),
            label: field("label"),
            defect: (!defect.is_empty()).then_some(defect),
            image: resolve(base, &field("image")),
            masks,
        });
    }
    Ok(rows)
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRow {
    class: String,
    split: String,
    label: String,
    image: String,
    #[serde(default)]
    mask: Option<OneOrMany>,
    #[serde(default)]
    defect: Option<String>,
}

fn read_jsonl_rows(path: &Path, base: &Path) -> Result<Vec<RawRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: JsonRow = serde_json::from_str(line)
            .map_err(|e| Error::dataset(path, format!("line {}: {e}", i + 1)))?;
        let masks = match row.mask {
            None => Vec::new(),
            Some(OneOrMany::One(m)) => vec![m],
            Some(OneOrMany::Many(m)) => m,
        };
        rows.push(RawRow {
            source: path.to_path_buf(),
            at: format!("line {}", i + 1),
            class: row.class,
            split: row.split,
            label: row.label,
            defect: row.defect,
            image: resolve(base, &row.image),
            masks: masks
                .iter()
                .filter(|m| !m.trim().is_empty())
                .map(|m| resolve(base, m))
                .collect(),
        });
    }
    Ok(rows)
}

/// Writes `samples` as a manifest at `path` (CSV, or JSON Lines for `.jsonl`), paths relative
/// to its folder where they lie below it, atomically.
pub fn write_manifest(path: &Path, samples: &[Sample]) -> Result<()> {
    let abs = |p: &Path| std::path::absolute(p).map_err(|e| Error::io(p, e));
    let dir = abs(path)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let rel = |p: &Path| -> Result<String> {
        let a = abs(p)?;
        let shown = a.strip_prefix(&dir).map(Path::to_path_buf).unwrap_or(a);
        shown.to_str().map(str::to_string).ok_or_else(|| {
            Error::dataset(
                p,
                "the path is not valid UTF-8; a manifest holds text paths",
            )
        })
    };
    let bytes = match extension(path).as_str() {
        "jsonl" => {
            let mut out = String::new();
            for s in samples {
                let masks = s.masks.iter().map(|m| rel(m)).collect::<Result<Vec<_>>>()?;
                let row = serde_json::json!({
                    "class": s.class, "split": s.split.as_str(), "label": s.label.as_str(),
                    "defect": s.defect, "image": rel(&s.image)?, "mask": masks,
                });
                out.push_str(&row.to_string());
                out.push('\n');
            }
            out.into_bytes()
        }
        "csv" => {
            let mut w = csv::Writer::from_writer(Vec::new());
            let csv_err = |e: csv::Error| Error::dataset(path, format!("cannot write CSV: {e}"));
            w.write_record(["class", "split", "label", "defect", "image", "mask"])
                .map_err(csv_err)?;
            for s in samples {
                let masks = s.masks.iter().map(|m| rel(m)).collect::<Result<Vec<_>>>()?;
                w.write_record([
                    s.class.as_str(),
                    s.split.as_str(),
                    s.label.as_str(),
                    s.defect.as_str(),
                    rel(&s.image)?.as_str(),
                    masks.join(";").as_str(),
                ])
                .map_err(csv_err)?;
            }
            w.into_inner()
                .map_err(|e| Error::dataset(path, format!("cannot write CSV: {e}")))?
        }
        _ => {
            return Err(Error::dataset(
                path,
                "the manifest must end in .csv or .jsonl",
            ))
        }
    };
    crate::fsio::write_atomic(path, &bytes)
}

/// Builds the [`Dataset`] of `samples`, read from `source` (a folder or manifest), reading and
/// checking only `splits`: [`into_layout`], then every header of those splits (unreadable,
/// over the decoders' pixel limit, or a mask whose size differs from its image's).
pub fn into_dataset(
    source: &Path,
    samples: Vec<Sample>,
    classes: Option<&[String]>,
    splits: Splits,
) -> Result<Dataset> {
    let ds = into_layout(source, samples, classes, splits)?;
    check_files(&ds.classes, splits)?;
    Ok(ds)
}

/// The [`Dataset`] of `samples` without reading any file (for `cras data inspect`, which
/// checks each file itself). `classes`: `None` = every class in order of first appearance;
/// `Some(list)` = exactly those classes in that order. Within a class rows keep their order.
/// `splits` as in [`crate::data::discover_splits`]: [`Splits::Train`] drops the test rows
/// (train and val rows make the train side: training calibrates on val); [`Splits::Test`]
/// keeps the train and val rows listed (their counts go in the report) but neither requires
/// nor reads them. Errors on a requested class that has no rows and, when the train side is
/// read, a class without training images.
pub fn into_layout(
    source: &Path,
    samples: Vec<Sample>,
    classes: Option<&[String]>,
    splits: Splits,
) -> Result<Dataset> {
    let mut order: Vec<String> = Vec::new();
    for s in &samples {
        if !order.contains(&s.class) {
            order.push(s.class.clone());
        }
    }
    let names: Vec<String> = match classes {
        None if order.is_empty() => {
            return Err(Error::dataset(source, "the dataset lists no images"));
        }
        None => order.clone(),
        Some([]) => return Err(Error::dataset(source, "the list of classes is empty")),
        Some(list) => {
            for (i, name) in list.iter().enumerate() {
                if !order.contains(name) {
                    return Err(Error::dataset(
                        source,
                        format!(
                            "class '{name}' does not exist; available classes: {}",
                            order.join(", ")
                        ),
                    ));
                }
                if list[..i].contains(name) {
                    return Err(Error::dataset(
                        source,
                        format!("class '{name}' is listed twice"),
                    ));
                }
            }
            list.to_vec()
        }
    };
    let mut groups: Vec<ClassSplit> = names
        .iter()
        .map(|n| ClassSplit {
            name: n.clone(),
            train: Vec::new(),
            val: Vec::new(),
            test: Vec::new(),
        })
        .collect();
    for s in samples {
        if s.split == Split::Test && !splits.test() {
            continue;
        }
        let Some(c) = groups.iter_mut().find(|c| c.name == s.class) else {
            continue;
        };
        match s.split {
            Split::Train => c.train.push(s.image),
            Split::Val => c.val.push(s.image),
            Split::Test => {
                let mut masks = s.masks.into_iter();
                c.test.push(TestItem {
                    path: s.image,
                    defect: s.defect,
                    mask: masks.next(),
                    more_masks: masks.collect(),
                })
            }
        }
    }
    if let Some(c) = groups.iter().find(|c| splits.train() && c.train.is_empty()) {
        return Err(Error::dataset(
            source,
            format!(
                "class '{}' has no training images; add normal images with split train or leave \
                 the class out",
                c.name
            ),
        ));
    }
    Ok(Dataset {
        root: source.to_path_buf(),
        classes: groups,
    })
}

/// The rows of a dataset (the inverse of [`into_dataset`]).
pub fn samples_of(ds: &Dataset) -> Vec<Sample> {
    let mut out = Vec::new();
    for c in &ds.classes {
        let normal = |split| move |p: &PathBuf| Sample::normal(&c.name, split, p.clone());
        out.extend(c.train.iter().map(normal(Split::Train)));
        out.extend(c.val.iter().map(normal(Split::Val)));
        out.extend(c.test.iter().map(|t| {
            if t.is_anomalous() {
                Sample::anomalous(
                    &c.name,
                    &t.defect,
                    t.path.clone(),
                    t.masks().cloned().collect(),
                )
            } else {
                Sample::normal(&c.name, Split::Test, t.path.clone())
            }
        }));
    }
    out
}

/// One record of a CSV list read from `path`, with its line number; a malformed record is an
/// error naming the file and the line.
pub(crate) fn csv_record(
    path: &Path,
    record: csv::Result<csv::StringRecord>,
) -> Result<(csv::StringRecord, u64)> {
    let record = record.map_err(|e| {
        let line = e.position().map_or(0, |p| p.line());
        Error::dataset(path, format!("line {line}: {e}"))
    })?;
    let line = record.position().map_or(0, |p| p.line());
    Ok((record, line))
}
