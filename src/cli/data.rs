//! `cras data ...` (placeholder until the data layer lands).
#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Summarise a dataset.
    Inspect,
}
pub fn run(_a: DataCommand) -> anyhow::Result<()> {
    anyhow::bail!("cras data is not built yet")
}
