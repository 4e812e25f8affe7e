//! `drover bench schedule`.

#[derive(clap::Args, Debug)]
pub struct ScheduleArgs {}

pub fn run(_args: ScheduleArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
