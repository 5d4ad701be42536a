//! `cras data inspect DIR [--classes a,b] [--decode]`: per class, the train / test-good /
//! test-defect counts, the defect types and the image sizes seen, then every problem found
//! (file and what is wrong), grouped by class, and a summary. Exits non-zero when any file is
//! unusable (one that train, eval, predict or serve would refuse); warnings alone exit 0.
//!
//! By default each file is read once but not decoded (header, pixel limit, truncation by the
//! file's end); `--decode` decodes every file too ([`cras::data::audit`]).

use std::path::PathBuf;

use cras::data::audit::{audit, Severity};
use cras::data::dataset::{discover_layout, Splits};

/// `cras data` subcommands.
#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Check a dataset in MVTec AD layout: summary per class, then every unusable or suspicious
    /// file; exits 1 when any file is unusable.
    Inspect {
        /// Dataset root: one subfolder per class.
        dir: PathBuf,
        /// Classes to use, comma-separated, in model order (default: all subfolders, sorted).
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<String>>,
        /// Decode every image and mask fully (finds damage inside the data; slower). Default:
        /// headers, pixel limit and file ends only.
        #[arg(long)]
        decode: bool,
    },
}

/// Runs a `cras data` subcommand.
pub fn run(a: DataCommand) -> anyhow::Result<()> {
    match a {
        DataCommand::Inspect {
            dir,
            classes,
            decode,
        } => inspect(&dir, classes.as_deref(), decode),
    }
}

fn inspect(dir: &std::path::Path, classes: Option<&[String]>, decode: bool) -> anyhow::Result<()> {
    let ds = discover_layout(dir, classes, Splits::Both)?;
    let report = audit(&ds, decode);
    println!("{}: {} classes", ds.root.display(), ds.classes.len());
    println!(
        "{:<20} {:>6} {:>10} {:>12}  defect types / image sizes",
        "class", "train", "test good", "test defect"
    );
    for (c, sizes) in ds.classes.iter().zip(&report.sizes) {
        let good = c.test.iter().filter(|t| !t.is_anomalous()).count();
        let sizes: Vec<String> = sizes
            .iter()
            .map(|((w, h), n)| format!("{w}x{h} ({n})"))
            .collect();
        let defects = c.defect_types();
        println!(
            "{:<20} {:>6} {:>10} {:>12}  {} / {}",
            c.name,
            c.train.len(),
            good,
            c.test.len() - good,
            if defects.is_empty() {
                "-".to_string()
            } else {
                defects.join(", ")
            },
            sizes.join(", ")
        );
    }
    let train: usize = ds.classes.iter().map(|c| c.train.len()).sum();
    let test: usize = ds.classes.iter().map(|c| c.test.len()).sum();
    println!("total: {train} train, {test} test images");
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
