//! `drover bench agent`.

#[derive(clap::Args, Debug)]
pub struct AgentBenchArgs {}

pub fn run(_args: AgentBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
