//! `cras embed` (placeholder until the backbone lands).
#[derive(clap::Args)]
pub struct EmbedArgs {}
pub fn run(_a: EmbedArgs) -> anyhow::Result<()> {
    anyhow::bail!("cras embed is not built yet")
}
