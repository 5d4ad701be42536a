//! `cras synth` (placeholder until the data layer lands).
#[derive(clap::Args)]
pub struct SynthArgs {}
pub fn run(_a: SynthArgs) -> anyhow::Result<()> {
    anyhow::bail!("cras synth is not built yet")
}
