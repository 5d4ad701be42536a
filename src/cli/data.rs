//! `cras data inspect DATA [--format F] [--classes a,b]`: per class, the train / val /
//! test-good / test-defect counts, the defect images without masks, the defect types and the
//! image sizes seen (read from file headers). `cras data manifest DATA --out F.csv|F.jsonl`:
//! writes the rows cras understood from DATA as a manifest to check, edit and train on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cras::data::dataset::header_dims;
use cras::data::manifest::{samples_of, write_manifest};
use cras::data::{load, Format};

/// `cras data` subcommands.
#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Check a dataset (any layout, or a manifest) and summarise it per class.
    Inspect {
        /// Dataset folder or manifest (.csv / .jsonl).
        dir: PathBuf,
        /// Layout of the dataset [default: detected].
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Classes to use, comma-separated, in model order (default: all, in dataset order).
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<String>>,
    },
    /// Write the rows read from a dataset as a manifest (.csv or .jsonl) to check or edit.
    Manifest {
        /// Dataset folder or manifest.
        src: PathBuf,
        /// Manifest to write (.csv or .jsonl); paths in it are relative to its folder.
        #[arg(long)]
        out: PathBuf,
        /// Layout of the dataset [default: detected].
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Classes to keep, comma-separated, in this order (default: all).
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<String>>,
    },
}

/// Runs a `cras data` subcommand.
pub fn run(a: DataCommand) -> anyhow::Result<()> {
    match a {
        DataCommand::Inspect {
            dir,
            format,
            classes,
        } => inspect(&dir, format, classes.as_deref()),
        DataCommand::Manifest {
            src,
            out,
            format,
            classes,
        } => {
            let ds = load(&src, format, classes.as_deref())?;
            let rows = samples_of(&ds);
            write_manifest(&out, &rows)?;
            println!(
                "{}: {} rows, {} classes",
                out.display(),
                rows.len(),
                ds.classes.len()
            );
            Ok(())
        }
    }
}

fn inspect(dir: &Path, format: Option<Format>, classes: Option<&[String]>) -> anyhow::Result<()> {
    let ds = load(dir, format, classes)?;
    println!("{}: {} classes", ds.root.display(), ds.classes.len());
    println!(
        "{:<20} {:>6} {:>6} {:>10} {:>12} {:>9}  defect types / image sizes",
        "class", "train", "val", "test good", "test defect", "no mask"
    );
    for c in &ds.classes {
        let good = c.test.iter().filter(|t| !t.is_anomalous()).count();
        let unmasked = c
            .test
            .iter()
            .filter(|t| t.is_anomalous() && t.mask.is_none())
            .count();
        let paths = c
            .train
            .iter()
            .chain(&c.val)
            .chain(c.test.iter().map(|t| &t.path));
        let mut sizes: BTreeMap<(u32, u32), usize> = BTreeMap::new();
        for p in paths {
            *sizes.entry(header_dims(p)?).or_default() += 1;
        }
        let sizes: Vec<String> = sizes
            .iter()
            .map(|((w, h), n)| format!("{w}x{h} ({n})"))
            .collect();
        let defects = c.defect_types();
        println!(
            "{:<20} {:>6} {:>6} {:>10} {:>12} {:>9}  {} / {}",
            c.name,
            c.train.len(),
            c.val.len(),
            good,
            c.test.len() - good,
            unmasked,
            if defects.is_empty() {
                "-".to_string()
            } else {
                defects.join(", ")
            },
            sizes.join(", ")
        );
    }
    let train: usize = ds.classes.iter().map(|c| c.train.len()).sum();
    let val: usize = ds.classes.iter().map(|c| c.val.len()).sum();
    let test: usize = ds.classes.iter().map(|c| c.test.len()).sum();
    println!("total: {train} train, {val} val, {test} test images");
    Ok(())
}
