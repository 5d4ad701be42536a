//! Dataset layouts: each turns a dataset as published (or a user's folders) into rows
//! ([`Sample`]s), from which [`load`] builds the [`Dataset`] (see [`super::manifest`]).
//!
//! | format | `--data` points at | module |
//! |---|---|---|
//! | `mvtec` | the folder of class folders (`<class>/train/good`) | [`mvtec`] |
//! | `folders` | `<root>/<class>/good` (+ optional `test/`), or one product's `<root>/good` | [`folders`] |
//! | `visa` | the folder holding `split_csv/1cls.csv` | [`visa`] |
//! | `mvtec-ad2` | the folder of class folders (`<class>/test_public`) | [`mvtec_ad2`] |
//! | `loco` | the folder of class folders (`<class>/test/logical_anomalies`) | [`loco`] |
//! | `realiad` | the folder holding `realiad_jsons/` | [`realiad`] |
//! | `manifest` | a `.csv` or `.jsonl` file | [`super::manifest`] |
//!
//! [`detect`] picks the format from what `--data` holds, in the order of [`detect`]'s docs;
//! `--format` names it instead. The MVTec AD layout is read exactly as before (same order,
//! same checks).
//!
//! Every command reads only the [`Splits`] it uses ([`load_splits`]): training the train side
//! (train and val rows: val calibrates the thresholds), evaluation the test split; the MVTec AD
//! layout through [`crate::data::discover_splits`], the others by building every row and
//! dropping (or, for the train side under [`Splits::Test`], listing unread) the rest before any
//! file is read ([`into_dataset`]). [`load_layout`] finds the files without reading any, for
//! `cras data inspect`'s per-file audit.

pub mod folders;
pub mod loco;
pub mod mvtec;
pub mod mvtec_ad2;
pub mod realiad;
pub mod visa;

use std::path::Path;

use super::dataset::{discover_layout, discover_splits, image_files, subfolders, Dataset, Splits};
use super::manifest::{into_dataset, into_layout, read_manifest, Sample, Split, GOOD};
use crate::{Error, Result};

/// A dataset layout (`--format`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// MVTec AD: `<class>/train/good`, `<class>/test/<defect>`, `<class>/ground_truth`.
    Mvtec,
    /// Your own folders: `<class>/good` for training, optional `<class>/test/<good|defect>`.
    Folders,
    /// VisA as published, through `split_csv/1cls.csv`.
    Visa,
    /// MVTec AD 2: `train/good`, `validation/good`, `test_public/{good,bad}`.
    #[value(name = "mvtec-ad2")]
    MvtecAd2,
    /// MVTec LOCO AD: several masks per defect image, united.
    Loco,
    /// Real-IAD through its JSON split files (`realiad_jsons/<class>.json`).
    Realiad,
    /// A manifest file (`.csv` / `.jsonl`).
    Manifest,
}

/// Guesses the format of `data`: a file (or a `.csv` / `.jsonl` path) is a manifest; a folder holding `split_csv/1cls.csv`
/// is VisA, one holding `realiad_jsons/` is Real-IAD; otherwise its class folders decide:
/// `test_public/` means MVTec AD 2, `test/logical_anomalies` or `test/structural_anomalies`
/// means LOCO, `train/good` means MVTec AD, `good/` means your own folders; a `good/` folder
/// directly in `data` is one product in your own folders.
pub fn detect(data: &Path) -> Result<Format> {
    let listed = data
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv") || e.eq_ignore_ascii_case("jsonl"));
    if data.is_file() || listed {
        return Ok(Format::Manifest);
    }
    if !data.is_dir() {
        // MVTec AD's check names the missing folder and says what to pass.
        return Ok(Format::Mvtec);
    }
    if data.join("split_csv").join("1cls.csv").is_file() {
        return Ok(Format::Visa);
    }
    if data.join("realiad_jsons").is_dir() {
        return Ok(Format::Realiad);
    }
    if data.join("good").is_dir() {
        return Ok(Format::Folders);
    }
    let classes = subfolders(data)?;
    let any = |f: &dyn Fn(&Path) -> bool| classes.iter().any(|c| f(&data.join(c)));
    if any(&|c| c.join("test_public").is_dir()) {
        return Ok(Format::MvtecAd2);
    }
    if any(&|c| {
        c.join("test").join("logical_anomalies").is_dir()
            || c.join("test").join("structural_anomalies").is_dir()
    }) {
        return Ok(Format::Loco);
    }
    if any(&|c| c.join("train").join("good").is_dir()) {
        return Ok(Format::Mvtec);
    }
    if any(&|c| c.join("good").is_dir()) {
        return Ok(Format::Folders);
    }
    // Nothing recognisable: MVTec AD's checks give the most specific message.
    Ok(Format::Mvtec)
}

