//! `cras weights ...` (placeholder until the backbone lands).
#[derive(clap::Subcommand)]
pub enum WeightsCommand {
    /// Describe a weight file.
    Info,
}
pub fn run(_a: WeightsCommand) -> anyhow::Result<()> {
    anyhow::bail!("cras weights is not built yet")
}
