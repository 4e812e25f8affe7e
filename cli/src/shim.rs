//! `drover shim` (hidden): the small parent a task runs under, so that it outlives the
//! agent and its exit status is kept for the agent to read after a restart. Drivers
//! start it (`drover_agent::driver::shim::spawn`); people never need to.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct ShimArgs {
    /// The shim's spec (JSON, written by the driver into the task's state directory).
    #[arg(long)]
    spec: PathBuf,
}

pub fn run(args: ShimArgs) -> anyhow::Result<()> {
    drover_agent::driver::shim::run(&args.spec)
        .with_context(|| format!("task shim for {}", args.spec.display()))
}
