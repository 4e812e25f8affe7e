//! `drover rollout status|history|undo|restart app/NAME`.

#[derive(clap::Args, Debug)]
pub struct RolloutArgs {
    #[command(flatten)]
    connect: crate::cmd::ConnectArgs,
}

pub fn run(args: RolloutArgs) -> anyhow::Result<()> {
    let _ = args.connect;
    anyhow::bail!("not implemented yet")
}