/// The rows of the dataset at `data` in `format` (detected when `None`). `classes` only
/// narrows what the MVTec AD layout reads (its class checks are the same as before).
pub fn samples(
    data: &Path,
    format: Option<Format>,
    classes: Option<&[String]>,
) -> Result<Vec<Sample>> {
    rows(data, resolve(data, format)?, classes)
}

fn rows(data: &Path, format: Format, classes: Option<&[String]>) -> Result<Vec<Sample>> {
    match format {
        Format::Mvtec => mvtec::samples(data, classes),
        Format::Folders => folders::samples(data),
        Format::Visa => visa::samples(data),
        Format::MvtecAd2 => mvtec_ad2::samples(data),
        Format::Loco => loco::samples(data),
        Format::Realiad => realiad::samples(data),
        Format::Manifest => read_manifest(data),
    }
}

/// `format`, or the one [`detect`]ed at `data`.
fn resolve(data: &Path, format: Option<Format>) -> Result<Format> {
    let format = match format {
        Some(f) => f,
        None => detect(data)?,
    };
    tracing::debug!(?format, data = %data.display(), "reading dataset");
    Ok(format)
}

/// The dataset at `data`, every split (see [`load_splits`]).
pub fn load(data: &Path, format: Option<Format>, classes: Option<&[String]>) -> Result<Dataset> {
    load_splits(data, format, classes, Splits::Both)
}

/// The dataset at `data` in `format` (detected when `None`), reading and checking only
/// `splits`: [`discover_splits`] for the MVTec AD layout, the rows of [`samples`] through
/// [`into_dataset`] for the others.
pub fn load_splits(
    data: &Path,
    format: Option<Format>,
    classes: Option<&[String]>,
    splits: Splits,
) -> Result<Dataset> {
    match resolve(data, format)? {
        Format::Mvtec => discover_splits(data, classes, splits),
        f => into_dataset(data, rows(data, f, classes)?, classes, splits),
    }
}

/// The dataset's files at `data`, paired, without reading any (for `cras data inspect`, whose
/// audit reads each one): [`discover_layout`] for the MVTec AD layout, [`into_layout`] for the
/// others.
pub fn load_layout(
    data: &Path,
    format: Option<Format>,
    classes: Option<&[String]>,
    splits: Splits,
) -> Result<Dataset> {
    match resolve(data, format)? {
        Format::Mvtec => discover_layout(data, classes, splits),
        f => into_layout(data, rows(data, f, classes)?, classes, splits),
    }
}

/// The images of `dir` (none if it does not exist) as normal rows of `class` in `split`.
pub(crate) fn normal_rows(class: &str, split: Split, dir: &Path) -> Result<Vec<Sample>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    Ok(image_files(dir)?
        .into_iter()
        .map(|p| Sample::normal(class, split, p))
        .collect())
}

/// The normal rows of a class folder `dir` laid out as MVTec AD 2 and LOCO are: `train/good`
/// (required: `what` names the layout in the error) and, when present, `validation/good`.
pub(crate) fn train_and_val_rows(class: &str, dir: &Path, what: &str) -> Result<Vec<Sample>> {
    let train = dir.join("train").join(GOOD);
    require_dir(&train, what)?;
    let mut rows = normal_rows(class, Split::Train, &train)?;
    rows.extend(normal_rows(
        class,
        Split::Val,
        &dir.join("validation").join(GOOD),
    )?);
    Ok(rows)
}

/// Requires `dir` to be a folder, naming it and the layout otherwise.
pub(crate) fn require_dir(dir: &Path, what: &str) -> Result<()> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Error::dataset(dir, format!("folder not found: {what}")))
    }
}
