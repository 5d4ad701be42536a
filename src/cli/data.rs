//! `cras data inspect DIR [--classes a,b]`: per class, the train / test-good / test-defect
//! counts, the defect types and the image sizes seen (read from file headers).

use std::collections::BTreeMap;
use std::path::PathBuf;

use cras::data::dataset::{discover, header_dims};

/// `cras data` subcommands.
#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Check a dataset in MVTec AD layout and summarise it per class.
    Inspect {
        /// Dataset root: one subfolder per class.
        dir: PathBuf,
        /// Classes to use, comma-separated, in model order (default: all subfolders, sorted).
        #[arg(long, value_delimiter = ',')]
        classes: Option<Vec<String>>,
    },
}

/// Runs a `cras data` subcommand.
pub fn run(a: DataCommand) -> anyhow::Result<()> {
    match a {
        DataCommand::Inspect { dir, classes } => inspect(&dir, classes.as_deref()),
    }
}

fn inspect(dir: &std::path::Path, classes: Option<&[String]>) -> anyhow::Result<()> {
    let ds = discover(dir, classes)?;
    println!("{}: {} classes", ds.root.display(), ds.classes.len());
    println!(
        "{:<20} {:>6} {:>10} {:>12}  defect types / image sizes",
        "class", "train", "test good", "test defect"
    );
    for c in &ds.classes {
        let good = c.test.iter().filter(|t| !t.is_anomalous()).count();
        let paths = c.train.iter().chain(c.test.iter().map(|t| &t.path));
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
    Ok(())
}
