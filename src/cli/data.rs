//! `cras data inspect DATA [--format F] [--classes a,b] [--decode]`: per class, the train / val /
//! test-good / test-defect counts, the defect images without masks, the defect types and the
//! image sizes seen, then every problem found (file and what is wrong), grouped by class, and a
//! summary. Exits non-zero when any file is unusable (one that train, eval, predict or serve
//! would refuse); warnings alone exit 0. Every layout and manifests are audited file by file
//! alike ([`cras::data::layouts::load_layout`] finds the files, [`cras::data::audit`] reads
//! them): by default each file is read once but not decoded (header, pixel limit, truncation by
//! the file's end); `--decode` decodes every file too. Broken symbolic links among the images
//! (dangling or looping), which discovery skips, are listed by name and counted ("N broken
//! symbolic links skipped").
//!
//! `cras data manifest DATA --out F.csv|F.jsonl`: writes the rows cras understood from DATA as a
//! manifest to check, edit and train on.

use std::path::{Path, PathBuf};

use cras::data::audit::{audit, Severity};
use cras::data::layouts::load_layout;
use cras::data::links;
use cras::data::manifest::{samples_of, write_manifest};
use cras::data::{load, Format, Splits};

/// `cras data` subcommands.
#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Check a dataset (any layout, or a manifest): summary per class, then every unusable or
    /// suspicious file; exits 1 when any file is unusable.
    Inspect {
        /// Dataset folder or manifest (.csv / .jsonl).
        dir: PathBuf,
        /// Layout of the dataset [default: detected].
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Classes to use, comma-separated, in model order (default: all, in dataset order).
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<String>>,
        /// Decode every image and mask fully (finds damage inside the data; slower). Default:
        /// headers, pixel limit and file ends only.
        #[arg(long)]
        decode: bool,
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
            decode,
        } => inspect(&dir, format, classes.as_deref(), decode),
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

fn inspect(
    dir: &Path,
    format: Option<Format>,
    classes: Option<&[String]>,
    decode: bool,
) -> anyhow::Result<()> {
    let (ds, skipped_links) = links::gather(|| load_layout(dir, format, classes, Splits::Both));
    let ds = ds?;
    let report = audit(&ds, decode);
    println!("{}: {} classes", ds.root.display(), ds.classes.len());
    println!(
        "{:<20} {:>6} {:>6} {:>10} {:>12} {:>9}  defect types / image sizes",
        "class", "train", "val", "test good", "test defect", "no mask"
    );
    for (c, sizes) in ds.classes.iter().zip(&report.sizes) {
        let good = c.test.iter().filter(|t| !t.is_anomalous()).count();
        let unmasked = c
            .test
            .iter()
            .filter(|t| t.is_anomalous() && t.mask.is_none())
            .count();
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
    let mut class = None;
    for p in &report.problems {
        if class != Some(&p.class) {
            let n = |s| {
                report
                    .problems
                    .iter()
                    .filter(|q| q.class == p.class && q.severity == s)
                    .count()
            };
            println!(
                "problems in {}: {} unusable, {} warnings",
                p.class,
                n(Severity::Error),
                n(Severity::Warning)
            );
            class = Some(&p.class);
        }
        let tag = match p.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        println!("  {tag:<7} {}: {}", p.path.display(), p.message);
    }
    if !skipped_links.is_empty() {
        println!("broken symbolic links, skipped by every command:");
        for l in &skipped_links {
            println!("  warning {}: {}", l.path.display(), l.reason);
        }
        let n = skipped_links.len();
        println!(
            "{n} broken symbolic link{} skipped",
            if n == 1 { "" } else { "s" }
        );
    }
    let errors = report.errors();
    let warnings = report.problems.len() - errors;
    println!(
        "checked {} files ({}): {errors} unusable, {warnings} warnings",
        report.files,
        if decode {
            "decoded"
        } else {
            "headers and file ends; --decode decodes them"
        }
    );
    if errors > 0 {
        anyhow::bail!(
            "{errors} unusable files in {} (listed above); replace or remove them",
            ds.root.display()
        );
    }
    Ok(())
}
