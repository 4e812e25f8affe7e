//! `drover shim` (hidden): the small parent a task runs under, so that it outlives the
//! agent and its exit status is kept for the agent to read after a restart.

#[derive(clap::Args, Debug)]
pub struct ShimArgs {}

pub fn run(_args: ShimArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
