//! `cras weights info|convert|fetch`: describe a weight file, convert a `.pth` state dict to
//! safetensors (atomic write), download torchvision's ImageNet weights into the cache folder.

use anyhow::Context;
use cras::backbone::weights::{self, read_state_dict_with_format};
use cras::backbone::{fetch, Arch};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum WeightsCommand {
    /// Describe a weight file: format, tensor count, parameters, detected architecture, SHA-256.
    Info {
        /// A .pth (legacy or zip) or .safetensors state dict.
        file: PathBuf,
    },
    /// Convert a state dict (.pth legacy or zip) to an f32 .safetensors file.
    Convert {
        /// Input state dict.
        input: PathBuf,
        /// Output .safetensors file (written atomically).
        output: PathBuf,
    },
    /// Download torchvision's ImageNet weights of a backbone into the cache folder.
    Fetch {
        /// Backbone network.
        #[arg(value_enum, default_value_t = super::args::paper().backbone)]
        arch: Arch,
        /// Download from this URL instead (the SHA-256 prefix in its file name is checked).
        #[arg(long)]
        url: Option<String>,
        /// Cache folder (default: the user's cache folder, then cras/weights).
        #[arg(long)]
        cache: Option<PathBuf>,
    },
}

pub fn run(cmd: WeightsCommand) -> anyhow::Result<()> {
    match cmd {
        WeightsCommand::Info { file } => info(&file),
        WeightsCommand::Convert { input, output } => convert(&input, &output),
        WeightsCommand::Fetch { arch, url, cache } => {
            let path = fetch::fetch_arch(arch, url.as_deref(), cache.as_deref())?;
            println!("{}", path.display());
            Ok(())
        }
    }
}

fn info(file: &std::path::Path) -> anyhow::Result<()> {
    let (format, tensors) = read_state_dict_with_format(file)?;
    let shapes = weights::shapes(&tensors);
    let params: usize = shapes
        .iter()
        .filter(|(k, _)| !k.ends_with(".num_batches_tracked"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum();
    let arch = weights::detect_arch(&shapes)
        .map(|a| a.to_string())
        .unwrap_or_else(|| "none of the supported torchvision ResNets (full depth)".into());
    println!("file:       {}", file.display());
    println!("format:     {format}");
    println!("tensors:    {}", tensors.len());
    println!("values:     {params} (parameters and BN running statistics)");
    println!("arch:       {arch}");
    println!("sha256:     {}", weights::sha256_file(file)?);
    Ok(())
}

fn convert(input: &std::path::Path, output: &std::path::Path) -> anyhow::Result<()> {
    if output.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        anyhow::bail!("{}: the output must end in .safetensors", output.display());
    }
    let (format, tensors) = read_state_dict_with_format(input)?;
    let mut list: Vec<_> = tensors.into_iter().collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    weights::write_safetensors(output, &list)
        .with_context(|| format!("writing {}", output.display()))?;
    println!(
        "{} ({format}, {} tensors) -> {}",
        input.display(),
        list.len(),
        output.display()
    );
    Ok(())
}
